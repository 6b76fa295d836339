"""Bring-up cycles of podlab or the floor with /run on a tmpfs, as a stock Debian has it.

    python bench/tmpfs_run.py podlab|floor N REPEAT     # prints a JSON list of cycles

This process first takes a mount namespace of its own, makes every mount in it private (so
nothing it mounts reaches the host's mount table) and mounts a tmpfs on /run. The network
namespaces it builds are real; only their mount points (/run/netns/NAME, podlab's state
directory) live on that tmpfs. Everything is taken down before it exits, and its mounts go
with its mount namespace in any case. See run.tmpfs_cycles for why.
"""
from __future__ import annotations

import ctypes
import json
import os
import sys

CLONE_NEWNS = 0x00020000
MS_REC, MS_PRIVATE = 16384, 1 << 18
_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def main() -> int:
    who, n, repeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    # Before any thread exists: unshare(CLONE_NEWNS) needs an fs_struct of our own.
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    _check(_libc.mount(b"tmpfs", b"/run", b"tmpfs", 0, b"mode=755,size=64m"), "mount tmpfs on /run")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import run as bench
    work = bench.Workdir()
    cycles = []
    try:
        for _ in range(repeat):
            cycles.append(bench.podlab_cycle(work, bench.l2_yaml(n, "nginx")) if who == "podlab"
                          else bench.floor_cycle(n))
    finally:
        work.close()
    print(json.dumps(cycles), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
