"""Crash points, for the tests that prove `up` can be killed anywhere and cleaned up after.

    PODLAB_CRASH_AT=K      the K-th crash point SIGKILLs this process (the kernel gives it no
                           chance to clean up: exactly what a power cut of the process looks like)
    PODLAB_CRASH_LOG=PATH  append the name of every crash point passed to PATH, so a test can
                           count the points of a whole run and pick K across it

Crash points sit where the state changes: each journal record, each namespace mount, each
netlink batch, the agent's start, lab.json. Both variables are read once, at import, and
removed from the environment, so processes podlab starts (the workload agent, `exec`) never
inherit them. Without them, point() costs one comparison.
"""
from __future__ import annotations

import os
import signal

_AT = int(os.environ.pop("PODLAB_CRASH_AT", "0") or 0)
_LOG = os.environ.pop("PODLAB_CRASH_LOG", "")
_ACTIVE = bool(_AT or _LOG)
_passed = 0


def point(what: str) -> None:
    """A place where `up` may die; with PODLAB_CRASH_AT=K the K-th of them kills the process."""
    global _passed
    if not _ACTIVE:
        return
    _passed += 1
    if _LOG:
        fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{_passed} {what}\n".encode())
        finally:
            os.close(fd)
    if _passed == _AT:
        os.kill(os.getpid(), signal.SIGKILL)
