"""libnftables in-process: what `nft -f -` does, in many namespaces, without a process per run.

`nft` itself is a thin shell over libnftables (the library the nftables package ships). Forking
nsenter and nft costs ~10 ms a node, which a lab's kube-proxy would pay on every node each time
an endpoint comes or goes; a libnftables context costs ~1 ms a transaction. Each context is made
and used only in a helper thread that has joined its namespace (lab.engine.netns.run_in_each:
one thread visits every namespace in turn), so its netlink socket is that namespace's whether the
library opens it with the context or on first use, and the caller's thread never moves.

Stdlib and lab.engine.netns only: the workload agent imports it.
"""
from __future__ import annotations

import ctypes

from lab.engine import netns

LIBRARY = "libnftables.so.1"
_lib: ctypes.CDLL | None = None


def _library() -> ctypes.CDLL:
    """The library, typed; OSError if it is not installed."""
    global _lib
    if _lib is None:
        lib = ctypes.CDLL(LIBRARY)     # by its soname: find_library would run ldconfig
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        _lib = lib
    return _lib


def available() -> bool:
    try:
        _library()
    except OSError:
        return False
    return True


class Contexts:
    """libnftables transactions run inside lab namespaces.

    A context is made for each transaction and freed after it: a context keeps its netlink socket,
    and a socket keeps the namespace it was made in alive, so a kept one would hold a node's
    namespace after the node left (or while a change cut short makes it again)."""

    def __init__(self) -> None:
        self.lib = _library()

    def run(self, jobs: list[tuple[str, str]]) -> list[str | None]:
        """Each (namespace, nft -f text) run as one transaction there; per job None, or the error
        nft printed. Blocking (a few ms a job): call it from a worker thread."""
        def job(ns: str, text: str):
            def run() -> str | None:
                ctx = self.lib.nft_ctx_new(0)
                if not ctx:
                    return "libnftables could not make a context"
                try:
                    self.lib.nft_ctx_buffer_output(ctx)      # what a command prints stays with it
                    self.lib.nft_ctx_buffer_error(ctx)
                    if self.lib.nft_run_cmd_from_buffer(ctx, text.encode()) == 0:
                        return None
                    return (self.lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace").strip() or "failed"
                finally:
                    self.lib.nft_ctx_free(ctx)
            return run
        results = netns.run_in_each([(ns, job(ns, text)) for ns, text in jobs])
        return [f"namespace {ns}: {r}" if isinstance(r, OSError) else r for (ns, _), r in zip(jobs, results)]
