"""vxlan: flannel's VXLAN backend, object for object.

flannel.1 (VNI 1, UDP 8472, nolearning, local = the node's underlay address, MTU underlay - 50)
holds the block's .0/32. For each remote node exactly one permanent neighbour, one FDB entry
and one onlink route, never per-pod entries: the overlay is routed per node block.
"""
from __future__ import annotations

from lab.addressing import AddressPlan, interface
from lab.model import Topology
from lab.modes import common, register
from lab.ops import AddAddress, AddFdb, AddNeighbour, AddRoute, CreateVxlan, LinkUp, Op

DEVICE = "flannel.1"
VNI = 1
PORT = 8472


@register("vxlan")
def plan(topo: Topology, addrs: AddressPlan) -> list[Op]:
    ops = common.base(topo, addrs)
    for node in addrs.nodes:
        ops.append(common.forwarding(node.netns))
        ops += common.node_uplink_address(topo, addrs, node)
        ops += [CreateVxlan(node.netns, DEVICE, VNI, node.ip, "eth0", PORT, addrs.pod_mtu, node.vtep_mac),
                LinkUp(node.netns, DEVICE),
                AddAddress(node.netns, DEVICE, interface(node.block.network_address, 32))]
        for peer in addrs.nodes:
            if peer is node:
                continue
            vtep = peer.block.network_address
            ops += [AddNeighbour(node.netns, DEVICE, vtep, peer.vtep_mac),
                    AddFdb(node.netns, DEVICE, peer.vtep_mac, peer.ip),
                    AddRoute(node.netns, peer.block, via=vtep, dev=DEVICE, onlink=True)]
    return ops + common.outside_hosts(topo, addrs, default_via_router=False)
