"""Read a topology YAML file into a validated, frozen lab.model.Topology.

Every check runs before anything touches the host, and every problem is reported at once
with its YAML path and line, so a trainee fixes a file in one pass instead of one error per
run. Whatever the input (a syntax error, binary junk, a list where a mapping belongs), the
result is a Topology or a PodlabError: never a traceback.

The work happens in three steps:
  1. _Reader turns the YAML into plain Python values and remembers the line of every key
     and list item (PyYAML's constructors drop the marks, so we walk the composed nodes).
  2. _Checker.fields checks each mapping against a small schema table (allowed keys and
     types per level), then the section functions check meaning: names, CIDRs, references.
  3. Deployments are expanded into named pods and all pods are placed on nodes, then the
     capacity arithmetic (seed 000) is checked against the result.
"""
from __future__ import annotations

import difflib
import json
import math
import re
import shlex
from dataclasses import dataclass
from ipaddress import IPv4Network, ip_address, ip_network
from pathlib import Path
from typing import Any

import yaml
import yaml.constructor
import yaml.resolver

from lab import naming
from lab.errors import PodlabError, Problem, TopologyError
from lab.model import MODES, ROUTING_STYLES, Container, ContainerPort, Node, OutsideHost, Pod, Topology

YamlPath = tuple[str | int, ...]

# ---------------------------------------------------------------------------------------
# Limits and defaults
# ---------------------------------------------------------------------------------------
MAX_NODES = 1000
MAX_PODS = 20000
MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_YAML_NODES = 1_000_000   # stops alias bombs ("billion laughs") long before memory runs out
MAX_YAML_DEPTH = 64          # real files nest about 6 deep; this also stops recursive aliases
NODE_ADDRESS_OFFSET = 10     # node i gets host offset 10 + i: 192.168.56.11, .12, ...
RESERVED_NAMES = {"underlay": "the underlay switch", "router": "the VPC router"}
RESERVED_RANGES = {
    IPv4Network("0.0.0.0/8"): "'this network' (0.0.0.0/8)",
    IPv4Network("127.0.0.0/8"): "loopback (127.0.0.0/8)",
    IPv4Network("169.254.0.0/16"): "link-local (169.254.0.0/16)",
    IPv4Network("224.0.0.0/4"): "multicast (224.0.0.0/4)",
}
DEFAULTS = {
    "mode": "vxlan",
    "podCIDR": "10.244.0.0/16",
    "nodeCIDRMaskSize": 24,
    "nodeSubnet": "192.168.56.0/24",
    "serviceCIDR": "10.96.0.0/12",
    "mtu": 1500,
    "bridge": "cni0",
}

LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
PORT_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
PROTOCOLS = ("TCP", "UDP", "SCTP")
_YAML = "tag:yaml.org,2002:"   # the prefix of YAML's standard tags


# ---------------------------------------------------------------------------------------
# The schema: allowed keys and their types, per level
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    types: tuple[type, ...]
    required: bool = False


STR, INT, BOOL, LIST, MAP = Field((str,)), Field((int,)), Field((bool,)), Field((list,)), Field((dict,))
NAME = Field((str,), required=True)

TOP_SCHEMA = {
    "name": STR, "description": STR, "mode": STR, "routing": STR, "network": MAP,
    "nodes": Field((list, int)), "pods": LIST, "deployments": LIST, "outside": LIST, "services": LIST,
}
NETWORK_SCHEMA = {
    "podCIDR": STR, "nodeCIDRMaskSize": INT, "nodeSubnet": STR, "serviceCIDR": STR, "mtu": INT, "bridge": STR,
}
NODE_SCHEMA = {"name": NAME}
OUTSIDE_SCHEMA = {"name": NAME}
_WORKLOAD = {
    "image": STR, "command": LIST, "containers": LIST, "hostNetwork": BOOL, "namespace": STR, "labels": MAP,
}
POD_SCHEMA = {"name": NAME, "node": STR, **_WORKLOAD}
DEPLOYMENT_SCHEMA = {"name": NAME, "replicas": INT, "nodes": LIST, **_WORKLOAD}
CONTAINER_SCHEMA = {"name": NAME, "image": STR, "command": LIST, "ports": LIST}
PORT_SCHEMA = {"containerPort": Field((int,), required=True), "name": STR, "protocol": STR, "hostPort": INT}
# Services (checked by lab.services.schema): clusterIP is an address in serviceCIDR, or None (headless).
SERVICE_SCHEMA = {"name": NAME, "namespace": STR, "type": STR, "selector": MAP, "ports": LIST, "clusterIP": STR}
SERVICE_PORT_SCHEMA = {"name": STR, "port": Field((int,), required=True), "targetPort": Field((int, str)),
                       "protocol": STR, "nodePort": INT}

_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list", dict: "a mapping"}


