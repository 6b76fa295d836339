"""Whether the cluster fits: pods per lab, node blocks in the podCIDR (seed 000's arithmetic),
pod addresses per node block, ports per Linux bridge and host addresses in the nodeSubnet.

Each problem shows its arithmetic ("65536 / 128 = 512 nodes at most") and a setting that fits.
"""
from __future__ import annotations

import math
from ipaddress import IPv4Network

from lab.addressing import NODE_IP_OFFSET
from lab.designs import Design
from lab.model import Pod
from lab.topology.checker import Checker, YamlPath
from lab.topology.hosts import Named
from lab.topology.network import NetworkSettings
from lab.topology.pods import DeploymentDraft, PodDraft

MAX_PODS = 20000
BR_MAX_PORTS = 1024          # the kernel's limit of ports on one bridge (net/bridge/br_private.h)


def block_size(node_mask: int) -> int:
    """The addresses in one node's pod block."""
    return 2 ** (32 - node_mask)


def max_nodes(pod_cidr: IPv4Network, node_mask: int) -> int:
    """Seed 000's arithmetic: addresses in the pod CIDR / addresses per node block."""
    return pod_cidr.num_addresses // block_size(node_mask)


def max_pods_per_node(node_mask: int) -> int:
    """A node block less its network address, the gateway .1 on the bridge and the broadcast address."""
    return block_size(node_mask) - 3


def _pods_with_own_address(pods: list[tuple[Pod, YamlPath]]) -> dict[str, int]:
    """Per node, the pods that take an address from its block and a port on its bridge:
    hostNetwork pods use the node's own address and interface."""
    counts: dict[str, int] = {}
    for pod, _ in pods:
        if not pod.host_network:
            counts[pod.node] = counts.get(pod.node, 0) + 1
    return counts


def check_pod_count(checker: Checker, pods: list[PodDraft], deployments: list[DeploymentDraft]) -> bool:
    total = len(pods) + sum(d.replicas for d in deployments)
    if total <= MAX_PODS:
        return True
    path: YamlPath = ("deployments",) if deployments else ("pods",)
    checker.add(path, f"this file defines {total} pods (single pods plus replicas); podlab supports at most "
                      f"{MAX_PODS} pods per lab: lower replicas:")
    return False


def check_node_blocks(checker: Checker, net: NetworkSettings, nodes: list[Named]) -> bool:
    """Seed 000: addresses in the podCIDR / addresses per node block = the most nodes a cluster can have."""
    pod_cidr, mask = net.pod_cidr, net.node_mask
    assert pod_cidr is not None and mask is not None
    block = block_size(mask)
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


def check_pool(checker: Checker, net: NetworkSettings, nodes: list[Named], pods: list[tuple[Pod, YamlPath]],
               design: Design | None) -> None:
    """Calico IPAM: each node takes blocks of the pool as it needs them (its pods, and its tunnel
    device's address where the backend has one); the pool must hold every node's blocks."""
    pool, mask = net.pod_cidr, net.node_mask
    assert pool is not None and mask is not None
    per_block = block_size(mask)
    tunnel = 1 if design is not None and design.backend.tunnel_address else 0
    counts = _pods_with_own_address(pods)
    needed = sum(math.ceil((counts.get(n.name, 0) + tunnel) / per_block) for n in nodes)
    blocks = max_nodes(pool, mask)
    if needed > blocks:
        checker.add(("network", "podCIDR"),
                    f"the IP pool {pool} has {pool.num_addresses} addresses / {per_block} per /{mask} block = {blocks} "
                    f"blocks, and these nodes need {needed} (a node takes a block per {per_block} addresses it hands "
                    "out): use a larger pool or a smaller blockSize")


def _among(pods: list[tuple[Pod, YamlPath]], node: str, dns_pod: str | None) -> str:
    """Words for a pod the file did not write that a node's count includes: the cluster DNS pod."""
    if dns_pod is not None and any(p.name == dns_pod and p.node == node for p, _ in pods):
        return " (the cluster DNS pod among them; 'dns: false' turns it off)"
    return ""


