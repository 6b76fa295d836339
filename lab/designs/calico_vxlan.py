"""The calico-vxlan backend: Calico's VXLAN mode, as Felix programs it (BIRD does not run).

vxlan.calico (VNI 4096, UDP 4789, no learning, local = the node's underlay address, MTU underlay
- 50) holds the node's VTEP address as a /32: the first address of its first block, which Calico
IPAM hands to the tunnel before any pod. Its MAC is 66: + the first 5 bytes of sha1(node name).
Per remote node: a permanent neighbour for its VTEP, an FDB entry to its underlay address, and
`<block> via <VTEP> dev vxlan.calico onlink` for each of its blocks; for each own block Felix adds
`blackhole <block> proto 80`. (felix dataplane/linux/vxlan_mgr.go, route_mgr.go, calc/vxlan_resolver.go;
dataplanedefs DefaultRouteProto = 80; ../shared/reference/calico.md A5.)
"""
from __future__ import annotations

import hashlib
from ipaddress import IPv4Address

from lab.addressing import AddressPlan, NodeAddr, interface
from lab.designs import wiring
from lab.designs.base import Attachment, Backend
from lab.model import Topology
from lab.ops import AddAddress, AddFdb, AddNeighbour, AddRoute, CreateVxlan, LinkUp, Op

DEVICE = "vxlan.calico"
VNI = 4096
PORT = 4789
OVERHEAD = 50
FELIX_PROTO = 80


def vtep_mac(node: str) -> str:
    return "66:" + ":".join(f"{b:02x}" for b in hashlib.sha1(node.encode()).digest()[:5])


def vtep_ip(node: NodeAddr) -> IPv4Address:
    return node.block.network_address


class CalicoVxlanBackend(Backend):
    def ops(self, topo: Topology, addrs: AddressPlan, attachment: Attachment) -> list[Op]:
        ops: list[Op] = []
        for node in addrs.nodes:
            ops += wiring.routed_node(topo, addrs, node)
            ops += [CreateVxlan(node.netns, DEVICE, VNI, node.ip, "eth0", PORT, addrs.pod_mtu, vtep_mac(node.name)),
                    LinkUp(node.netns, DEVICE),
                    AddAddress(node.netns, DEVICE, interface(vtep_ip(node), 32))]
            ops += [AddRoute(node.netns, block, blackhole=True, proto=FELIX_PROTO) for block in node.blocks]
            for peer in addrs.nodes:
                if peer is node:
                    continue
                mac = vtep_mac(peer.name)
                ops += [AddNeighbour(node.netns, DEVICE, vtep_ip(peer), mac),
                        AddFdb(node.netns, DEVICE, mac, peer.ip)]
                ops += [AddRoute(node.netns, block, via=vtep_ip(peer), dev=DEVICE, onlink=True) for block in peer.blocks]
        return ops

    def static_neighbours(self, topo: Topology, addrs: AddressPlan) -> list[Op]:
        return wiring.node_pairs_neighbours(addrs)


CALICO_VXLAN = CalicoVxlanBackend(
    name="calico-vxlan", mirrors="Calico's VXLAN mode (vxlan.calico, VNI 4096, UDP 4789; Felix's routes)",
    summary="an overlay: per remote node one neighbour, one FDB entry and an onlink route per block on vxlan.calico",
    mtu_overhead=OVERHEAD, tunnel_address=True)