# ---------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------
def load(path: str | Path) -> Topology:
    """Read and validate a topology file; the lab name defaults to the file's stem."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise PodlabError(f"{path}: no such topology file") from None
    except IsADirectoryError:
        raise PodlabError(f"{path} is a directory; give a topology YAML file") from None
    except OSError as e:
        raise PodlabError(f"cannot read {path}: {e.strerror or e}") from None
    if len(data) > MAX_FILE_BYTES:
        too_big = f"larger than {MAX_FILE_BYTES // 2**20} MiB; a topology is a few lines (replicas: makes many pods)"
        raise TopologyError(str(path), [Problem("(file)", too_big)])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        not_text = f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); is this a YAML file?"
        raise TopologyError(str(path), [Problem("(file)", not_text, line)]) from None
    return loads(text, source=str(path), default_name=path.stem)


def loads(text: str, source: str = "<string>", default_name: str | None = None) -> Topology:
    """Validate topology YAML text; raise TopologyError listing every problem found."""
    checker = _Checker(source)
    document = _Reader(checker).read(text)
    topology = _build(checker, document, default_name or "lab") if document is not None else None
    if checker.problems or topology is None:
        raise checker.error()
    return topology


def resolve(name_or_path: str, topologies_dir: Path) -> Path:
    """A topology file: an existing path, or a name in topologies/ ("vxlan" or "vxlan.yaml")."""
    given = Path(name_or_path)
    if given.is_file():
        return given
    if "/" not in name_or_path and name_or_path not in ("", ".", ".."):
        for candidate in (name_or_path, f"{name_or_path}.yaml", f"{name_or_path}.yml"):
            path = Path(topologies_dir) / candidate
            if path.is_file():
                return path
    available = available_topologies(topologies_dir)
    close = difflib.get_close_matches(given.stem, available, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    listing = ", ".join(available) if available else f"none found in {topologies_dir}"
    raise PodlabError(f"no topology file or name {name_or_path!r}: {hint}give a path to a YAML file "
                      f"or one of the built-in topologies: {listing}")


def max_nodes(pod_cidr: IPv4Network, node_mask: int) -> int:
    """Seed 000's arithmetic: addresses in the pod CIDR / addresses per node block."""
    return pod_cidr.num_addresses // 2 ** (32 - node_mask)


def max_pods_per_node(node_mask: int) -> int:
    """A node block less its network address, the gateway .1 on the bridge and the broadcast address."""
    return 2 ** (32 - node_mask) - 3