def check_pods_per_node(checker: Checker, net: NetworkSettings, nodes: list[Named],
                        pods: list[tuple[Pod, YamlPath]], dns_pod: str | None = None) -> None:
    assert net.node_mask is not None
    block = block_size(net.node_mask)
    room = max_pods_per_node(net.node_mask)
    counts = _pods_with_own_address(pods)
    for node in nodes:
        count = counts.get(node.name, 0)
        if count > room:
            needed = 32 - math.ceil(math.log2(count + 3))
            wider = f" with a podCIDR wider than /{needed}" if net.pod_cidr and net.pod_cidr.prefixlen >= needed else ""
            checker.add(node.path, f"node {node.name} gets {count} pods{_among(pods, node.name, dns_pod)} but its "
                                   f"/{net.node_mask} block has {block} "
                                   f"addresses - 3 (network, gateway .1, broadcast) = {room}; use nodeCIDRMaskSize: "
                                   f"{needed} or less{wider}, fewer replicas, or more nodes")


def check_bridge_ports(checker: Checker, design: Design, nodes: list[Named],
                       pods: list[tuple[Pod, YamlPath]], outside: int, dns_pod: str | None = None) -> None:
    """Each node's bridge has a port per pod (and its uplink where the backend bridges it); the
    underlay switch one per node and outside host. The kernel refuses port 1025 with EBUSY
    halfway through a build, so it is checked here, before anything is made."""
    uplink = 1 if design.backend.shared_segment else 0
    counts = _pods_with_own_address(pods) if design.attachment.bridge else {}
    for node in nodes:
        ports = counts.get(node.name, 0) + uplink
        if ports > BR_MAX_PORTS:
            checker.add(node.path, f"node {node.name} gets {counts[node.name]} pods"
                                   f"{_among(pods, node.name, dns_pod)}, but its bridge would need "
                                   f"{ports} ports{' (one per pod, and the uplink)' if uplink else ' (one per pod)'}"
                                   f" and a Linux bridge holds at most {BR_MAX_PORTS} (BR_MAX_PORTS): spread the "
                                   f"pods over more nodes, at most {BR_MAX_PORTS - uplink} per node")
    if len(nodes) + outside > BR_MAX_PORTS:
        checker.add(("outside",) if outside else ("nodes",),
                    f"{len(nodes)} nodes and {outside} outside hosts need {len(nodes) + outside} ports on the underlay "
                    f"switch, but a Linux bridge holds at most {BR_MAX_PORTS} (BR_MAX_PORTS): use at most "
                    f"{BR_MAX_PORTS} nodes and outside hosts together")


def check_node_subnet(checker: Checker, subnet: IPv4Network, nodes: int, outside: int) -> None:
    needed = NODE_IP_OFFSET - 1 + nodes + outside   # the last host offset taken: nodes from .11 on, then outside hosts
    usable = subnet.num_addresses - 2
    if needed <= usable:
        return
    prefix = 32 - math.ceil(math.log2(needed + 2))
    suggestion = IPv4Network((subnet.network_address, prefix), strict=False) if prefix >= 1 else None
    checker.add(("network", "nodeSubnet"),
                f"{nodes} nodes and {outside} outside hosts do not fit in nodeSubnet {subnet}: .1 is the router and "
                f"nodes start at host offset {NODE_IP_OFFSET}, so it needs {NODE_IP_OFFSET - 1} + {nodes} + {outside} = "
                f"{needed} host addresses, "
                + (f"but /{subnet.prefixlen} has {subnet.num_addresses} - 2 = {usable}" if usable > 0
                   else f"but a /{subnet.prefixlen} has no host addresses to give")
                + (f"; use a /{prefix} such as {suggestion}" if suggestion else ""))
