"""Handing out addresses: node blocks, node and pod addresses, as Kubernetes and host-local do.

- Node i (0-based, in file order) gets the i-th block of the pod CIDR, as Kubernetes' node
  IPAM does; the block's first address is the pods' gateway.
- Pods get addresses from .2 upward in file order, as host-local hands them out; in a running lab
  (allocate with `previous`) a pod keeps its address and a new one gets the next free address after
  the one its node handed out last, wrapping round the block, so a replaced pod gets a new address.
- In a running lab a pod its node has no address left for is Pending (PendingPod), as a kubelet's
  pod is when host-local has none: the rest of the change goes ahead, and a later change gives it
  an address once one is free. A new lab that does not fit is refused before (lab.topology.capacity).
- On the underlay, .1 is the VPC router (or the gateway), nodes start at .11 as in the
  reference's 192.168.56.11, and outside hosts follow the nodes.
- In a running lab nodes join and leave: one that stays keeps its addresses and blocks, one that
  leaves gives them back, and one that joins gets the next free address and block after those
  handed out last, wrapping round (Kubernetes' cidrset; Calico IPAM picks its block as it does).

Pure: the same topology always gives the same plan. A lab keeps the allocation it was built with
as a record in its state (record/from_record): every later command reads it, not the file.
"""
from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from lab import calico_ipam, designs, naming
from lab.addressing import (NODE_IP_OFFSET, SHARED_ARP_BUDGET, STATIC_PAIRS_LIMIT, AddressPlan, HostAddr, NodeAddr,
                            PendingPod, PodAddr, Capacity, capacity, dynamic_neighbours, same_node_pod_pairs, vtep_mac)
from lab.errors import PodlabError
from lab.model import Topology


def allocate(topo: Topology, previous: AddressPlan | None = None) -> AddressPlan:
    """The address plan of `topo`: a new one, or (`previous`, a running lab's) the one it has, changed
    only where the pods and nodes changed."""
    design = designs.of(topo)
    hosts = topo.node_subnet
    pool = calico_ipam.Pool(topo.pod_cidr, topo.node_mask) if design.attachment.ipam == "calico" else None
    if previous is not None:
        nodes, joined, last_node = _running_nodes(topo, previous, pool)
    else:
        blocks = (pool.take_block(n.name) for n in topo.nodes) if pool else topo.pod_cidr.subnets(new_prefix=topo.node_mask)
        nodes = []
        for i, (node, block) in enumerate(zip(topo.nodes, blocks)):
            nodes.append(_node(topo, node.name, i, hosts[NODE_IP_OFFSET + i], block))
        joined = {n.name for n in nodes}
        last_node = (nodes[-1].ip, nodes[-1].block) if nodes else None
    by_node = {n.name: n for n in nodes}

    prefixlen = design.pod_prefixlen(topo)
    wanted = {pod.name: pod for pod in topo.pods}
    kept = {p.name: p for p in (previous.pods if previous is not None else ())
            if p.name in wanted and wanted[p.name].node == p.node and wanted[p.name].host_network == p.host_network}
    last = {node: ip for node, ip in previous.last if node in by_node} if previous is not None else {}
    ipam = Ipam(pool, last, kept)
    if pool is not None and design.backend.tunnel_address:
        for n in nodes:         # the tunnel device's: the first block's first address
            if n.name in joined:
                ipam.address(n)
            else:
                ipam.used.add(int(n.block.network_address))
    pods = []
    pending = []
    for pod in topo.pods:
        if pod.name in kept:
            pods.append(kept[pod.name])
        elif pod.host_network:
            node = by_node[pod.node]
            pods.append(PodAddr(pod.name, pod.node, node.netns, node.ip, topo.node_subnet.prefixlen, None, True))
        else:
            try:
                ip = ipam.address(by_node[pod.node])
            except NoFreeAddress as e:
                if previous is None:
                    raise
                pending.append(PendingPod(pod.name, pod.node, len(pod.containers), str(e), pod.namespace))
                continue
            pods.append(PodAddr(pod.name, pod.node, naming.netns_name(topo.name, pod.name), ip,
                                prefixlen, design.attachment.veth_name(topo, pod.namespace, pod.name), False))
    if pool is not None:
        nodes = [replace(n, extra_blocks=tuple(pool.nodes[n.name].blocks[1:])) for n in nodes]
    _check_veth_names(topo.name, pods)

    pairs = same_node_pod_pairs(pods)
    on_link = len([p for p in pods if not p.host_network])
    # On one broadcast domain every pod is on-link with every pod, so all of them may ARP for
    # each other; on a node bridge, the pods of one node; routed pods only ARP for their gateway.
    arp_pairs = (on_link * (on_link - 1) if design.backend.shared_segment
                 else pairs if design.attachment.bridge else 0)
    static = dynamic_neighbours(len(pods), len(nodes) + len(topo.outside), arp_pairs) > SHARED_ARP_BUDGET
    first_outside = NODE_IP_OFFSET + len(nodes)
    # A running lab's outside hosts keep their addresses (they cannot change in place: lab.change).
    outside = previous.outside if previous is not None else tuple(
        HostAddr(h.name, naming.netns_name(topo.name, h.name), hosts[first_outside + i])
        for i, h in enumerate(topo.outside))
    return AddressPlan(
        lab=topo.name, underlay_netns=naming.netns_name(topo.name, "underlay"),
        router_ip=hosts[1], underlay_prefixlen=hosts.prefixlen,
        nodes=tuple(nodes), pods=tuple(pods), outside=outside,
        capacity=capacity(topo.pod_cidr, topo.node_mask),
        pod_mtu=design.pod_mtu(topo.mtu),
        # A running lab keeps how it writes neighbours: switching would rewrite every namespace.
        static_neighbours=static if previous is None else previous.static_neighbours,
        static_pod_pairs=(static and design.attachment.bridge and pairs <= STATIC_PAIRS_LIMIT) if previous is None
        else previous.static_pod_pairs,
        last=tuple(sorted(ipam.last.items())), last_node=last_node, pending=tuple(pending))


def _node(topo: Topology, name: str, index: int, ip: IPv4Address, block: IPv4Network) -> NodeAddr:
    return NodeAddr(name=name, index=index, netns=naming.netns_name(topo.name, name), ip=ip, block=block,
                    gateway=designs.of(topo).attachment.gateway(block), vtep_mac=vtep_mac(topo.name, name))


def _running_nodes(topo: Topology, previous: AddressPlan, pool: calico_ipam.Pool | None
                   ) -> tuple[list[NodeAddr], set[str], tuple[IPv4Address, IPv4Network] | None]:
    """A running lab's nodes once its node list changed: those that stay keep everything; those that
    left give back their underlay address and blocks (Kubernetes' node IPAM releases a deleted node's
    podCIDR; Calico's controllers release its block affinities); a joining node gets the next free
    address and block after the ones handed out last, wrapping round, as cidrset.AllocateNext does
    (Calico IPAM: a block as it picks one, lab.calico_ipam). Also which nodes joined, and what was
    handed out last."""
    had = {n.name: n for n in previous.nodes}
    stay = [n.name for n in topo.nodes if n.name in had]
    if pool is not None:
        pool.keep({name: list(had[name].blocks) for name in stay})
    last_ip, last_block = previous.last_node or (max((n.ip for n in previous.nodes), default=topo.node_subnet[1]),
                                                 max((n.block for n in previous.nodes), default=None))
    ips = {int(had[name].ip) for name in stay} | {int(h.ip) for h in previous.outside} | {int(previous.router_ip)}
    blocks = {int(had[name].block.network_address) for name in stay}
    index = max((n.index for n in previous.nodes), default=-1) + 1
    nodes, joined = [], set()
    for node in topo.nodes:
        if node.name in had:
            nodes.append(had[node.name])
            continue
        last_ip = _next_free(int(topo.node_subnet[NODE_IP_OFFSET]), int(topo.node_subnet.broadcast_address), ips,
                             int(last_ip), f"the node subnet {topo.node_subnet} has no free address left for node "
                                           f"{node.name}")
        if pool is not None:
            block = pool.take_block(node.name)
        else:
            size = 2 ** (32 - topo.node_mask)
            start = int(topo.pod_cidr.network_address)
            after = int(last_block.network_address) if last_block is not None else start - size
            found = _next_free(0, topo.pod_cidr.num_addresses // size, {(b - start) // size for b in blocks},
                               (after - start) // size, f"the pod CIDR {topo.pod_cidr} has no free /{topo.node_mask} "
                                                        f"block left for node {node.name}")
            block = last_block = IPv4Network((start + found * size, topo.node_mask))
        blocks.add(int(block.network_address))
        nodes.append(_node(topo, node.name, index, IPv4Address(last_ip), block))
        joined.add(node.name)
        index += 1
    last_node = (IPv4Address(last_ip), last_block) if last_block is not None else previous.last_node
    return nodes, joined, last_node


def _next_free(first: int, stop: int, used: set[int], after: int, full: str) -> int:
    """The first of first .. stop-1 not in `used` (and then taken into it) after `after`, wrapping round."""
    count = stop - first
    for step in range(1, count + 1):
        candidate = first + (after - first + step) % count
        if candidate not in used:
            used.add(candidate)
            return candidate
    raise PodlabError(full)


def without_pending(topo: Topology, addrs: AddressPlan) -> Topology:
    """The topology of the pods that have an address: what is planned and made."""
    if not addrs.pending:
        return topo
    waiting = {p.name for p in addrs.pending}
    return replace(topo, pods=tuple(p for p in topo.pods if p.name not in waiting))


class NoFreeAddress(PodlabError):
    """A node's IPAM has no address left for a pod."""


def _check_veth_names(lab: str, pods: list[PodAddr]) -> None:
    """Host veth names are 8 hex characters of a hash, like the CNI plugins': two pods of one node
    could draw the same one, which the kernel would refuse halfway through a build."""
    seen: dict[tuple[str, str], str] = {}
    for pod in pods:
        if pod.veth is None:
            continue
        other = seen.setdefault((pod.node, pod.veth), pod.name)
        if other != pod.name:
            raise PodlabError(f"lab {lab}: pods {other} and {pod.name} on node {pod.node} would both get the host "
                              f"veth {pod.veth} (8 hex characters of sha256('<lab>/<pod>')); rename one of them "
                              "or the lab. Nothing was created.")


class Ipam:
    """Hands out pod addresses node by node, as the design's IPAM does: host-local over the node's
    block (from .2; .1 is the gateway, the last is broadcast), Calico IPAM over the node's blocks
    (every address; another block when they are full). Each node continues after the address it
    handed out last, skipping those in use, wrapping round."""

    def __init__(self, pool: calico_ipam.Pool | None, last: dict[str, IPv4Address], kept: dict[str, PodAddr]):
        self.pool, self.last = pool, last
        # Addresses as integers: a thousand pods must not make a thousand lists of a block's addresses.
        self.used: set[int] = {int(p.ip) for p in kept.values() if not p.host_network}

    def _ranges(self, node: NodeAddr) -> list[range]:
        """The node's candidate addresses, in order, as ranges of integers."""
        if self.pool is None:
            base = int(node.block.network_address)
            return [range(base + 2, base + node.block.num_addresses - 1)]
        return [range(int(b.network_address), int(b.network_address) + b.num_addresses)
                for b in self.pool.nodes[node.name].blocks]

    def _in_order(self, node: NodeAddr) -> Iterator[int]:
        """The candidates from the one after the node's last, wrapping round."""
        ranges = self._ranges(node)
        after = int(self.last[node.name]) if node.name in self.last else None
        at = next((i for i, r in enumerate(ranges) if after in r), None) if after is not None else None
        if at is None:
            for r in ranges:
                yield from r
            return
        yield from range(after + 1, ranges[at].stop)
        for r in ranges[at + 1:] + ranges[:at]:
            yield from r
        yield from range(ranges[at].start, after + 1)

    def address(self, node: NodeAddr) -> IPv4Address:
        while True:
            for candidate in self._in_order(node):
                if candidate not in self.used:
                    self.used.add(candidate)
                    ip = IPv4Address(candidate)
                    self.last[node.name] = ip
                    return ip
            if self.pool is None:
                # host-local's own words (its range: the block less network and broadcast, the
                # gateway skipped), as the kubelet's FailedCreatePodSandBox event quotes them.
                first, last = node.block.network_address + 1, node.block.broadcast_address - 1
                raise NoFreeAddress(f"failed to allocate for range 0: no IP addresses available in range set: "
                                    f"{first}-{last} (node {node.name}'s pod CIDR {node.block} is full)")
            try:
                self.pool.take_block(node.name)   # Calico: the node's blocks are full, it takes another
            except PodlabError as e:
                raise NoFreeAddress(f"failed to request IPv4 addresses: {e}") from None


def record(a: AddressPlan) -> dict[str, Any]:
    """The allocation as the lab keeps it (JSON), read back by from_record."""
    return {"lab": a.lab, "underlay_netns": a.underlay_netns, "router_ip": str(a.router_ip),
            "underlay_prefixlen": a.underlay_prefixlen, "pod_mtu": a.pod_mtu,
            "static_neighbours": a.static_neighbours, "static_pod_pairs": a.static_pod_pairs,
            "capacity": [a.capacity.pod_addresses, a.capacity.block_addresses, a.capacity.max_nodes,
                         a.capacity.max_pods_per_node],
            "nodes": [[n.name, n.index, n.netns, str(n.ip), str(n.block), str(n.gateway), n.vtep_mac,
                       [str(b) for b in n.extra_blocks]] for n in a.nodes],
            "last": [[node, str(ip)] for node, ip in a.last],
            "last_node": [str(a.last_node[0]), str(a.last_node[1])] if a.last_node else None,
            "pods": [[p.name, p.node, p.netns, str(p.ip), p.prefixlen, p.veth, p.host_network] for p in a.pods],
            "outside": [[h.name, h.netns, str(h.ip)] for h in a.outside],
            "pending": [[p.name, p.node, p.containers, p.reason, p.namespace] for p in a.pending]}


def _address(text: str) -> IPv4Address:
    """IPv4Address(text) at a third of its cost (a record holds a thousand pods' addresses): read by
    the C library, and only if it is the dotted quad the C library writes back, as IPv4Address asks."""
    try:
        packed = socket.inet_aton(text)
    except (OSError, TypeError):
        raise ValueError(f"not an IPv4 address: {text!r}") from None
    if socket.inet_ntoa(packed) != text:
        raise ValueError(f"not an IPv4 address: {text!r}")
    return IPv4Address(packed)


def from_record(r: dict[str, Any]) -> AddressPlan:
    """A recorded allocation; ValueError/KeyError/TypeError if the record is not one."""
    return AddressPlan(
        lab=r["lab"], underlay_netns=r["underlay_netns"], router_ip=IPv4Address(r["router_ip"]),
        underlay_prefixlen=int(r["underlay_prefixlen"]),
        nodes=tuple(NodeAddr(name, int(index), netns, IPv4Address(ip), IPv4Network(block), IPv4Address(gw), mac,
                             tuple(IPv4Network(b) for b in extra))
                    for name, index, netns, ip, block, gw, mac, extra in r["nodes"]),
        pods=tuple(PodAddr(name, node, netns, _address(ip), int(prefixlen), veth, bool(host))
                   for name, node, netns, ip, prefixlen, veth, host in r["pods"]),
        outside=tuple(HostAddr(name, netns, IPv4Address(ip)) for name, netns, ip in r["outside"]),
        capacity=Capacity(*(int(x) for x in r["capacity"])), pod_mtu=int(r["pod_mtu"]),
        static_neighbours=bool(r["static_neighbours"]), static_pod_pairs=bool(r["static_pod_pairs"]),
        last=tuple((node, IPv4Address(ip)) for node, ip in r.get("last", [])),
        last_node=(IPv4Address(r["last_node"][0]), IPv4Network(r["last_node"][1])) if r.get("last_node") else None,
        pending=tuple(PendingPod(name, node, int(containers), reason, *namespace)
                      for name, node, containers, reason, *namespace in r.get("pending", [])))
