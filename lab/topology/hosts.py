"""The nodes: and outside: sections: lists of host names, or a node count."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lab import naming
from lab.topology.checker import Checker, YamlPath
from lab.topology.schema import NODE_SCHEMA, Field
from lab.topology.wording import describe, show

MAX_NODES = 1000


@dataclass(frozen=True)
class Named:
    """A node or outside host: its name, which becomes the namespace <lab>-<name>."""
    name: str
    path: YamlPath   # where the name is written (or the list, for generated ones)


def host_list(checker: Checker, key: str, raw: Any, schema: dict[str, Field], what: str) -> list[Named]:
    """A list of names or {name: ...} mappings: the nodes or the outside hosts."""
    hosts = []
    for index, item in enumerate(raw):
        path: YamlPath = (key, index)
        if isinstance(item, dict):
            item = (checker.fields(path, item, schema, what) or {}).get("name")
            path = path + ("name",)
        elif not isinstance(item, str):
            checker.add(path, f"each {what} is a name or a mapping like {{name: ...}}, got {describe(item)}")
            continue
        if item is None:
            continue
        problem = naming.host_name_problem(item, f"{what} name")
        if problem:
            checker.add(path, problem)
        hosts.append(Named(item, path))
    return hosts


def node_list(checker: Checker, top: dict[str, Any], document: dict[str, Any]) -> list[Named] | None:
    """The cluster's nodes, or None when the nodes: key is unusable (its problem is reported)."""
    if document.get("nodes") is not None and "nodes" not in top:
        return None  # the wrong type, already reported by the schema check
    raw = top.get("nodes", 2)
    path: YamlPath = ("nodes",)
    count = raw if isinstance(raw, int) else len(raw)
    if count < 1:
        checker.add(path, f"a cluster needs at least one node; write e.g. 'nodes: 2' (got {show(raw)})")
        return None
    if count > MAX_NODES:
        checker.add(path, f"{count} nodes is more than podlab's limit of {MAX_NODES} nodes per lab")
        return None
    if isinstance(raw, int):
        return [Named(f"node{i}", path) for i in range(1, raw + 1)]
    return host_list(checker, "nodes", raw, NODE_SCHEMA, "node") or None  # no usable entry: each was reported
