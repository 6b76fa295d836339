"""The Checker: collects every problem in a topology file, each with its YAML path and line.

Checks report to the Checker and carry on, so one run lists every problem in the file; the
reader (lab.topology.yaml_reader) records the line of each path as it reads the YAML.
"""
from __future__ import annotations

from typing import Any

from lab.errors import Problem, TopologyError
from lab.topology.schema import TYPE_NAMES, Field
from lab.topology.wording import describe, did_you_mean, show, type_hint, unknown_key

YamlPath = tuple[str | int, ...]


def format_path(path: YamlPath) -> str:
    """A path as the user finds it in the file: pods[0].containers[1].name."""
    text = ""
    for part in path:
        part = part if isinstance(part, int) or len(part) <= 40 else part[:37] + "..."
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(document)"


def has_type(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # bool is an int in Python, never in a topology file
        return bool in types
    return isinstance(value, types)


class Checker:
    """Collects problems; knows the line of every YAML path."""

    def __init__(self, source: str):
        self.source = source
        self.problems: list[Problem] = []
        self.lines: dict[YamlPath, int] = {}

    def line(self, path: YamlPath) -> int | None:
        while path:  # a default or a missing key has no line of its own: use its parent's
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())

    def add(self, path: YamlPath, message: str, line: int | None = None) -> None:
        self.problems.append(Problem(format_path(path), message, line or self.line(path), tuple(path)))

    def where(self, path: YamlPath) -> str:
        line = self.line(path)
        return format_path(path) + (f" (line {line})" if line else "")

    def error(self) -> TopologyError:
        ordered = sorted(self.problems, key=lambda p: p.line or 0)
        return TopologyError(self.source, ordered)

    def fields(self, path: YamlPath, value: Any, schema: dict[str, Field], what: str) -> dict[str, Any] | None:
        """Check a mapping against its schema; return only the keys whose values have the right type.

        A key with no value (`pods:` with everything under it commented out) means the default.
        """
        if not isinstance(value, dict):
            self.add(path, f"{what} must be a mapping of keys ({', '.join(schema)}), got {describe(value)}")
            return None
        good: dict[str, Any] = {}
        for key, item in value.items():
            spec = schema.get(key)
            if spec is None:
                self.add(path + (key,), unknown_key(key, schema))
            elif item is None:
                continue
            elif not has_type(item, spec.types):
                expected = " or ".join(TYPE_NAMES[t] for t in spec.types)
                self.add(path + (key,), f"{key} must be {expected}, got {describe(item)}{type_hint(key, spec, item)}")
            else:
                good[key] = item
        for key, spec in schema.items():
            if spec.required and value.get(key) is None:
                self.add(path + (key,), f"{what} needs a {key}: add '{key}: ...'")
        return good


def choice(checker: Checker, path: YamlPath, value: str, known: tuple[str, ...], what: str) -> str | None:
    """The value if it is one of the known ones (a mode, a protocol); else a problem and None."""
    if value in known:
        return value
    hint = did_you_mean(value, known, cutoff=0.5, ignore_case=True)
    checker.add(path, f"unknown {what} {show(value)}; {hint}known {what}s: {', '.join(known)}")
    return None
