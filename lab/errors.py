"""Errors a user can act on. The CLI prints them without a traceback."""
from __future__ import annotations

from dataclasses import dataclass


class PodlabError(Exception):
    """Something the user can fix; the message says what and how."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a topology file: where (YAML path, line) and what to do."""
    path: str
    message: str
    line: int | None = None
    at: tuple[str | int, ...] = ()      # the path as keys and indices (lab.manifests maps it back to a manifest)

    def __str__(self) -> str:
        where = f"{self.path}" + (f" (line {self.line})" if self.line else "")
        return f"{where}: {self.message}"


class TopologyError(PodlabError):
    """Every problem found in a topology file, reported together."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {len(problems)} problem{'s' if len(problems) != 1 else ''}; nothing was created"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


class NeedsRoot(PodlabError):
    def __init__(self, command: str):
        super().__init__(f"'podlab {command}' builds and reads network namespaces and needs root: run 'sudo podlab {command} ...'")
