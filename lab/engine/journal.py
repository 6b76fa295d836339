"""The lab's ownership records: an append-only JSON-lines file in the lab's state directory.

Every namespace and process is recorded *before* it is made, so after a crash at any point
`down` knows everything that may exist, and removes exactly that, never by name patterns.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from lab import faults, state

NsId = tuple[int, int, int]   # (st_dev, st_ino, st_ctime_ns) of a namespace (lab.engine.netns.identity)


class Journal:
    def __init__(self, lab: str):
        self.lab = lab
        self.path: Path = state.lab_dir(lab) / "journal.jsonl"
        self._fd: int | None = None   # kept open between records: `up` writes one per namespace

    def _append(self, data: bytes) -> None:
        if self._fd is None:
            state.ensure_lab_dir(self.lab)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.write(self._fd, data)   # O_APPEND: one write(2) per record, whole or not at all

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()

    def record(self, kind: str, **fields: Any) -> None:
        self._append((json.dumps({"kind": kind, "t": round(time.time(), 3), **fields}) + "\n").encode())
        faults.point(f"journal {kind}")

    def record_many(self, kind: str, items: list[dict[str, Any]]) -> None:
        """One write for many records (e.g. a thousand namespaces about to be made)."""
        now = round(time.time(), 3)
        self._append("".join(json.dumps({"kind": kind, "t": now, **f}) + "\n" for f in items).encode())
        faults.point(f"journal {kind} x{len(items)}")

    def _records(self, wanted: Callable[[str], bool] = lambda line: True) -> list[Any]:
        """The complete records among the lines `wanted` lets through; a line cut short by a crash
        is ignored."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            if wanted(line):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out

    def entries(self) -> list[dict[str, Any]]:
        """All complete records."""
        return self._records()

    def of_kind(self, kind: str, naming: Collection[str] | None = None) -> list[dict[str, Any]]:
        """The records of a kind (`naming`: only those whose "name" is one of these)."""
        # Only the lines that can be of this kind are parsed: a 1000-pod lab's journal holds
        # thousands of namespace records that most readers skip (records begin with their kind).
        prefix = json.dumps({"kind": kind})[:-1]
        names = None if naming is None else [json.dumps({"name": n})[1:-1] for n in naming]
        lines = self._records(lambda line: line.startswith(prefix) and (names is None or any(n in line for n in names)))
        return [e for e in lines if isinstance(e, dict) and e.get("kind") == kind
                and (naming is None or e.get("name") in naming)]

    def made_namespaces(self, naming: Collection[str] | None = None) -> dict[str, dict[str, Any]]:
        """name -> its `netns-made` record: the identity (net and uts: dev, inode, ctime) of each
        namespace this lab really made (`naming`: of these), written after unshare(2) and before it
        got its name."""
        out: dict[str, dict[str, Any]] = {}
        for e in self.of_kind("netns-made", naming):
            if isinstance(e.get("name"), str) and _is_id(e.get("net")):
                out[e["name"]] = e
        return out

    def mount_inodes(self) -> set[tuple[int, int]]:
        """(dev, inode) of the templates this lab's mount points were linked from (netns.MountPoints)."""
        return {(e["dev"], e["ino"]) for e in self.of_kind("mountpoint")
                if type(e.get("dev")) is int and type(e.get("ino")) is int}

    def processes(self) -> list[dict[str, Any]]:
        """Processes this lab started, each with the start time that tells it from a recycled PID."""
        return [e for e in self.of_kind("process") if type(e.get("pid")) is int and e["pid"] > 0]


def _is_id(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 3 and all(type(v) is int for v in value)


def ns_id(entry: dict[str, Any], key: str = "net") -> NsId | None:
    value = entry.get(key)
    return (value[0], value[1], value[2]) if _is_id(value) else None
