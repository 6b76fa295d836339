"""The vxlan backend: flannel's VXLAN backend, object for object.

flannel.1 (VNI 1, UDP 8472, nolearning, local = the node's underlay address, MTU underlay - 50)
holds the block's .0/32. For each remote node exactly one permanent neighbour, one FDB entry
and one onlink route, never per-pod entries: the overlay is routed per node block.
"""
from __future__ import annotations

from lab.addressing import AddressPlan, interface
from lab.designs import wiring
from lab.designs.base import Attachment, Backend
from lab.model import Topology
from lab.ops import AddAddress, AddFdb, AddNeighbour, AddRoute, CreateVxlan, LinkUp, Op

DEVICE = "flannel.1"
VNI = 1
PORT = 8472
OVERHEAD = 50      # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8, flannel's MTU - 50


class VxlanBackend(Backend):
    def ops(self, topo: Topology, addrs: AddressPlan, attachment: Attachment) -> list[Op]:
        ops: list[Op] = []
        for node in addrs.nodes:
            ops += wiring.routed_node(topo, addrs, node)
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
        return ops

    def static_neighbours(self, topo: Topology, addrs: AddressPlan) -> list[Op]:
        return wiring.node_pairs_neighbours(addrs)


VXLAN = VxlanBackend(
    name="vxlan", mirrors="flannel's VXLAN backend (flannel.1, VNI 1, UDP 8472)",
    summary="an overlay: per remote node one neighbour, one FDB entry and one onlink route on flannel.1",
    mtu_overhead=OVERHEAD)
