"""The design (or the older mode and routing style) and the network: section (address ranges, MTU, bridge name).

Each range is checked on its own (a CIDR, IPv4, no host bits), then against the others and the
ranges the kernel treats specially; a default the user left out stands in for its key.
"""
from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, ip_address, ip_network
from typing import Any

from lab import designs, naming
from lab.errors import PodlabError
from lab.model import MODES, ROUTING_STYLES, CalicoSettings, DesignChoice
from lab.topology.checker import Checker, YamlPath, choice
from lab.topology.schema import DESIGN_SCHEMA, NETWORK_SCHEMA
from lab.topology.wording import show

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


def design_choice(checker: Checker, top: dict[str, Any]) -> DesignChoice | None:
    """The design: `design:` (a preset, or {attach, backend}), or the older `mode:`/`routing:`."""
    if "design" in top:
        for old in ("mode", "routing"):
            if old in top:
                checker.add((old,), f"{old}: and design: both name the design; keep design: "
                                    f"(presets: {', '.join(designs.PRESETS)}) and remove {old}:")
        return _design(checker, top["design"])
    mode, routing = mode_and_routing(checker, top)
    if mode is None or (mode == "l3" and routing is None):
        return None
    return designs.from_mode(mode, routing if mode == "l3" else None).choice


def _design(checker: Checker, raw: Any) -> DesignChoice | None:
    path: YamlPath = ("design",)
    if isinstance(raw, str):
        name = choice(checker, path, raw, tuple(designs.PRESETS), "design")
        return designs.preset(name).choice if name else None
    parts = checker.fields(path, raw, DESIGN_SCHEMA, "design")
    if parts is None:
        return None
    attach = choice(checker, path + ("attach",), parts["attach"], tuple(designs.ATTACHMENTS), "attachment") \
        if "attach" in parts else None
    backend = choice(checker, path + ("backend",), parts["backend"], tuple(designs.BACKENDS), "backend") \
        if "backend" in parts else None
    if attach is None or backend is None:
        return None
    try:
        # A combination that is a preset is called by the real CNI's name.
        return designs.combine(attach, backend, designs.preset_of(attach, backend)).choice
    except PodlabError as e:
        checker.add(path, str(e))
        return None


def mode_and_routing(checker: Checker, top: dict[str, Any]) -> tuple[str | None, str | None]:
    """The mode, and the routing style (mode l3 only; "host" unless the file says otherwise)."""
    mode = choice(checker, ("mode",), top.get("mode", DEFAULTS["mode"]), MODES, "mode")
    routing = top.get("routing")
    if routing is None:
        return mode, ("host" if mode == "l3" else None)
    routing = choice(checker, ("routing",), routing, ROUTING_STYLES, "routing style")
    if mode is not None and mode != "l3":
        checker.add(("routing",), f"routing: applies only to mode l3 (this file's mode is {mode}); "
                                  "remove 'routing:' or set 'mode: l3'")
    return mode, routing


def _cidr(checker: Checker, path: YamlPath, text: str) -> IPv4Network | None:
    key = str(path[-1])
    example = DEFAULTS[key]
    try:
        network = ip_network(text, strict=False)
    except ValueError:
        checker.add(path, f"{key} {show(text)} is not an IPv4 network in CIDR notation; write it like {example}")
        return None
    if network.version != 4:
        checker.add(path, f"{key} {show(text)} is IPv6; podlab builds IPv4 clusters: use e.g. {example}")
        return None
    if "/" not in text:
        checker.add(path, f"{key} {show(text)} needs a prefix length, e.g. {text}/{example.split('/')[1]}")
        return None
    if network.network_address != ip_address(text.split("/")[0]):
        checker.add(path, f"{key} {text} has host bits set; did you mean {network}?")
        return None
    assert isinstance(network, IPv4Network)
    return network


def _int_in_range(checker: Checker, path: YamlPath, value: int, low: int, high: int, why: str) -> int | None:
    if low <= value <= high:
        return value
    checker.add(path, f"{path[-1]} {value} is out of range: it must be {low}..{high} ({why})")
    return None


@dataclass
class NetworkSettings:
    """The network: section with its defaults filled in; None where a value is unusable (and reported)."""
    pod_cidr: IPv4Network | None
    node_mask: int | None
    node_subnet: IPv4Network | None
    service_cidr: IPv4Network | None
    mtu: int | None
    bridge: str


def network_settings(checker: Checker, top: dict[str, Any], design: designs.Design | None = None,
                     calico: CalicoSettings | None = None) -> NetworkSettings:
    """The network: section over the defaults of the design's real CNI (Calico's pool 192.168.0.0/16 and a
    node subnet outside it), then podlab's. With Calico IPAM a node's block is calico.blockSize."""
    raw = top.get("network", {})
    given = checker.fields(("network",), raw, NETWORK_SCHEMA, "network") or {}
    defaults = {**DEFAULTS, **dict(design.attachment.network_defaults if design else ())}
    net = {key: given.get(key, defaults[key]) for key in NETWORK_SCHEMA}
    at = {key: ("network", key) for key in NETWORK_SCHEMA}
    cidrs = {key: _cidr(checker, at[key], net[key]) for key in ("podCIDR", "nodeSubnet", "serviceCIDR")}
    if calico is not None:
        mask = _block_size(checker, given, calico, cidrs["podCIDR"])
    else:
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
    return NetworkSettings(cidrs["podCIDR"], mask, cidrs["nodeSubnet"], cidrs["serviceCIDR"], mtu, net["bridge"])


def _block_size(checker: Checker, given: dict[str, Any], calico: CalicoSettings,
                pool: IPv4Network | None) -> int | None:
    if "nodeCIDRMaskSize" in given:
        checker.add(("network", "nodeCIDRMaskSize"), "Calico IPAM gives nodes blocks of calico.blockSize, not node "
                                                     "CIDRs: remove nodeCIDRMaskSize (set calico: {blockSize: N})")
        return None
    if pool is not None and calico.block_size < pool.prefixlen:
        checker.add(("calico", "blockSize"), f"blockSize {calico.block_size} is wider than the IP pool {pool} "
                                             f"(network.podCIDR): use a blockSize of {pool.prefixlen} or more")
        return None
    return calico.block_size if 20 <= calico.block_size <= 32 else None


def _node_mask(checker: Checker, mask: int, pod_cidr: IPv4Network | None) -> int | None:
    path: YamlPath = ("network", "nodeCIDRMaskSize")
    low = pod_cidr.prefixlen + 1 if pod_cidr is not None else 1
    if low <= mask <= 30:
        return mask
    checker.add(path, f"nodeCIDRMaskSize {mask} must be longer than the podCIDR's prefix"
                      + (f" (/{pod_cidr.prefixlen})" if pod_cidr is not None else "")
                      + " so each node gets a slice of it, and at most 30 (a block needs a network address, "
                        f"the gateway .1, a broadcast address and a pod); use {low}..30, e.g. {max(low, 24)}")
    return None


def _check_overlaps(checker: Checker, cidrs: dict[YamlPath, IPv4Network]) -> None:
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
