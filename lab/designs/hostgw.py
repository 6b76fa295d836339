"""The host-gw backend: flannel's host-gw, and kindnetd's routes.

Nodes share one L2 segment; every node holds `<remote block> via <remote node IP> dev eth0`.
"""
from __future__ import annotations

from lab.addressing import AddressPlan
from lab.designs import wiring
from lab.designs.base import Attachment, Backend
from lab.model import Topology
from lab.ops import AddRoute, Op


class HostGwBackend(Backend):
    def ops(self, topo: Topology, addrs: AddressPlan, attachment: Attachment) -> list[Op]:
        ops: list[Op] = []
        for node in addrs.nodes:
            ops += wiring.routed_node(topo, addrs, node)
            ops += [AddRoute(node.netns, peer.block, via=peer.ip, dev="eth0")
                    for peer in addrs.nodes if peer is not node]
        return ops

    def static_neighbours(self, topo: Topology, addrs: AddressPlan) -> list[Op]:
        return wiring.node_pairs_neighbours(addrs)


HOST_GW = HostGwBackend(
    name="host-gw", mirrors="flannel's host-gw backend; kindnetd's routes to other nodes",
    summary="every node routes each remote block via that node's address (nodes on one L2 segment)")
