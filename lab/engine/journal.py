"""The lab's ownership records: an append-only JSON-lines file in the lab's state directory.

Every namespace and process is recorded *before* it is made, so after a crash at any point
`down` knows everything that may exist, and removes exactly that, never by name patterns.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from lab import state


class Journal:
    def __init__(self, lab: str):
        self.lab = lab
        self.path: Path = state.lab_dir(lab) / "journal.jsonl"

    def record(self, kind: str, **fields: Any) -> None:
        state.ensure_lab_dir(self.lab)
        line = json.dumps({"kind": kind, "t": round(time.time(), 3), **fields}) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def record_many(self, kind: str, items: list[dict[str, Any]]) -> None:
        """One write for many records (e.g. a thousand namespaces about to be made)."""
        state.ensure_lab_dir(self.lab)
        now = round(time.time(), 3)
        data = "".join(json.dumps({"kind": kind, "t": now, **f}) + "\n" for f in items)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data.encode())
        finally:
            os.close(fd)

    def entries(self) -> list[dict[str, Any]]:
        """All complete records; a line cut short by a crash is ignored."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.entries() if e.get("kind") == kind]
