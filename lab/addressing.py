"""The address plan: pure ipaddress arithmetic, the same file always gives the same addresses.

- Node i (0-based, in file order) gets the i-th block of the pod CIDR, as Kubernetes'
  node IPAM does; its bridge holds the block's first address as the pods' gateway.
- Pods get addresses from .2 upward in file order, as host-local hands them out.
- On the underlay, .1 is the VPC router (or the gateway), nodes start at .11 as in the
  reference's 192.168.56.11, and outside hosts follow the nodes.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from lab import naming
from lab.model import Pod, Topology

NODE_IP_OFFSET = 11
VXLAN_OVERHEAD = 50      # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8, flannel's MTU - 50


@dataclass(frozen=True)
class Capacity:
    """Seed 000's arithmetic: addresses in the pod CIDR / addresses per node block = max nodes."""
    pod_addresses: int
    block_addresses: int
    max_nodes: int
    max_pods_per_node: int

    def __str__(self) -> str:
        return (f"{self.pod_addresses} addresses / {self.block_addresses} per node block "
                f"= at most {self.max_nodes} nodes, {self.max_pods_per_node} pods per node")


@dataclass(frozen=True)
class NodeAddr:
    name: str
    index: int
    netns: str
    ip: IPv4Address
    block: IPv4Network
    gateway: IPv4Address
    vtep_mac: str


@dataclass(frozen=True)
class PodAddr:
    name: str
    node: str
    netns: str              # the node's namespace for hostNetwork pods
    ip: IPv4Address
    prefixlen: int
    veth: str | None        # host end on the node; None for hostNetwork pods
    host_network: bool


@dataclass(frozen=True)
class HostAddr:
    name: str
    netns: str
    ip: IPv4Address


@dataclass(frozen=True)
class AddressPlan:
    lab: str
    underlay_netns: str
    router_ip: IPv4Address
    underlay_prefixlen: int
    nodes: tuple[NodeAddr, ...]
    pods: tuple[PodAddr, ...]
    outside: tuple[HostAddr, ...]
    capacity: Capacity
    pod_mtu: int
    static_neighbours: bool = False    # see SHARED_ARP_BUDGET
    static_pod_pairs: bool = False     # pod <-> pod entries within a node too (see STATIC_PAIRS_LIMIT)

    def node(self, name: str) -> NodeAddr:
        try:
            return self._nodes_by_name[name]
        except KeyError:
            raise StopIteration(name) from None   # as the linear search it replaces

    @cached_property
    def _nodes_by_name(self) -> dict[str, NodeAddr]:
        return {n.name: n for n in self.nodes}

    def pod(self, name: str) -> PodAddr:
        return next(p for p in self.pods if p.name == name)


