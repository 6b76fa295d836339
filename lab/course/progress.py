"""A student's progress: which exercises are started or passed, hints seen, answers given.

One JSON file under the lab state directory (/run/podlab/.course/progress.json; the leading dot
keeps it out of the list of labs). Written atomically under a lock, so two commands at once
never lose an update. Nothing a grader judges comes from here except the answers the student
gave, which graders check against the live lab.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

NOT_STARTED, IN_PROGRESS, PASSED = "not started", "in progress", "passed"


class Progress:
    def __init__(self, path: Path):
        self.path = Path(path)

    def read(self) -> dict[str, dict[str, Any]]:
        """Every exercise's record; an unreadable or damaged file reads as no progress."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        exercises = data.get("exercises") if isinstance(data, dict) else None
        return {k: v for k, v in exercises.items() if isinstance(v, dict)} if isinstance(exercises, dict) else {}

    def entry(self, ex_id: str) -> dict[str, Any]:
        return dict(self.read().get(ex_id, {}))

    def status(self, ex_id: str) -> str:
        return self.entry(ex_id).get("status", NOT_STARTED)

    @contextmanager
    def _locked(self) -> Iterator[dict[str, dict[str, Any]]]:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path.parent / ".progress.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = self.read()
            yield data
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"exercises": data}, indent=1, sort_keys=True) + "\n")
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        finally:
            os.close(fd)

    def update(self, ex_id: str, **fields: Any) -> dict[str, Any]:
        with self._locked() as data:
            entry = data.setdefault(ex_id, {})
            entry.update(fields)
            entry["updated"] = time.time()
            return dict(entry)

    def set_answers(self, ex_id: str, answers: dict[str, str]) -> dict[str, str]:
        with self._locked() as data:
            entry = data.setdefault(ex_id, {})
            entry.setdefault("answers", {}).update(answers)
            entry["updated"] = time.time()
            return dict(entry["answers"])

    def next_hint(self, ex_id: str, total: int) -> int:
        """Count one more hint seen (at most total); returns how many are now shown."""
        with self._locked() as data:
            entry = data.setdefault(ex_id, {})
            entry["hints"] = min(total, int(entry.get("hints", 0)) + 1)
            return entry["hints"]

    def clear(self, ex_id: str) -> bool:
        with self._locked() as data:
            return data.pop(ex_id, None) is not None
