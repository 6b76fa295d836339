"""Files a process in a pod sees in place of the host's (the pod's resolv.conf and hosts), as a
container runtime bind-mounts them. Only ever called in a child between fork and exec: the child
gets a mount namespace of its own, so the host's mounts never change. Stdlib only: the workload
agent imports it."""
from __future__ import annotations

import ctypes
import os

CLONE_NEWNS = 0x00020000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
_libc = ctypes.CDLL(None, use_errno=True)  # loaded now: a forked child should not dlopen


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount_over(mounts: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> None:
    """In a child about to exec: a private mount namespace in which each source file is
    bind-mounted over its target. Targets the host lacks are skipped (nothing is created)."""
    mounts = [(src, dst) for src, dst in mounts if os.path.exists(dst)]
    if not mounts:
        return
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    # Private first, so the bind mounts below cannot propagate back to the host's namespace.
    _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    for src, dst in mounts:
        _check(_libc.mount(src.encode(), dst.encode(), None, MS_BIND, None), f"bind-mount {src} on {dst}")
