"""Every plugin invocation of a lab, as JSON lines in its state ($LAB/cni/log.jsonl): command,
environment, stdin, stdout, stderr, exit status and duration, with the pod and node it was for.
`podlab cni log [POD]` reads it; it goes with the lab."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from lab.cni import paths
from lab.cni.invoke import Invocation


class Log:
    def __init__(self, lab: str):
        self.path: Path = paths.log_file(lab)
        self._lock = threading.Lock()

    def append(self, inv: Invocation, pod: str, node: str) -> None:
        record = {"t": round(inv.started, 3), "pod": pod, "node": node, "command": inv.command, "plugin": inv.plugin,
                  "path": inv.path, "env": inv.env, "stdin": inv.stdin, "stdout": inv.stdout, "stderr": inv.stderr,
                  "exit": inv.exit, "seconds": round(inv.seconds, 4)}
        if inv.error:
            record["error"] = inv.error
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        with self._lock:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)


def entries(lab: str, pod: str | None = None) -> list[dict[str, Any]]:
    try:
        text = paths.log_file(lab).read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if pod is None or record.get("pod") == pod:
            out.append(record)
    return out
