"""The lab's name, and the names that become network namespaces (the naming rules live in lab.naming)."""
from __future__ import annotations

from typing import Any

from lab import naming
from lab.model import Pod
from lab.topology.checker import Checker, YamlPath
from lab.topology.hosts import Named
from lab.topology.wording import show

RESERVED_NAMES = {"underlay": "the underlay switch", "router": "the VPC router"}


def lab_name(checker: Checker, top: dict[str, Any], default_name: str) -> str:
    """The name: key, or else the file's stem; it prefixes every namespace, so it must be a valid name."""
    name = top.get("name")
    if name is None:
        if naming.lab_name_problem(default_name):
            suggestion = naming.suggest(default_name, 24) or "demo"
            checker.add(("name",), f"the lab name defaults to the file name {show(default_name)}, which is not valid: "
                                   f"{naming.LAB_RULE}; add 'name: {suggestion}'")
        return default_name
    problem = naming.lab_name_problem(name)
    if problem:
        suggestion = naming.suggest(name, 24)
        checker.add(("name",), problem.split("; try")[0] + (f"; write 'name: {suggestion}'" if suggestion else ""))
    return name


def check_unique_names(checker: Checker, nodes: list[Named], pods: list[tuple[Pod, YamlPath]],
                       outside: list[Named]) -> None:
    """Nodes, pods and outside hosts all become network namespaces <lab>-<name>: one namespace of names."""
    entries = [(n.name, n.path, "") for n in nodes]
    for pod, path in pods:
        if pod.deployment is None:
            entries.append((pod.name, path + ("name",), ""))
        else:
            entries.append((pod.name, path, f" (replica {pod.name} of deployment {pod.deployment})"))
    entries += [(o.name, o.path, "") for o in outside]
    owners: dict[str, str] = {}
    for name, path, note in entries:
        if name in RESERVED_NAMES:
            checker.add(path, f"the name {show(name)} is reserved for {RESERVED_NAMES[name]} "
                              f"(namespace <lab>-{name}); pick another name")
        elif name in owners:
            checker.add(path, f"the name {show(name)} is already used by {owners[name]}: nodes, pods and outside "
                              "hosts each become a network namespace <lab>-<name>, so names must be unique; "
                              "rename one of them")
        else:
            owners[name] = checker.where(path) + note
