"""Helpers the packet tests share."""
from __future__ import annotations

import subprocess
import time


def settled(lab, src: str = "a", dst: str = "c") -> None:
    """Wait until the new lab carries traffic: the kernel enables a new link's carrier and queue in
    its link watch, up to a second after `up`, and a probe sent before that never leaves."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if subprocess.run(["ip", "netns", "exec", lab.target(src).netns, "ping", "-c", "1", "-W", "1",
                           str(lab.address_of(dst))], capture_output=True).returncode == 0:
            return
    raise AssertionError(f"lab {lab.name}: {src} cannot reach {dst} ten seconds after up")
