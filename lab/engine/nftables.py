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
import os
import threading

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


def _run_once(lib: ctypes.CDLL, text: str) -> str | None:
    """One ruleset in one transaction, as `nft -f` runs it, in the calling thread's namespace (the
    context, and the netlink socket the library opens with it, are made there); its error, or None."""
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
    """Load each (namespace, ruleset) once (what `up` and a change do); per job its error (None:
    loaded), or None for all of them if the library is not there (the caller runs nft itself).
    ~2-3 ms a node against ~8 ms for a fork of nsenter and nft."""
    if not available():
        return None
    lib = _library()
    results = netns.run_in_each([(ns, lambda text=text: _run_once(lib, text)) for ns, text in jobs])
    return [f"cannot enter the namespace: {r.strerror or r}" if isinstance(r, OSError) else r for r in results]


class Contexts:
    """One libnftables context per namespace, made on first use and kept (a kept one saves a
    ruleset dump: 10 nodes' tables follow an endpoint in 0.08 s instead of 0.19 s).

    A context keeps its netlink socket, and a socket keeps the namespace it was made in alive: a
    context whose namespace was unmounted (a node that left, one a change cut short makes again) is
    freed by release_gone(), which the agent calls every moment, and never used again."""

    def __init__(self) -> None:
        self.lib = _library()
        self.by_ns: dict[str, tuple[int, tuple[int, int]]] = {}   # ns -> (context, the namespace's identity)
        self.lock = threading.Lock()     # run() is called from a worker thread, release_gone() from the agent's

    def run(self, jobs: list[tuple[str, str]]) -> list[str | None]:
        """Each (namespace, nft -f text) run as one transaction there; per job None, or the error
        nft printed. Blocking (a few ms a job): call it from a worker thread."""
        with self.lock:
            return self._run(jobs)

    def _run(self, jobs: list[tuple[str, str]]) -> list[str | None]:
        self._release_gone()
        ids = {ns: _identity(ns) for ns, _ in jobs}

        def job(ns: str, text: str):
            def run() -> str | None:
                kept = self.by_ns.get(ns)
                if kept is not None:
                    ctx = kept[0]
                else:
                    ctx = self.lib.nft_ctx_new(0)
                    if not ctx:
                        return "libnftables could not make a context"
                    self.lib.nft_ctx_buffer_output(ctx)      # what a command prints stays with it
                    self.lib.nft_ctx_buffer_error(ctx)
                    if ids[ns] is not None:
                        self.by_ns[ns] = (ctx, ids[ns])
                try:
                    if self.lib.nft_run_cmd_from_buffer(ctx, text.encode()) == 0:
                        return None
                    return (self.lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace").strip() or "failed"
                finally:
                    if ns not in self.by_ns:
                        self.lib.nft_ctx_free(ctx)
            return run
        results = netns.run_in_each([(ns, job(ns, text)) for ns, text in jobs])
        return [f"namespace {ns}: {r}" if isinstance(r, OSError) else r for (ns, _), r in zip(jobs, results)]

    def release_gone(self) -> None:
        """Free the contexts of namespaces that are no longer mounted where they were made."""
        with self.lock:
            self._release_gone()

    def _release_gone(self) -> None:
        for ns, (ctx, made_in) in list(self.by_ns.items()):
            if _identity(ns) != made_in:
                del self.by_ns[ns]
                self.lib.nft_ctx_free(ctx)


def _identity(ns: str) -> tuple[int, int] | None:
    try:
        st = os.stat(netns.netns_path(ns))
    except OSError:
        return None
    return st.st_dev, st.st_ino
