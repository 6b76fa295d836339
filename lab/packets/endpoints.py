"""Who sends and where to: SRC and DST as names or addresses, and the probe's arguments checked.

Errors are one line naming the argument and the fix. Probes go only to the lab's own address
space (pod CIDR, node subnet, service CIDR): every lab namespace is cut off from the root
namespace anyway, but podlab never even tries to send anywhere else.
"""
from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import TYPE_CHECKING

from lab.errors import PodlabError
from lab.packets import frames

if TYPE_CHECKING:
    from lab.api import Lab, Target

PROTOS = ("icmp", "tcp", "udp")
DEFAULT_PORTS = {"tcp": 80, "udp": 8081}     # nginx's HTTP, the e2e netexec UDP port
MAX_SIZE = 65535


@dataclass(frozen=True)
class End:
    name: str                  # what to call it: the target's name, or the address
    ip: str
    netns: str | None          # the namespace that holds the address (None: nobody in the lab)
    target: Target | None


def check_probe(proto: str, port: int | None, size: int | None) -> tuple[str, int | None, int]:
    """(proto, port, size) with defaults filled in, or a PodlabError naming the bad argument."""
    proto = (proto or "icmp").lower()
    if proto not in PROTOS:
        raise PodlabError(f"--proto {proto!r}: use one of {', '.join(PROTOS)}")
    if proto == "icmp":
        if port is not None:
            raise PodlabError("--port: ICMP has no ports; use --proto tcp or --proto udp with --port")
    else:
        port = DEFAULT_PORTS[proto] if port is None else port
        if not 1 <= port <= 65535:
            raise PodlabError(f"--port {port}: a port is 1-65535")
    low = frames.min_size(proto)
    size = frames.default_size(proto) if size is None else size
    if not low <= size <= MAX_SIZE:
        article = "an" if proto == "icmp" else "a"
        raise PodlabError(f"--size {size}: {article} {proto.upper()} probe is {low}-{MAX_SIZE} bytes "
                          f"(its IP total length); try --size {max(low, min(size, 1500))}")
    return proto, port, size


def _owner_of(lab: Lab, ip: str) -> Target | None:
    """The target that holds an address; a node wins over a hostNetwork pod that shares its address."""
    targets = lab.targets()
    by_kind = {"node": 0, "outside": 1, "router": 2, "pod": 3, "underlay": 4}
    hits = [t for t in targets.values() if t.ip is not None and str(t.ip) == ip]
    hits.sort(key=lambda t: by_kind.get(t.kind, 9))
    return hits[0] if hits else None


def source(lab: Lab, spec: str) -> End:
    try:
        ip = str(IPv4Address(spec))
    except ValueError:
        t = lab.target(spec)
        return End(t.name, str(t.ip) if t.ip else "", t.netns, t)
    owner = _owner_of(lab, ip)
    if owner is None:
        raise PodlabError(f"SRC {spec}: no pod, node or host of lab {lab.name} has this address; "
                          f"name one (podlab get pods --lab {lab.name})")
    return End(owner.name, ip, owner.netns, owner)


def destination(lab: Lab, spec: str) -> End:
    ip = str(lab.address_of(spec))
    t = _owner_of(lab, ip)
    try:
        IPv4Address(spec)
        name = f"{ip} ({t.name})" if t else ip
    except ValueError:
        t = lab.target(spec)
        name = t.name
    return End(name, ip, t.netns if t else None, t)


def require_in_lab(lab: Lab, ip: str) -> None:
    topo = lab.topology
    address = IPv4Address(ip)
    if any(address in net for net in (topo.pod_cidr, topo.node_subnet, topo.service_cidr)):
        return
    raise PodlabError(f"DST {ip} is outside lab {lab.name} (pod CIDR {topo.pod_cidr}, node subnet "
                      f"{topo.node_subnet}, service CIDR {topo.service_cidr}): podlab sends probes only to "
                      f"the lab's own addresses; 'podlab explain' walks any address without sending")


def pair(lab: Lab, src: str, dst: str, sending: bool = True) -> tuple[End, End]:
    """SRC and DST of a probe; SRC must have a namespace to send from, and a probe really sent
    (`sending`: trace, mtu; not explain, which only walks) must stay inside the lab."""
    s = source(lab, src)
    d = destination(lab, dst)
    if sending:
        require_in_lab(lab, d.ip)
    if not s.netns:
        raise PodlabError(f"SRC {src}: it has no namespace to send from")
    return s, d
