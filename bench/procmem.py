"""A process's memory as the kernel accounts it: RSS and PSS in kB (stdlib only: the Mininet peer
imports it under Debian's own Python, outside podlab's venv)."""
from __future__ import annotations


def rss_pss_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process from /proc/PID/smaps_rollup; (0, 0) if it is gone."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss
