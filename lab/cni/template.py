"""The conflist as a template, rendered per node as containerd renders its CNI config template.

containerd (internal/cri/server/update_runtime_config.go) executes the file with Go's
text/template over {PodCIDR, PodCIDRRanges, Routes}: the node's first CIDR, all its CIDRs, and
the routes its address families need ("0.0.0.0/0" for IPv4). This is the part of text/template
such templates use: `{{.Field}}`, `{{$var}}`, `{{.}}`, `{{range [$i, $v :=] PIPE}}`, `{{if PIPE}}`,
`{{else}}`, `{{end}}`, comments and the `{{-`/`-}}` trim markers; anything else is an error with
its line and column, as `template.Parse` would refuse it. Pure.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from lab.errors import PodlabError


class TemplateError(PodlabError):
    """A template that cannot be parsed or executed; the message has its line and column."""


@dataclass(frozen=True)
class Values:
    """What containerd's cniConfigTemplate holds for one node."""
    PodCIDR: str
    PodCIDRRanges: tuple[str, ...]
    Routes: tuple[str, ...]

    @staticmethod
    def for_node(cidrs: list[str]) -> "Values":
        # getRoutes: one default route per address family the node's CIDRs have.
        routes = (["0.0.0.0/0"] if any(":" not in c for c in cidrs) else []) + \
                 (["::/0"] if any(":" in c for c in cidrs) else [])
        return Values(cidrs[0], tuple(cidrs), tuple(routes))


_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_VAR = re.compile(r"\$[A-Za-z_0-9]*")
_FIELD = re.compile(r"\.[A-Za-z_][A-Za-z_0-9]*")


@dataclass
class _Node:
    kind: str                      # text | print | range | if
    at: tuple[int, int]            # line, column of the action
    text: str = ""
    pipe: str = ""
    key: str | None = None         # range $i, $v := ...
    value: str | None = None
    body: list["_Node"] = field(default_factory=list)
    other: list["_Node"] = field(default_factory=list)   # the {{else}} branch


def has_actions(text: str) -> bool:
    return "{{" in text


def render(text: str, values: Values) -> str:
    """The template executed over `values`; TemplateError (with line and column) if it cannot be."""
    nodes = _parse(text)
    out: list[str] = []
    _execute(nodes, {"$": values}, values, out)
    return "".join(out)


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _parse(text: str) -> list[_Node]:
    root: list[_Node] = []
    stack: list[tuple[_Node, list[_Node]]] = []     # open range/if and the list being filled
    current = root
    pos = 0
    pending_trim = False
    for m in _ACTION.finditer(text):
        chunk = text[pos:m.start()]
        if pending_trim:
            chunk = chunk.lstrip()
        if m.group(1):
            chunk = chunk.rstrip()
        if chunk:
            current.append(_Node("text", _position(text, pos), text=chunk))
        pos, pending_trim = m.end(), bool(m.group(3))
        at = _position(text, m.start())
        action = m.group(2).strip()
        if action.startswith("/*"):
            if not action.endswith("*/"):
                raise TemplateError(f"line {at[0]}, column {at[1]}: unclosed comment")
            continue
        word, _, rest = action.partition(" ")
        rest = rest.strip()
        if word == "range" or word == "if":
            node = _Node(word, at)
            if word == "range" and ":=" in rest:
                names, _, rest = rest.partition(":=")
                declared = [n.strip() for n in names.split(",")]
                if not all(_VAR.fullmatch(n) for n in declared) or len(declared) > 2:
                    raise TemplateError(f"line {at[0]}, column {at[1]}: range declares {names.strip()!r}; "
                                        "write {{range $i, $v := .List}} or {{range $v := .List}}")
                node.key, node.value = (declared[0], declared[1]) if len(declared) == 2 else (None, declared[0])
            node.pipe = _pipeline(rest.strip(), at, word)
            current.append(node)
            stack.append((node, current))
            current = node.body
        elif word == "else" and not rest:
            if not stack:
                raise TemplateError(f"line {at[0]}, column {at[1]}: {{{{else}}}} outside {{{{if}}}} or {{{{range}}}}")
            current = stack[-1][0].other
        elif word == "end" and not rest:
            if not stack:
                raise TemplateError(f"line {at[0]}, column {at[1]}: unexpected {{{{end}}}}")
            _, current = stack.pop()
        else:
            current.append(_Node("print", at, pipe=_pipeline(action, at, "print")))
    if "{{" in text[pos:]:
        at = _position(text, text.index("{{", pos))
        raise TemplateError(f"line {at[0]}, column {at[1]}: unclosed action (no '}}}}')")
    tail = text[pos:].lstrip() if pending_trim else text[pos:]
    if tail:
        current.append(_Node("text", _position(text, pos), text=tail))
    if stack:
        node = stack[-1][0]
        raise TemplateError(f"line {node.at[0]}, column {node.at[1]}: {{{{{node.kind}}}}} has no {{{{end}}}}")
    return root


def _pipeline(pipe: str, at: tuple[int, int], what: str) -> str:
    if pipe == "." or _VAR.fullmatch(pipe) or _FIELD.fullmatch(pipe):
        return pipe
    raise TemplateError(f"line {at[0]}, column {at[1]}: {{{{{what + ' ' if what != 'print' else ''}{pipe}}}}}: "
                        "podlab renders conflist templates as containerd does, with .PodCIDR, .PodCIDRRanges, "
                        ".Routes, $variables and {{range}}/{{if}}/{{else}}/{{end}}; functions and pipes are not "
                        "supported")


def _value(pipe: str, scope: dict[str, Any], dot: Any, at: tuple[int, int]) -> Any:
    if pipe == ".":
        return dot
    if pipe.startswith("$"):
        if pipe not in scope:
            raise TemplateError(f"line {at[0]}, column {at[1]}: undefined variable {pipe}")
        return scope[pipe]
    name = pipe[1:]
    if not isinstance(dot, Values) or name not in Values.__dataclass_fields__:
        raise TemplateError(f"line {at[0]}, column {at[1]}: can't evaluate field {name}"
                            + ("" if isinstance(dot, Values) else f" in {_go(dot)!r}")
                            + "; the fields are PodCIDR, PodCIDRRanges and Routes")
    return getattr(dot, name)


def _go(value: Any) -> str:
    """fmt's %v, as text/template prints a value: a []string as [a b]."""
    if isinstance(value, (tuple, list)):
        return "[" + " ".join(_go(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _true(value: Any) -> bool:
    return bool(value)


def _execute(nodes: list[_Node], scope: dict[str, Any], dot: Any, out: list[str]) -> None:
    for node in nodes:
        if node.kind == "text":
            out.append(node.text)
        elif node.kind == "print":
            out.append(_go(_value(node.pipe, scope, dot, node.at)))
        elif node.kind == "if":
            _execute(node.body if _true(_value(node.pipe, scope, dot, node.at)) else node.other, scope, dot, out)
        else:
            items = _value(node.pipe, scope, dot, node.at)
            if not isinstance(items, (tuple, list)):
                raise TemplateError(f"line {node.at[0]}, column {node.at[1]}: range can't iterate over {_go(items)}")
            if not items:
                _execute(node.other, scope, dot, out)
            for i, item in enumerate(items):
                inner = dict(scope)
                if node.key:
                    inner[node.key] = i
                if node.value:
                    inner[node.value] = item
                _execute(node.body, inner, item, out)
