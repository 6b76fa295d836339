"""The two parts of a design, as real CNIs are built from them, and what each states.

An Attachment is how a pod joins its node (the CNI plugin that makes eth0: bridge, ptp). A
Backend is how nodes reach each other's pod blocks (the daemon beside the plugin: flanneld's
VXLAN or host-gw, the cloud's VPC routes, one broadcast domain). Each states, as data, what the
rest of podlab needs to know, so no module outside lab/designs tests a design by name; each
plans its own kernel objects over the wiring every design shares (lab.designs.wiring).
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING

from lab.model import DesignChoice, Topology

if TYPE_CHECKING:
    from lab.addressing import AddressPlan, NodeAddr, PodAddr
    from lab.ops import Op


@dataclass(frozen=True)
class Attachment:
    name: str
    mirrors: str                 # the real plugin, for `podlab plan` and docs
    summary: str
    bridge: bool                 # pods hang off a node bridge (topology's network.bridge, cni0)
    routed_same_node: bool       # pod -> pod on one node crosses the node's routing table (TTL - 1)
    ipam: str = "host-local"     # how pods get addresses: host-local (a block per node, from .2) or calico
                                 # (Calico IPAM: blocks of an IP pool, taken by a node as it needs them)
    network_defaults: tuple[tuple[str, object], ...] = ()   # network: values this design's real CNI defaults to
    proxy_arp: bool = False      # the pods' gateway is no one's address: the host veth answers its ARP
    node_default_route: bool = False   # node_ops give every node a default route
    runs_plugins: bool = False   # real CNI plugin binaries attach the pods (their hostPorts are portmap's, if listed)

    def gateway(self, block: IPv4Network) -> IPv4Address:
        """The pods' gateway on a node whose (first) block this is."""
        return block[1]

    def veth_name(self, topo: Topology, namespace: str, pod: str) -> str:
        """The host end of a pod's veth."""
        from lab import naming
        return naming.veth_name(topo.name, pod)

    def pod_prefixlen(self, topo: Topology, backend: Backend) -> int:
        """The prefix length of a pod's eth0 address."""
        return topo.node_mask

    def node_ops(self, design: Design, topo: Topology, addrs: AddressPlan, node: NodeAddr) -> list[Op]:
        """What the node gets once, before its pods: a bridge, say."""
        return []

    def pod_ops(self, topo: Topology, addrs: AddressPlan, pod: PodAddr, node: NodeAddr) -> list[Op]:
        """What a pod gets: made from the pod (its address and spec) and its node alone, and the
        cluster's settings. A change of a running lab plans again only the pods it changes
        (lab.planner.part): `addrs.pods` then holds those alone."""
        raise NotImplementedError

    def static_neighbours(self, topo: Topology, addrs: AddressPlan, pods: Collection[str] | None = None) -> list[Op]:
        """The pod <-> node (and pod <-> pod) entries ARP would learn, for labs too large for the
        shared ARP table, in `addrs.pods` order. `pods`: only the entries of these (a change's,
        lab.planner.part): each one's own and those other pods hold for it."""
        return []


@dataclass(frozen=True)
class Backend:
    name: str
    mirrors: str
    summary: str
    mtu_overhead: int = 0            # bytes the encapsulation costs: pods get underlay MTU - this
    shared_segment: bool = False     # pods of every node on one broadcast domain (the uplink bridged)
    needs_bridge: bool = False       # only works with an attachment that has a node bridge
    router: bool = False             # the underlay routes: a VPC router holding one route per node block
    outside_reaches_pods: bool = False   # machines outside the cluster have routes to the pod blocks
    node_port: bool = True           # a NodePort Service works (a node's address is not a bridge port)
    bgp: bool = False                # nodes learn each other's blocks by BGP (the calico: section's BGP options)
    tunnel_address: bool = False     # the node's tunnel device takes the first address of its first block
    node_default_route: bool = False     # ops give every node a default route

    def ops(self, topo: Topology, addrs: AddressPlan, attachment: Attachment) -> list[Op]:
        """Every node's forwarding, uplink address and routes to the other blocks; the underlay's
        part. (Outside hosts are the shared wiring's: lab.designs.plan adds them.)"""
        raise NotImplementedError

    def static_neighbours(self, topo: Topology, addrs: AddressPlan) -> list[Op]:
        return []

    @property
    def underlay_role(self) -> str:
        """What the underlay namespace is, in the words of the design it emulates."""
        return "the VPC router" if self.router else "the underlay switch"


@dataclass(frozen=True)
class Design:
    """An attachment x a backend, and the preset (a real CNI's name) it was asked for by, if any."""
    attachment: Attachment
    backend: Backend
    preset: str | None = None

    @property
    def name(self) -> str:
        return self.preset or f"{self.attachment.name}+{self.backend.name}"

    @property
    def choice(self) -> DesignChoice:
        """What a Topology records of it: the names."""
        return DesignChoice(self.attachment.name, self.backend.name, self.preset)

    @property
    def parts(self) -> str:
        return f"{self.attachment.name} attachment + {self.backend.name} backend"

    def describe(self) -> str:
        """`flannel (bridge attachment + vxlan backend)`, as `podlab plan` and `up` name it."""
        return f"{self.name} ({self.parts})"

    def pod_prefixlen(self, topo: Topology) -> int:
        return self.attachment.pod_prefixlen(topo, self.backend)

    def pod_mtu(self, underlay_mtu: int) -> int:
        return underlay_mtu - self.backend.mtu_overhead

    @property
    def node_default_route(self) -> bool:
        """Whether the design gives every node a default route (else Services add one: a process on
        a node connecting to a ClusterIP needs some route before nat-output can DNAT it)."""
        return self.attachment.node_default_route or self.backend.node_default_route

    def same_node_hops(self) -> int:
        """Routing hops (TTL decrements) from a pod to a pod on the same node."""
        return 1 if self.attachment.routed_same_node else 0

    def node_sends_back(self) -> bool:
        """Whether a node forwards some packets back out the interface they came in by, and so
        sends ICMP redirects: a bridged uplink (ClusterIP traffic leaves by the bridge it came in
        by), or a routed pod's own veth when the pod reaches its own Service."""
        # Real plugins may route a node's own pods (ptp does): their lists are the user's to choose.
        return self.backend.shared_segment or self.attachment.routed_same_node or self.attachment.runs_plugins

    def cross_node_hops(self) -> int:
        """Routing hops from a pod to a pod on another node: none on one broadcast domain, else
        the two nodes (a VPC router adds one more)."""
        if self.backend.shared_segment:
            return self.same_node_hops()
        return 3 if self.backend.router else 2