def available_topologies(topologies_dir: Path) -> list[str]:
    """Names of the topology files in a directory, without their .yaml suffix."""
    try:
        return sorted(p.stem for p in Path(topologies_dir).iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    except OSError:
        return []


# ---------------------------------------------------------------------------------------
# Problems, paths and lines
# ---------------------------------------------------------------------------------------
def _format_path(path: YamlPath) -> str:
    text = ""
    for part in path:
        part = part if isinstance(part, int) or len(part) <= 40 else part[:37] + "..."
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(document)"


def _show(value: Any, limit: int = 40) -> str:
    """A value as the user wrote it, cut short: names in messages may be megabytes of junk."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, (int, float, str)):
        kind = {int: "an integer", float: "a number", str: "a string"}[type(value)]
        return f"{kind} ({_show(value)})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, bytes):
        return "binary data"
    return f"a {type(value).__name__} ({_show(str(value))})"


def _is(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # bool is an int in Python, never in a topology file
        return bool in types
    return isinstance(value, types)


class _Checker:
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
        self.problems.append(Problem(_format_path(path), message, line or self.line(path)))

    def where(self, path: YamlPath) -> str:
        line = self.line(path)
        return _format_path(path) + (f" (line {line})" if line else "")

    def error(self) -> TopologyError:
        ordered = sorted(self.problems, key=lambda p: p.line or 0)
        return TopologyError(self.source, ordered)

    def fields(self, path: YamlPath, value: Any, schema: dict[str, Field], what: str) -> dict[str, Any] | None:
        """Check a mapping against its schema; return only the keys whose values have the right type.

        A key with no value (`pods:` with everything under it commented out) means the default.
        """
        if not isinstance(value, dict):
            self.add(path, f"{what} must be a mapping of keys ({', '.join(schema)}), got {_describe(value)}")
            return None
        good: dict[str, Any] = {}
        for key, item in value.items():
            spec = schema.get(key)
            if spec is None:
                self.add(path + (key,), _unknown_key(key, schema))
            elif item is None:
                continue
            elif not _is(item, spec.types):
                expected = " or ".join(_TYPE_NAMES[t] for t in spec.types)
                self.add(path + (key,), f"{key} must be {expected}, got {_describe(item)}{_type_hint(key, spec, item)}")
            else:
                good[key] = item
        for key, spec in schema.items():
            if spec.required and value.get(key) is None:
                self.add(path + (key,), f"{what} needs a {key}: add '{key}: ...'")
        return good


def _unknown_key(key: str, schema: dict[str, Field]) -> str:
    allowed = list(schema)
    by_lower = {k.lower(): k for k in allowed}
    close = difflib.get_close_matches(key.lower(), list(by_lower), n=1, cutoff=0.6)
    hint = f"did you mean '{by_lower[close[0]]}'? " if close else ""
    return f"unknown key {_show(key)}; {hint}allowed here: {', '.join(allowed)}"


def _type_hint(key: str, spec: Field, value: Any) -> str:
    """How to write the value so it has the right type."""
    if str in spec.types:
        return _quote_hint(value, key)
    if int in spec.types and isinstance(value, str) and value.strip().isdigit():
        return f"; remove the quotes: {key}: {value.strip()}"
    if list in spec.types and isinstance(value, str):
        items = _split_words(value)
        if 0 < len(items) <= 8:  # a hint, not a copy of a paragraph
            return f"; write a list: {key}: [{', '.join(_quote(w) for w in items)}]"
        return f"; write a list: {key}: [a, b]"
    return ""


def _quote_hint(value: Any, key: str | None = None) -> str:
    """YAML reads 1.10, 3600 and yes as numbers and booleans; quoting keeps them as text."""
    if not isinstance(value, (int, float, bool)):
        return ""
    as_written = yaml.safe_dump(value).splitlines()[0]
    return f"; put it in quotes: {key + ': ' if key else ''}\"{as_written}\""


def _split_words(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def _quote(word: str) -> str:
    """A list item as YAML flow text: quoted unless YAML reads it back as this very string."""
    plain = (re.fullmatch(r"-?[A-Za-z_/.][\w./-]*", word)
             and yaml.resolver.Resolver().resolve(yaml.ScalarNode, word, (True, False)) == _YAML + "str")
    return word if plain else json.dumps(word)  # a JSON string is a valid YAML double-quoted scalar


# ---------------------------------------------------------------------------------------
# YAML -> plain values, keeping lines
# ---------------------------------------------------------------------------------------
_COLLECTION_TAGS = {_YAML + t for t in ("map", "seq", "set", "omap", "pairs")}


class _DocumentTooBig(Exception):
    pass


class _Reader:
    """Walks PyYAML's node graph into dicts, lists and scalars, recording lines in the checker."""

    def __init__(self, checker: _Checker):
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
        if root is None or (root.tag == _YAML + "null" and root.value in ("", "~", "null")):
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
            checker.add((), f"the file must be a mapping of keys like name:, nodes:, pods:, got {_describe(value)}")
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
            if key_node.tag == _YAML + "merge":
                result.update(self.merged(value_node, path, depth))
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _YAML + "merge":
                continue
            line = key_node.start_mark.line + 1
            key = self.value(key_node, path, depth + 1) if isinstance(key_node, yaml.ScalarNode) else key_node
            if not isinstance(key, str):
                self.checker.add(path, _key_problem(key_node), line)
                continue
            if key in seen:
                self.checker.add(path + (key,), f"duplicate key {_show(key)} (first at line {seen[key]}); "
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
            self.checker.add(path, f"cannot read {_show(node.value)} as {node.tag.replace(_YAML, '')} ({e}); "
                                   "put it in quotes to keep it as text", node.start_mark.line + 1)
            return node.value


def _key_problem(key_node: yaml.Node) -> str:
    """YAML reads keys like 1, on or yes as numbers and booleans; ours are all names."""
    if isinstance(key_node, yaml.ScalarNode):
        return (f"key {_show(key_node.value)} is read as {key_node.tag.replace(_YAML, '')}, not a name; "
                f"quote it: \"{key_node.value[:40]}\"")
    return "a key must be a name like 'name' or 'app', not a list or mapping"


def _tag_problem(tag: str | None) -> str:
    return f"YAML tag {_show((tag or '').replace(_YAML, '!!'))} is not supported; remove it"


# ---------------------------------------------------------------------------------------
# Names (the rules live in lab.naming)
# ---------------------------------------------------------------------------------------
def _lab_name(checker: _Checker, top: dict[str, Any], default_name: str) -> str:
    name = top.get("name")
    if name is None:
        if naming.lab_name_problem(default_name):
            suggestion = naming.suggest(default_name, 24) or "demo"
            checker.add(("name",), f"the lab name defaults to the file name {_show(default_name)}, which is not valid: "
                                   f"{naming.LAB_RULE}; add 'name: {suggestion}'")
        return default_name
    problem = naming.lab_name_problem(name)
    if problem:
        suggestion = naming.suggest(name, 24)
        checker.add(("name",), problem.split("; try")[0] + (f"; write 'name: {suggestion}'" if suggestion else ""))
    return name


# ---------------------------------------------------------------------------------------
# Mode and network
# ---------------------------------------------------------------------------------------
def _choice(checker: _Checker, path: YamlPath, value: str, known: tuple[str, ...], what: str) -> str | None:
    if value in known:
        return value
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(value.lower(), list(by_lower), n=1, cutoff=0.5)
    hint = f"did you mean '{by_lower[close[0]]}'? " if close else ""
    checker.add(path, f"unknown {what} {_show(value)}; {hint}known {what}s: {', '.join(known)}")
    return None


def _mode_and_routing(checker: _Checker, top: dict[str, Any]) -> tuple[str | None, str | None]:
    mode = _choice(checker, ("mode",), top.get("mode", DEFAULTS["mode"]), MODES, "mode")
    routing = top.get("routing")
    if routing is None:
        return mode, ("host" if mode == "l3" else None)
    routing = _choice(checker, ("routing",), routing, ROUTING_STYLES, "routing style")
    if mode is not None and mode != "l3":
        checker.add(("routing",), f"routing: applies only to mode l3 (this file's mode is {mode}); "
                                  "remove 'routing:' or set 'mode: l3'")
    return mode, routing


def _cidr(checker: _Checker, path: YamlPath, text: str) -> IPv4Network | None:
    key = str(path[-1])
    example = DEFAULTS[key]
    try:
        network = ip_network(text, strict=False)
    except ValueError:
        checker.add(path, f"{key} {_show(text)} is not an IPv4 network in CIDR notation; write it like {example}")
        return None
    if network.version != 4:
        checker.add(path, f"{key} {_show(text)} is IPv6; podlab builds IPv4 clusters: use e.g. {example}")
        return None
    if "/" not in text:
        checker.add(path, f"{key} {_show(text)} needs a prefix length, e.g. {text}/{example.split('/')[1]}")
        return None
    if network.network_address != ip_address(text.split("/")[0]):
        checker.add(path, f"{key} {text} has host bits set; did you mean {network}?")
        return None
    assert isinstance(network, IPv4Network)
    return network


def _int_in_range(checker: _Checker, path: YamlPath, value: int, low: int, high: int, why: str) -> int | None:
    if low <= value <= high:
        return value
    checker.add(path, f"{path[-1]} {value} is out of range: it must be {low}..{high} ({why})")
    return None


@dataclass
class _Network:
    pod_cidr: IPv4Network | None
    node_mask: int | None
    node_subnet: IPv4Network | None
    service_cidr: IPv4Network | None
    mtu: int | None
    bridge: str


def _network(checker: _Checker, top: dict[str, Any]) -> _Network:
    raw = top.get("network", {})
    given = checker.fields(("network",), raw, NETWORK_SCHEMA, "network") or {}
    net = {key: given.get(key, DEFAULTS[key]) for key in NETWORK_SCHEMA}
    at = {key: ("network", key) for key in NETWORK_SCHEMA}
    cidrs = {key: _cidr(checker, at[key], net[key]) for key in ("podCIDR", "nodeSubnet", "serviceCIDR")}
    mask = _node_mask(checker, net["nodeCIDRMaskSize"], cidrs["podCIDR"])
    mtu = _int_in_range(checker, at["mtu"], net["mtu"], 576, 9000,
                        "576 is the smallest MTU every IPv4 host must accept, 9000 a jumbo frame")
    service = cidrs["serviceCIDR"]
    if service is not None and not 12 <= service.prefixlen <= 30:
        checker.add(at["serviceCIDR"], f"serviceCIDR {service} must be a /12 to /30 (kube-apiserver refuses a service "
                                       "range larger than /12); e.g. 10.96.0.0/12")
        cidrs["serviceCIDR"] = None
    _check_overlaps(checker, {at[k]: v for k, v in cidrs.items() if v is not None})
    bridge_problem = naming.interface_name_problem(net["bridge"])
    if bridge_problem:
        checker.add(at["bridge"], bridge_problem)
    return _Network(cidrs["podCIDR"], mask, cidrs["nodeSubnet"], cidrs["serviceCIDR"], mtu, net["bridge"])


def _node_mask(checker: _Checker, mask: int, pod_cidr: IPv4Network | None) -> int | None:
    path: YamlPath = ("network", "nodeCIDRMaskSize")
    low = pod_cidr.prefixlen + 1 if pod_cidr is not None else 1
    if low <= mask <= 30:
        return mask
    checker.add(path, f"nodeCIDRMaskSize {mask} must be longer than the podCIDR's prefix"
                      + (f" (/{pod_cidr.prefixlen})" if pod_cidr is not None else "")
                      + " so each node gets a slice of it, and at most 30 (a block needs a network address, "
                        f"the gateway .1, a broadcast address and a pod); use {low}..30, e.g. {max(low, 24)}")
    return None


def _check_overlaps(checker: _Checker, cidrs: dict[YamlPath, IPv4Network]) -> None:
    # Report each overlap where the user wrote the second of the two ranges (a default has no line).
    items = sorted(cidrs.items(), key=lambda item: checker.lines.get(item[0], 0))
    for i, (path, net) in enumerate(items):
        for other_path, other in items[i + 1:]:
            if net.overlaps(other):
                where = checker.where(path) if path in checker.lines else "the default"
                checker.add(other_path, f"{other_path[-1]} {other} overlaps {path[-1]} {net} ({where}): pod, node and "
                                        "service addresses must be told apart by routes; pick disjoint ranges")
        special = [what for reserved, what in RESERVED_RANGES.items() if net.overlaps(reserved)]
        if special:
            checker.add(path, f"{path[-1]} {net} overlaps {' and '.join(special)}, which the kernel treats "
                              f"specially; use a private range such as {DEFAULTS[str(path[-1])]}")


# ---------------------------------------------------------------------------------------
# Nodes and outside hosts
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Named:
    name: str
    path: YamlPath   # where the name is written (or the list, for generated ones)


def _hosts(checker: _Checker, key: str, raw: Any, schema: dict[str, Field], what: str) -> list[_Named]:
    """A list of names or {name: ...} mappings: the nodes or the outside hosts."""
    hosts = []
    for index, item in enumerate(raw):
        path: YamlPath = (key, index)
        if isinstance(item, dict):
            item = (checker.fields(path, item, schema, what) or {}).get("name")
            path = path + ("name",)
        elif not isinstance(item, str):
            checker.add(path, f"each {what} is a name or a mapping like {{name: ...}}, got {_describe(item)}")
            continue
        if item is None:
            continue
        problem = naming.host_name_problem(item, f"{what} name")
        if problem:
            checker.add(path, problem)
        hosts.append(_Named(item, path))
    return hosts


def _nodes(checker: _Checker, top: dict[str, Any], document: dict[str, Any]) -> list[_Named] | None:
    """The cluster's nodes, or None when the nodes: key is unusable (its problem is reported)."""
    if document.get("nodes") is not None and "nodes" not in top:
        return None  # the wrong type, already reported by the schema check
    raw = top.get("nodes", 2)
    path: YamlPath = ("nodes",)
    count = raw if isinstance(raw, int) else len(raw)
    if count < 1:
        checker.add(path, f"a cluster needs at least one node; write e.g. 'nodes: 2' (got {_show(raw)})")
        return None
    if count > MAX_NODES:
        checker.add(path, f"{count} nodes is more than podlab's limit of {MAX_NODES} nodes per lab")
        return None
    if isinstance(raw, int):
        return [_Named(f"node{i}", path) for i in range(1, raw + 1)]
    return _hosts(checker, "nodes", raw, NODE_SCHEMA, "node") or None  # no usable entry: each was reported


# ---------------------------------------------------------------------------------------
# Pods and deployments
# ---------------------------------------------------------------------------------------
@dataclass
class _Workload:
    """What pods and deployments share: the pod template."""
    containers: tuple[Container, ...]
    namespace: str
    host_network: bool
    labels: dict[str, str]


@dataclass
class _PodDraft:
    name: str
    path: YamlPath
    node: str | None
    workload: _Workload


@dataclass
class _DeploymentDraft:
    name: str
    path: YamlPath
    replicas: int
    nodes: list[str] | None        # placement restriction; None = every node
    workload: _Workload


def _image_container_name(image: str) -> str:
    """docker.io/library/nginx:1.25 -> nginx: the container name kubectl run would pick."""
    last = image.split("@")[0].rstrip("/").split("/")[-1]
    return last.split(":")[0]


def _command(checker: _Checker, path: YamlPath, raw: list[Any]) -> tuple[str, ...]:
    words = []
    for index, word in enumerate(raw):
        if isinstance(word, str) and "\0" not in word:
            words.append(word)
        elif isinstance(word, str):
            checker.add(path + (index,), "a command argument cannot contain a NUL character")
        else:
            checker.add(path + (index,), f"command arguments are strings, got {_describe(word)}{_quote_hint(word)}")
    return tuple(words)


def _image(checker: _Checker, path: YamlPath, image: str) -> str:
    """The image reference; "" when it is not one (and the problem is reported)."""
    if not image or any(c.isspace() or not c.isprintable() for c in image):
        checker.add(path, f"image {_show(image)} is not an image reference; write e.g. 'image: nginx'")
        return ""
    return image


def _ports(checker: _Checker, path: YamlPath, raw: list[Any],
           used: dict[tuple[int, str], str]) -> tuple[tuple[int, ...], tuple[ContainerPort, ...]]:
    """Container ports, and as declared; `used` maps (port, protocol) to the container path, across the pod."""
    ports = []
    specs = []
    for index, item in enumerate(raw):
        at = path + (index,)
        protocol = "TCP"
        spec: dict[str, Any] = {}
        if isinstance(item, dict):
            spec = checker.fields(at, item, PORT_SCHEMA, "a port") or {}
            protocol = _choice(checker, at + ("protocol",), spec.get("protocol", "TCP"), PROTOCOLS, "protocol") or "TCP"
            if "name" in spec and not (PORT_NAME.fullmatch(spec["name"]) and len(spec["name"]) <= 15
                                       and "--" not in spec["name"] and re.search("[a-z]", spec["name"])):
                checker.add(at + ("name",), f"port name {_show(spec['name'])} must be at most 15 lowercase letters, "
                                            "digits and '-' with at least one letter (an IANA service name like http)")
            if "hostPort" in spec and not 1 <= spec["hostPort"] <= 65535:
                checker.add(at + ("hostPort",), f"hostPort {spec['hostPort']} is out of range: ports are 1..65535")
                del spec["hostPort"]
            item = spec.get("containerPort")
            if item is None:
                continue
            at = at + ("containerPort",)
        if not _is(item, (int,)):
            hint = f"; remove the quotes: {item.strip()}" if isinstance(item, str) and item.strip().isdigit() else ""
            checker.add(at, f"a port is a number 1..65535 or a mapping like {{containerPort: 80, name: http}}, "
                            f"got {_describe(item)}{hint}")
        elif not 1 <= item <= 65535:
            checker.add(at, f"port {item} is out of range: ports are 1..65535")
        elif (item, protocol) in used:
            checker.add(at, f"port {item}/{protocol} is already declared by {used[(item, protocol)]}: the containers "
                            "of a pod share one network namespace, so only one can listen on it")
        else:
            used[(item, protocol)] = checker.where(path[:-1])
            ports.append(item)
            specs.append(ContainerPort(item, protocol, spec.get("name", ""), spec.get("hostPort")))
    return tuple(ports), tuple(specs)


def _container(checker: _Checker, path: YamlPath, raw: Any, used_ports: dict[tuple[int, str], str]) -> Container | None:
    spec = checker.fields(path, raw, CONTAINER_SCHEMA, "a container")
    if spec is None or "name" not in spec:
        return None
    problem = naming.dns_label_problem(spec["name"], "container name")
    if problem:
        checker.add(path + ("name",), problem)
    image = _image(checker, path + ("image",), spec["image"]) if "image" in spec else Container.image
    command = _command(checker, path + ("command",), spec.get("command", []))
    ports, port_specs = _ports(checker, path + ("ports",), spec.get("ports", []), used_ports)
    return Container(spec["name"], image, ports, command, port_specs)


def _containers(checker: _Checker, path: YamlPath, spec: dict[str, Any], what: str) -> tuple[Container, ...]:
    shorthand = [k for k in ("image", "command") if k in spec]
    if "containers" in spec and shorthand:
        checker.add(path + (shorthand[0],), f"use either image:/command: (one container) or containers: (a list), "
                                            f"not both: move {shorthand[0]}: into a container")
        return ()
    if "containers" in spec:
        if not spec["containers"]:
            checker.add(path + ("containers",), f"containers: is empty; {what} needs at least one container")
        used_ports: dict[tuple[int, str], str] = {}
        containers = []
        first_use: dict[str, YamlPath] = {}
        for index, raw in enumerate(spec["containers"]):
            container = _container(checker, path + ("containers", index), raw, used_ports)
            if container is None:
                continue
            if container.name in first_use:
                checker.add(path + ("containers", index, "name"),
                            f"container name {_show(container.name)} is already used in this pod by "
                            f"{checker.where(first_use[container.name])}: names are unique within a pod")
                continue
            first_use[container.name] = path + ("containers", index, "name")
            containers.append(container)
        return tuple(containers)
    if "image" not in spec:
        hint = "command: goes with an image: add 'image: busybox'" if "command" in spec else \
            "add 'image: busybox' (or nginx, echoserver), or a containers: list"
        checker.add(path + tuple(shorthand[:1]), f"{what} needs at least one container: {hint}")
        return ()
    image = _image(checker, path + ("image",), spec["image"])
    name = _image_container_name(image)
    if image and naming.dns_label_problem(name, "container name"):
        checker.add(path + ("image",), f"the container would be named {_show(name)} after the image, which is not a "
                                       f"DNS label; use containers: [{{name: app, image: {image}}}] to name it")
    return (Container(name, image, (), _command(checker, path + ("command",), spec.get("command", []))),)


def _labels(checker: _Checker, path: YamlPath, raw: dict[str, Any]) -> dict[str, str]:
    labels = {}
    for key, value in raw.items():
        at = path + (key,)
        prefix, _, name = key.rpartition("/")
        bad_prefix = prefix and naming.kube_name_problem(prefix, "prefix")
        if not (LABEL_NAME.fullmatch(name) and len(name) <= 63) or bad_prefix:
            checker.add(at, f"label key {_show(key)} is not valid: an optional DNS prefix and '/', then at most 63 "
                            "letters, digits, '-', '_' or '.', starting and ending with a letter or digit (e.g. app)")
        if not isinstance(value, str):
            checker.add(at, f"label values are strings, got {_describe(value)}{_quote_hint(value, key)}")
            continue
        if value and not (LABEL_NAME.fullmatch(value) and len(value) <= 63):
            checker.add(at, f"label value {_show(value)} is not valid: at most 63 letters, digits, '-', '_' or '.', "
                            "starting and ending with a letter or digit, or empty")
        labels[key] = value
    return labels


def _workload(checker: _Checker, path: YamlPath, spec: dict[str, Any], what: str) -> _Workload:
    containers = _containers(checker, path, spec, what)
    namespace = spec.get("namespace", "default")
    problem = naming.dns_label_problem(namespace, "namespace")
    if problem:
        checker.add(path + ("namespace",), problem)
    labels = _labels(checker, path + ("labels",), spec.get("labels", {}))
    return _Workload(containers, namespace, spec.get("hostNetwork", False), labels)


def _pods(checker: _Checker, raw: list[Any]) -> list[_PodDraft]:
    drafts = []
    for index, item in enumerate(raw):
        path: YamlPath = ("pods", index)
        spec = checker.fields(path, item, POD_SCHEMA, "a pod")
        if spec is None:
            continue
        workload = _workload(checker, path, spec, "a pod")
        if "name" not in spec:
            continue
        problem = naming.kube_name_problem(spec["name"], "pod name")
        if problem:
            checker.add(path + ("name",), problem)
        drafts.append(_PodDraft(spec["name"], path, spec.get("node"), workload))
    return drafts


def _deployments(checker: _Checker, raw: list[Any]) -> list[_DeploymentDraft]:
    drafts: list[_DeploymentDraft] = []
    first_use: dict[str, YamlPath] = {}
    for index, item in enumerate(raw):
        path: YamlPath = ("deployments", index)
        spec = checker.fields(path, item, DEPLOYMENT_SCHEMA, "a deployment")
        if spec is None:
            continue
        workload = _workload(checker, path, spec, "a deployment")
        replicas = spec.get("replicas", 1)
        if replicas < 0:
            checker.add(path + ("replicas",), f"replicas {replicas} is negative; use 0 or more")
            replicas = 0
        nodes = _placement_nodes(checker, path + ("nodes",), spec["nodes"]) if "nodes" in spec else None
        if "name" not in spec:
            continue
        name = spec["name"]
        problem = naming.kube_name_problem(name, "deployment name")
        if problem:
            checker.add(path + ("name",), problem)
        if name in first_use:
            checker.add(path + ("name",), f"deployment name {_show(name)} is already used by "
                                          f"{checker.where(first_use[name])}; give each deployment its own name")
            continue
        first_use[name] = path + ("name",)
        workload.labels = workload.labels or {"app": name}
        drafts.append(_DeploymentDraft(name, path, replicas, nodes, workload))
    return drafts


def _placement_nodes(checker: _Checker, path: YamlPath, raw: list[Any]) -> list[str]:
    names = []
    for index, item in enumerate(raw):
        if isinstance(item, str):
            names.append(item)
        else:
            checker.add(path + (index,), f"each entry is a node name, got {_describe(item)}")
    if not raw:
        checker.add(path, "nodes: [] leaves nowhere to run the replicas; list node names, "
                          "or remove it to use every node")
    return names


# ---------------------------------------------------------------------------------------
# Placement, names shared by namespaces, capacity
# ---------------------------------------------------------------------------------------
def _unknown_node(checker: _Checker, path: YamlPath, name: str, nodes: list[str]) -> None:
    close = difflib.get_close_matches(name, nodes, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    shown = ", ".join(nodes[:10]) + (", ..." if len(nodes) > 10 else "")
    checker.add(path, f"no node named {_show(name)}; {hint}the nodes are: {shown}")


def _place(checker: _Checker, lab: str, nodes: list[str], pods: list[_PodDraft],
           deployments: list[_DeploymentDraft]) -> list[tuple[Pod, YamlPath]]:
    """Expand deployments and put every pod on a node.

    Pods without a node and replicas go round-robin over their allowed nodes with one
    counter shared by the whole file, so load stays even and the result is deterministic.
    """
    placed: list[tuple[Pod, YamlPath]] = []
    known = set(nodes)
    turn = 0
    for draft in pods:
        if draft.node is None:
            node, turn = nodes[turn % len(nodes)], turn + 1
        else:
            node = draft.node
            if node not in known:
                _unknown_node(checker, draft.path + ("node",), node, nodes)
        placed.append((_pod(draft.name, node, draft.workload, None), draft.path))
    for deployment in deployments:
        allowed = nodes
        if deployment.nodes is not None:
            for index, name in enumerate(deployment.nodes):
                if name not in known:
                    _unknown_node(checker, deployment.path + ("nodes", index), name, nodes)
            allowed = [n for n in nodes if n in set(deployment.nodes)]
        if not allowed:
            continue
        template_hash = naming.pod_template_hash(lab, deployment.name)
        labels = {**deployment.workload.labels, "pod-template-hash": template_hash}
        workload = _Workload(deployment.workload.containers, deployment.workload.namespace,
                             deployment.workload.host_network, labels)
        for name in naming.deployment_pod_names(lab, deployment.name, deployment.replicas):
            node, turn = allowed[turn % len(allowed)], turn + 1
            placed.append((_pod(name, node, workload, deployment.name), deployment.path))
    return placed


def _pod(name: str, node: str, workload: _Workload, deployment: str | None) -> Pod:
    return Pod(name=name, node=node, containers=workload.containers, namespace=workload.namespace,
               host_network=workload.host_network, labels=tuple(sorted(workload.labels.items())),
               deployment=deployment)


def _check_unique_names(checker: _Checker, nodes: list[_Named], pods: list[tuple[Pod, YamlPath]],
                        outside: list[_Named]) -> None:
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
            checker.add(path, f"the name {_show(name)} is reserved for {RESERVED_NAMES[name]} "
                              f"(namespace <lab>-{name}); pick another name")
        elif name in owners:
            checker.add(path, f"the name {_show(name)} is already used by {owners[name]}: nodes, pods and outside "
                              "hosts each become a network namespace <lab>-<name>, so names must be unique; "
                              "rename one of them")
        else:
            owners[name] = checker.where(path) + note


def _check_pod_count(checker: _Checker, pods: list[_PodDraft], deployments: list[_DeploymentDraft]) -> bool:
    total = len(pods) + sum(d.replicas for d in deployments)
    if total <= MAX_PODS:
        return True
    path: YamlPath = ("deployments",) if deployments else ("pods",)
    checker.add(path, f"this file defines {total} pods (single pods plus replicas); podlab supports at most "
                      f"{MAX_PODS} pods per lab: lower replicas:")
    return False


def _check_node_blocks(checker: _Checker, net: _Network, nodes: list[_Named]) -> bool:
    """Seed 000: addresses in the podCIDR / addresses per node block = the most nodes a cluster can have."""
    pod_cidr, mask = net.pod_cidr, net.node_mask
    assert pod_cidr is not None and mask is not None
    block = 2 ** (32 - mask)
    blocks = max_nodes(pod_cidr, mask)
    if len(nodes) <= blocks:
        return True
    bits = math.ceil(math.log2(len(nodes)))
    fixes = []
    if mask - bits >= 1:
        larger = IPv4Network((pod_cidr.network_address, mask - bits), strict=False)
        fixes.append(f"a larger podCIDR (/{mask - bits}, e.g. {larger})")
    if pod_cidr.prefixlen + bits <= 30:
        fixes.append(f"a longer nodeCIDRMaskSize ({pod_cidr.prefixlen + bits}: "
                     f"{max_pods_per_node(pod_cidr.prefixlen + bits)} pods per node)")
    checker.add(("network", "podCIDR"),
                f"{len(nodes)} nodes do not fit: {pod_cidr} has {pod_cidr.num_addresses} addresses / {block} per node "
                f"block (/{mask}): {pod_cidr.num_addresses} / {block} = {blocks} node{'s' if blocks != 1 else ''} "
                "at most; use " + (" or ".join(fixes) or "fewer nodes"))
    return False


def _check_pods_per_node(checker: _Checker, net: _Network, nodes: list[_Named],
                         pods: list[tuple[Pod, YamlPath]]) -> None:
    assert net.node_mask is not None
    block = 2 ** (32 - net.node_mask)
    room = max_pods_per_node(net.node_mask)
    counts: dict[str, int] = {}
    for pod, _ in pods:
        if not pod.host_network:  # hostNetwork pods use the node's own address
            counts[pod.node] = counts.get(pod.node, 0) + 1
    for node in nodes:
        count = counts.get(node.name, 0)
        if count > room:
            needed = 32 - math.ceil(math.log2(count + 3))
            wider = f" with a podCIDR wider than /{needed}" if net.pod_cidr and net.pod_cidr.prefixlen >= needed else ""
            checker.add(node.path, f"node {node.name} gets {count} pods but its /{net.node_mask} block has {block} "
                                   f"addresses - 3 (network, gateway .1, broadcast) = {room}; use nodeCIDRMaskSize: "
                                   f"{needed} or less{wider}, fewer replicas, or more nodes")


BR_MAX_PORTS = 1024   # the kernel's limit of ports on one bridge (net/bridge/br_private.h)


def _check_bridge_ports(checker: _Checker, mode: str | None, nodes: list[_Named],
                        pods: list[tuple[Pod, YamlPath]], outside: int) -> None:
    """Each node's bridge has a port per pod (and in l2 mode its uplink); the underlay switch
    one per node and outside host. The kernel refuses port 1025 with EBUSY halfway through a
    build, so it is checked here, before anything is made."""
    uplink = 1 if mode == "l2" else 0
    counts: dict[str, int] = {}
    for pod, _ in pods:
        if not pod.host_network:
            counts[pod.node] = counts.get(pod.node, 0) + 1
    for node in nodes:
        ports = counts.get(node.name, 0) + uplink
        if ports > BR_MAX_PORTS:
            checker.add(node.path, f"node {node.name} gets {counts[node.name]} pods, but its bridge would need "
                                   f"{ports} ports{' (one per pod, and the uplink in l2 mode)' if uplink else ' (one per pod)'}"
                                   f" and a Linux bridge holds at most {BR_MAX_PORTS} (BR_MAX_PORTS): spread the "
                                   f"pods over more nodes, at most {BR_MAX_PORTS - uplink} per node")
    if len(nodes) + outside > BR_MAX_PORTS:
        checker.add(("outside",) if outside else ("nodes",),
                    f"{len(nodes)} nodes and {outside} outside hosts need {len(nodes) + outside} ports on the underlay "
                    f"switch, but a Linux bridge holds at most {BR_MAX_PORTS} (BR_MAX_PORTS): use at most "
                    f"{BR_MAX_PORTS} nodes and outside hosts together")


def _check_node_subnet(checker: _Checker, subnet: IPv4Network, nodes: int, outside: int) -> None:
    needed = NODE_ADDRESS_OFFSET + nodes + outside
    usable = subnet.num_addresses - 2
    if needed <= usable:
        return
    prefix = 32 - math.ceil(math.log2(needed + 2))
    suggestion = IPv4Network((subnet.network_address, prefix), strict=False) if prefix >= 1 else None
    checker.add(("network", "nodeSubnet"),
                f"{nodes} nodes and {outside} outside hosts do not fit in nodeSubnet {subnet}: .1 is the router and "
                f"nodes start at host offset 11, so it needs 10 + {nodes} + {outside} = {needed} host addresses, "
                + (f"but /{subnet.prefixlen} has {subnet.num_addresses} - 2 = {usable}" if usable > 0
                   else f"but a /{subnet.prefixlen} has no host addresses to give")
                + (f"; use a /{prefix} such as {suggestion}" if suggestion else ""))


# ---------------------------------------------------------------------------------------
# Putting it together
# ---------------------------------------------------------------------------------------
def _build(checker: _Checker, document: dict[str, Any], default_name: str) -> Topology | None:
    top = checker.fields((), document, TOP_SCHEMA, "the topology") or {}
    lab = _lab_name(checker, top, default_name)
    mode, routing = _mode_and_routing(checker, top)
    net = _network(checker, top)
    nodes = _nodes(checker, top, document)
    outside = _hosts(checker, "outside", top.get("outside", []), OUTSIDE_SCHEMA, "outside host")
    pod_drafts = _pods(checker, top.get("pods", []))
    deployments = _deployments(checker, top.get("deployments", []))
    if nodes is None or not _check_pod_count(checker, pod_drafts, deployments):
        return None
    node_names = [n.name for n in nodes]
    placed = _place(checker, lab, node_names, pod_drafts, deployments)
    from lab.services import schema as service_schema  # it builds on this module's checker
    services, placed = service_schema.check(checker, lab, document, top, placed, node_names, net.service_cidr)
    _check_unique_names(checker, nodes, placed, outside)
    if net.pod_cidr is not None and net.node_mask is not None and _check_node_blocks(checker, net, nodes):
        _check_pods_per_node(checker, net, nodes, placed)
    if net.node_subnet is not None:
        _check_node_subnet(checker, net.node_subnet, len(nodes), len(outside))
    _check_bridge_ports(checker, mode, nodes, placed, len(outside))
    if checker.problems or mode is None:
        return None
    assert None not in (net.pod_cidr, net.node_mask, net.node_subnet, net.service_cidr, net.mtu)
    return Topology(
        name=lab, mode=mode, routing=routing, pod_cidr=net.pod_cidr, node_mask=net.node_mask,
        node_subnet=net.node_subnet, service_cidr=net.service_cidr, mtu=net.mtu, bridge=net.bridge,
        nodes=tuple(Node(n) for n in node_names), pods=tuple(pod for pod, _ in placed),
        outside=tuple(OutsideHost(o.name) for o in outside), services=services,
        cluster_services="services" in document, description=top.get("description", ""),
        source=checker.source,
    )
