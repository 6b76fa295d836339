"""What a walk needs to know of a Calico lab to say what its kernel does: the blocks and who owns them.

A Calico pod's next hop, 169.254.1.1, is held by no one: the node's cali interface answers ARP
for it by proxy (proxy_arp=1). A node reaches another node's pods by the other node's block,
`<block> via <node IP> dev eth0 proto bird`, which BIRD installs once BGP has learned it, and
drops addresses of its own block that no pod holds by `blackhole <block> proto bird` (Felix's
`proto 80` in VXLAN mode). The kernel cannot say which block is whose, nor that a route that is
missing should have been learned: these facts, from the lab's design, let the walk say it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING

from lab.designs import calico_vxlan
from lab.designs.calico import GATEWAY
from lab.inspect import Route, Snapshot
from lab.netlink import wire

if TYPE_CHECKING:
    from lab.api import Lab

PROTO_BIRD = wire.RTPROT_BIRD
PROTO_FELIX = calico_vxlan.FELIX_PROTO
POD_GATEWAY = str(GATEWAY)


@dataclass(frozen=True)
class Facts:
    """A Calico lab's blocks, nodes and pods, as the design laid them out."""
    bgp: bool                                     # BIRD learns the blocks (the bgp backend), not Felix
    blocks: tuple[tuple[IPv4Network, str], ...]   # each block and the namespace of the node that owns it
    nodes: dict[str, str]                         # node namespace -> node name
    node_ips: dict[str, str]                      # node IP -> node namespace
    pod_ends: dict[tuple[str, str], str]          # (node namespace, cali interface) -> pod name

    def block_of(self, ip: str) -> tuple[IPv4Network, str] | None:
        """The block that holds `ip`, and its node's namespace."""
        address = IPv4Address(ip)
        return next(((b, ns) for b, ns in self.blocks if address in b), None)

    def own_blocks(self, node_ns: str) -> list[IPv4Network]:
        return [b for b, ns in self.blocks if ns == node_ns]

    def blackhole_proto(self) -> int:
        return PROTO_BIRD if self.bgp else PROTO_FELIX


def facts_of(lab: Lab) -> Facts | None:
    """The facts of a lab with the calico attachment; None for any other design."""
    if not lab.design.attachment.proxy_arp:
        return None
    a = lab.addresses
    return Facts(bgp=lab.design.backend.bgp,
                 blocks=tuple((b, n.netns) for n in a.nodes for b in n.blocks),
                 nodes={n.netns: n.name for n in a.nodes},
                 node_ips={str(n.ip): n.netns for n in a.nodes},
                 pod_ends={(next(n.netns for n in a.nodes if n.name == p.node), p.veth): p.name
                           for p in a.pods if p.veth and not p.host_network})


def entry(snap: Snapshot, prefix: str | None, table: str) -> Route | None:
    """The route a lookup matched (its prefix and table), as the namespace's snapshot holds it."""
    if prefix is None:
        return None
    return next((r for r in snap.routes if r.dst == prefix and r.table == table), None)


def learned_from(facts: Facts | None, route: Route | None, gateway: str | None,
                 owner: Callable[[str], str]) -> str | None:
    """'learned by BGP from henry003 (172.18.0.13)' for a route BIRD installed (its gateway is the
    BGP next hop, the peer node's IP); None otherwise. `owner(ns)` names a namespace."""
    if route is None or route.proto != PROTO_BIRD or route.type != "unicast" or not gateway:
        return None
    node_ns = facts.node_ips.get(gateway) if facts else None
    return f"learned by BGP from {owner(node_ns)} ({gateway})" if node_ns else f"learned by BGP from {gateway}"


def proxy_words(nexthop: str, dev: str, ns_name: str, is_node: bool) -> str:
    """'169.254.1.1 answered by proxy ARP on cali12d4a061371 of node henry003'."""
    return f"{nexthop} answered by proxy ARP on {dev} of {'node ' if is_node else ''}{ns_name}"


def no_proxy_words(dev: str, pod: str | None, node: str, nexthop: str) -> str:
    """Why a pod's ARP for its gateway goes unanswered."""
    whose = f" (pod {pod}'s host end on {node})" if pod else f" on {node}"
    return f"proxy_arp is off on {dev}{whose}: the pod's ARP for {nexthop} gets no answer"


def not_learned_words(block: IPv4Network, here: str, owner: str, wider: str | None = None) -> str:
    """Why a node has no route to another node's block; `wider`: the route that covers it instead."""
    covered = f" (only {wider} covers it)" if wider else ""
    return (f"no route to {block} on {here}{covered}: {owner}'s block is not learned — is BIRD on {owner} "
            f"running? see 'podlab bgp {owner}'")


def no_blackhole_words(block: IPv4Network, node: str, proto: str) -> str:
    return (f"{node} has no blackhole route for its own block {block} (`blackhole {block} proto {proto}` is "
            f"gone): not fatal, its pods keep their own routes, but {node} then forwards addresses of the block "
            f"that no pod holds out of its default route instead of dropping them")


def proto_name(proto: int) -> str:
    return "bird" if proto == PROTO_BIRD else str(proto)
