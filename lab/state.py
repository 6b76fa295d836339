"""Where a lab keeps its records: /run/podlab/<lab>/ (root only).

/run is a tmpfs, like the namespaces' own mounts, so a reboot clears both together.
  journal.jsonl   ownership records, appended before each object is made (lab.engine.journal)
  lab.json        the lab's design and address plan, written when `up` completes
  uts/<netns>     the UTS namespace mount of each pod and node
  agent.pid       the workload agent's PID; agent.json its status; agent.log its output
"""
from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(os.environ.get("PODLAB_STATE_DIR", "/run/podlab"))

LAB_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,22}[a-z0-9])?$")


def lab_dir(lab: str) -> Path:
    if not isinstance(lab, str) or not LAB_NAME.fullmatch(lab):
        # Names reach paths and namespace names: never let one escape the state directory.
        raise ValueError(f"invalid lab name {lab!r}")
    return ROOT / lab


def uts_path(lab: str, netns: str) -> str:
    return str(lab_dir(lab) / "uts" / netns)


def ensure_lab_dir(lab: str) -> Path:
    ROOT.mkdir(mode=0o700, parents=True, exist_ok=True)
    d = lab_dir(lab)
    d.mkdir(mode=0o700, exist_ok=True)
    return d


def labs() -> list[str]:
    """Names of labs with a state directory (up, or left behind by a crash)."""
    if not ROOT.is_dir():
        return []
    return sorted(p.name for p in ROOT.iterdir() if p.is_dir() and LAB_NAME.fullmatch(p.name))