def capacity(pod_cidr: IPv4Network, node_mask: int) -> Capacity:
    block = 2 ** (32 - node_mask)
    return Capacity(pod_cidr.num_addresses, block, pod_cidr.num_addresses // block, max(block - 3, 0))


def stable_mac(lab: str, owner: str, device: str) -> str:
    """A stable, locally administered unicast MAC for one of the lab's devices."""
    digest = hashlib.sha256(f"{lab}/{owner}/{device}".encode()).digest()
    return (b"\x0a" + digest[:5]).hex(":")


def vtep_mac(lab: str, node: str) -> str:
    return stable_mac(lab, node, "vtep")


# The kernel's neighbour (ARP) table is shared by every namespace and holds at most
# gc_thresh3 (1024 by default) dynamic entries; only the root namespace may raise it.
# Permanent entries do not count, so large labs write the entries ARP would have learnt.
SHARED_ARP_BUDGET = 768
# Pod <-> pod entries within a node grow with the square of its pods: 20 pods make 380, but
# 1000 pods on one bridge would make 999,000 (tens of seconds of netlink, hundreds of MB of
# kernel memory). Beyond this many, pods of one node learn each other by ARP as usual and
# only the entries that grow linearly (pod <-> gateway, node <-> node) are written.
STATIC_PAIRS_LIMIT = 65_536


def dynamic_neighbours(pods: int, nodes: int, pod_pairs: int = 0) -> int:
    """About how many entries ARP learns in a lab: pod->gateway, node->pod, node->node, and
    pod->pod between the `pod_pairs` ordered pairs of pods that share a broadcast domain."""
    return 2 * pods + nodes * nodes + pod_pairs


def same_node_pod_pairs(pods: tuple[PodAddr, ...] | list[PodAddr]) -> int:
    """Ordered pairs of pods (not hostNetwork) on the same node: the pod <-> pod entries to write."""
    per_node = Counter(p.node for p in pods if not p.host_network)
    return sum(k * (k - 1) for k in per_node.values())


def pod_prefixlen(topo: Topology) -> int:
    # In l2 mode every pod is on-link with every other pod: one broadcast domain.
    return topo.pod_cidr.prefixlen if topo.mode == "l2" else topo.node_mask


def plan(topo: Topology) -> AddressPlan:
    blocks = topo.pod_cidr.subnets(new_prefix=topo.node_mask)
    hosts = topo.node_subnet
    nodes = []
    for i, (node, block) in enumerate(zip(topo.nodes, blocks)):
        nodes.append(NodeAddr(
            name=node.name, index=i, netns=naming.netns_name(topo.name, node.name),
            ip=hosts[NODE_IP_OFFSET + i], block=block, gateway=block[1],
            vtep_mac=vtep_mac(topo.name, node.name)))
    by_node = {n.name: n for n in nodes}

    prefixlen = pod_prefixlen(topo)
    next_host = {n.name: 2 for n in nodes}
    pods = []
    for pod in topo.pods:
        node = by_node[pod.node]
        pods.append(_pod_addr(topo, pod, node, next_host, prefixlen))

    pairs = same_node_pod_pairs(pods)
    on_link = len([p for p in pods if not p.host_network])
    # In l2 mode every pod is on-link with every pod, so all of them may ARP for each other.
    segment_pairs = on_link * (on_link - 1) if topo.mode == "l2" else pairs
    static = dynamic_neighbours(len(pods), len(nodes) + len(topo.outside), segment_pairs) > SHARED_ARP_BUDGET
    first_outside = NODE_IP_OFFSET + len(nodes)
    outside = tuple(HostAddr(h.name, naming.netns_name(topo.name, h.name), hosts[first_outside + i])
                    for i, h in enumerate(topo.outside))
    return AddressPlan(
        lab=topo.name, underlay_netns=naming.netns_name(topo.name, "underlay"),
        router_ip=hosts[1], underlay_prefixlen=hosts.prefixlen,
        nodes=tuple(nodes), pods=tuple(pods), outside=outside,
        capacity=capacity(topo.pod_cidr, topo.node_mask),
        pod_mtu=topo.mtu - VXLAN_OVERHEAD if topo.mode == "vxlan" else topo.mtu,
        static_neighbours=static, static_pod_pairs=static and pairs <= STATIC_PAIRS_LIMIT)


def _pod_addr(topo: Topology, pod: Pod, node: NodeAddr, next_host: dict[str, int], prefixlen: int) -> PodAddr:
    if pod.host_network:
        return PodAddr(pod.name, pod.node, node.netns, node.ip, topo.node_subnet.prefixlen, None, True)
    ip = node.block[next_host[node.name]]
    next_host[node.name] += 1
    return PodAddr(pod.name, pod.node, naming.netns_name(topo.name, pod.name), ip, prefixlen,
                   naming.veth_name(topo.name, pod.name), False)


def interface(ip: IPv4Address, prefixlen: int) -> IPv4Interface:
    return IPv4Interface((int(ip), prefixlen))   # no text to parse: a 1000-pod plan makes thousands
