"""The vpc backend: the cloud "VPC route" model (seed 000), as GKE's routes-based clusters and
Alibaba's VPC routes build it.

Nodes only have `default via` the VPC router, which holds one route per node block via that
node; outside hosts in the VPC (seed 000's ECS) reach pods directly.
"""
from __future__ import annotations

from lab.addressing import STATIC_PAIRS_LIMIT, AddressPlan, interface, stable_mac
from lab.designs import wiring
from lab.designs.base import Attachment, Backend
from lab.model import Topology
from lab.ops import AddAddress, AddNeighbour, AddRoute, Op


class VpcBackend(Backend):
    def ops(self, topo: Topology, addrs: AddressPlan, attachment: Attachment) -> list[Op]:
        ops: list[Op] = []
        for node in addrs.nodes:
            ops += wiring.routed_node(topo, addrs, node)
            ops.append(AddRoute(node.netns, wiring.DEFAULT, via=addrs.router_ip))
        router = addrs.underlay_netns
        ops += [wiring.forwarding(router),
                AddAddress(router, wiring.UNDERLAY_BRIDGE, interface(addrs.router_ip, addrs.underlay_prefixlen))]
        return ops + [AddRoute(router, node.block, via=node.ip) for node in addrs.nodes]

    def static_neighbours(self, topo: Topology, addrs: AddressPlan) -> list[Op]:
        lab = addrs.lab
        router_mac = stable_mac(lab, "underlay", wiring.UNDERLAY_BRIDGE)
        machines = (*addrs.nodes, *addrs.outside)
        ops: list[Op] = []
        for machine in machines:
            ops += [AddNeighbour(machine.netns, "eth0", addrs.router_ip, router_mac),
                    AddNeighbour(addrs.underlay_netns, wiring.UNDERLAY_BRIDGE, machine.ip,
                                 stable_mac(lab, machine.name, "eth0"))]
        # One VPC subnet: traffic goes out via the router, but a reply to another machine of the
        # subnet (a pod answering a node or the outside host) leaves its node straight for it.
        if len(machines) * (len(machines) - 1) <= STATIC_PAIRS_LIMIT:
            macs = {m.name: stable_mac(lab, m.name, "eth0") for m in machines}
            for m in machines:
                ops += [AddNeighbour(m.netns, "eth0", peer.ip, macs[peer.name]) for peer in machines if peer is not m]
        return ops


VPC = VpcBackend(
    name="vpc", mirrors="the cloud VPC route table (GKE routes-based, Alibaba Cloud VPC routes)",
    summary="nodes default via the VPC router, which holds one route per node block",
    router=True, outside_reaches_pods=True, node_default_route=True)
