"""YAML text to plain Python values, remembering the line of every key and list item.

PyYAML's constructors drop the marks, so the Reader walks the composed node graph itself and
records each path's line in the Checker. It reports what PyYAML would crash on or silently
accept (syntax errors, binary junk, unknown tags, duplicate keys, alias bombs, recursion)
as problems, and builds scalars with PyYAML's safe constructor.
"""
from __future__ import annotations

from typing import Any

import yaml
import yaml.constructor

from lab.topology.checker import Checker, YamlPath
from lab.topology.wording import YAML_TAG, describe, show

MAX_YAML_NODES = 1_000_000   # stops alias bombs ("billion laughs") long before memory runs out
MAX_YAML_DEPTH = 64          # real files nest about 6 deep; this also stops recursive aliases
_COLLECTION_TAGS = {YAML_TAG + t for t in ("map", "seq", "set", "omap", "pairs")}


class _DocumentTooBig(Exception):
    pass


class Reader:
    """Walks PyYAML's node graph into dicts, lists and scalars, recording lines in the checker."""

    def __init__(self, checker: Checker):
        self.checker = checker
        self.constructor = yaml.constructor.SafeConstructor()
        self.count = 0

    def read(self, text: str) -> dict[str, Any] | None:
        checker = self.checker
        try:
            root = yaml.SafeLoader(text).get_single_node()
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            what = " ".join(str(p) for p in (e.context, e.problem) if p)
            checker.add((), f"YAML syntax error: {what}; check the indentation, colons and quotes near this line",
                        mark.line + 1 if mark else None)
            return None
        except yaml.reader.ReaderError as e:
            checker.add((), f"not a YAML text file: character {e.character!r} is not allowed in YAML",
                        text.count("\n", 0, e.position) + 1)
            return None
        except yaml.YAMLError as e:
            checker.add((), f"YAML error: {e}")
            return None
        except RecursionError:
            checker.add((), f"the YAML is nested too deeply to be a topology (more than {MAX_YAML_DEPTH} levels)")
            return None
        if root is None or (root.tag == YAML_TAG + "null" and root.value in ("", "~", "null")):
            checker.add((), "the file is empty; a topology needs at least one key, e.g. 'nodes: 2' or 'name: demo'")
            return None
        checker.lines[()] = root.start_mark.line + 1
        try:
            value = self.value(root, (), 0)
        except _DocumentTooBig:
            checker.add((), f"the YAML expands to more than {MAX_YAML_NODES} values (aliases?); "
                            "write deployments with replicas: instead")
            return None
        if not isinstance(value, dict):
            checker.add((), f"the file must be a mapping of keys like name:, nodes:, pods:, got {describe(value)}")
            return None
        return value

    def value(self, node: yaml.Node, path: YamlPath, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_YAML_NODES:
            raise _DocumentTooBig()
        if depth > MAX_YAML_DEPTH:
            self.checker.add(path, f"nested more than {MAX_YAML_DEPTH} levels deep (a recursive alias?)")
            return None
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if node.tag not in _COLLECTION_TAGS:
            self.checker.add(path, _tag_problem(node.tag), node.start_mark.line + 1)
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.checker.lines[path + (index,)] = item.start_mark.line + 1
                items.append(self.value(item, path + (index,), depth + 1))
            return items
        return self.mapping(node, path, depth)

    def mapping(self, node: yaml.MappingNode, path: YamlPath, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        # `<<: *defaults` merges first, so the keys written out in this mapping override them.
        for key_node, value_node in node.value:
            if key_node.tag == YAML_TAG + "merge":
                result.update(self.merged(value_node, path, depth))
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == YAML_TAG + "merge":
                continue
            line = key_node.start_mark.line + 1
            key = self.value(key_node, path, depth + 1) if isinstance(key_node, yaml.ScalarNode) else key_node
            if not isinstance(key, str):
                self.checker.add(path, _key_problem(key_node), line)
                continue
            if key in seen:
                self.checker.add(path + (key,), f"duplicate key {show(key)} (first at line {seen[key]}); "
                                                "YAML would silently keep only the last one: remove one", line)
                continue
            seen[key] = line
            self.checker.lines[path + (key,)] = line
            result[key] = self.value(value_node, path + (key,), depth + 1)
        return result

    def merged(self, node: yaml.Node, path: YamlPath, depth: int) -> dict[str, Any]:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        result: dict[str, Any] = {}
        for source in reversed(sources):  # in `<<: [*a, *b]` the first one wins
            value = self.value(source, path, depth + 1)
            if isinstance(value, dict):
                result.update(value)
            else:
                self.checker.add(path, "'<<:' merges a mapping (an alias like *defaults) into this one",
                                 source.start_mark.line + 1)
        return result

    def scalar(self, node: yaml.ScalarNode, path: YamlPath) -> Any:
        if node.tag not in self.constructor.yaml_constructors or node.tag is None:
            self.checker.add(path, _tag_problem(node.tag), node.start_mark.line + 1)
            return node.value
        try:
            return self.constructor.construct_object(node)
        except Exception as e:  # noqa: BLE001 - any constructor failure (a date 2001-13-45, '!!int x') is one problem
            self.checker.add(path, f"cannot read {show(node.value)} as {node.tag.replace(YAML_TAG, '')} ({e}); "
                                   "put it in quotes to keep it as text", node.start_mark.line + 1)
            return node.value


def _key_problem(key_node: yaml.Node) -> str:
    """YAML reads keys like 1, on or yes as numbers and booleans; ours are all names."""
    if isinstance(key_node, yaml.ScalarNode):
        return (f"key {show(key_node.value)} is read as {key_node.tag.replace(YAML_TAG, '')}, not a name; "
                f"quote it: \"{key_node.value[:40]}\"")
    return "a key must be a name like 'name' or 'app', not a list or mapping"


def _tag_problem(tag: str | None) -> str:
    return f"YAML tag {show((tag or '').replace(YAML_TAG, '!!'))} is not supported; remove it"
