"""nftables rulesets loaded through libnftables, the library the nft command is built on, in a
helper thread that joins each namespace in turn.

Every lab has kube-proxy's table on every node (the cluster DNS is a Service), and a fork of
`nft -f -` through nsenter costs ~8 ms a node (0.4 s for 50 nodes); the library parses and
sends the same ruleset in ~2-3 ms, with no process. The library's netlink socket is opened when
its context is made, so each context is made (and used, and freed) by the thread once it is in
that namespace: the socket, and so every table, lands there and nowhere else (a namespace that
cannot be joined runs nothing). Where the library cannot be loaded, the caller runs nft itself.
"""
from __future__ import annotations

import ctypes
import threading

from lab.engine import netns

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_missing = False


def _library() -> ctypes.CDLL | None:
    global _lib, _missing
    with _lock:
        if _lib is None and not _missing:
            try:
                lib = ctypes.CDLL("libnftables.so.1")
            except OSError:
                _missing = True
                return None
            lib.nft_ctx_new.restype = ctypes.c_void_p
            lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
            lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
            lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            _lib = lib
        return _lib


def available() -> bool:
    return _library() is not None


def _run(lib: ctypes.CDLL, text: str) -> str | None:
    """One ruleset in one transaction, as `nft -f` runs it, in the calling thread's namespace;
    the library's error text, or None."""
    ctx = lib.nft_ctx_new(0)
    if not ctx:
        return "libnftables could not make a context (out of memory?)"
    try:
        lib.nft_ctx_buffer_error(ctx)
        lib.nft_ctx_buffer_output(ctx)
        if lib.nft_run_cmd_from_buffer(ctx, text.encode()) == 0:
            return None
        return (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace").strip() or "failed"
    finally:
        lib.nft_ctx_free(ctx)


def load(jobs: list[tuple[str, str]]) -> list[str | None] | None:
    """Load each (namespace, ruleset); per job its error (None: loaded), or None for all of them
    if the library is not there."""
    lib = _library()
    if lib is None:
        return None
    results = netns.run_in_each([(ns, lambda text=text: _run(lib, text)) for ns, text in jobs])
    return [f"cannot enter the namespace: {r.strerror or r}" if isinstance(r, OSError) else r for r in results]
