"""The address plan's types and arithmetic: blocks, capacity, stable MACs, neighbour budgets.

lab.allocation hands the addresses out; lab.designs plans kernel objects over them.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

NODE_IP_OFFSET = 11


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
    extra_blocks: tuple[IPv4Network, ...] = ()   # Calico IPAM: the blocks a node took once `block` was full

    @property
    def blocks(self) -> tuple[IPv4Network, ...]:
        return (self.block, *self.extra_blocks)


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
class PendingPod:
    """A pod of a running lab that got no address: its node's IPAM had none left (a kubelet's pod
    whose sandbox the CNI plugin cannot set up: ContainerCreating, FailedCreatePodSandBox). It is
    bound to its node and gets an address at a later change, once one is free."""
    name: str
    node: str
    containers: int
    reason: str
    namespace: str = "default"


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
    # The address each node's IPAM handed out last (host-local's last_reserved_ip; Calico's place in
    # its blocks): a new pod gets the next free one after it, so a replaced pod gets a new address.
    last: tuple[tuple[str, IPv4Address], ...] = ()
    # What was handed to a node last: its underlay address and (host-local designs) its pod block, as
    # Kubernetes' node IPAM (cidrset's nextCandidate) keeps it: a joining node gets the next free
    # after these, wrapping, so a node that left does not hand its block straight to the next one.
    last_node: tuple[IPv4Address, IPv4Network] | None = None
    pending: tuple[PendingPod, ...] = ()    # pods that got no address (a running lab's only)

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


def interface(ip: IPv4Address, prefixlen: int) -> IPv4Interface:
    return IPv4Interface((int(ip), prefixlen))   # no text to parse: a 1000-pod plan makes thousands
