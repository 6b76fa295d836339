"""l3: every node routes. Two routing styles, as the reference describes them:

- host: flannel's host-gw backend. Every node holds `<remote block> via <remote node IP> dev eth0`.
- gateway: the cloud "VPC route" model (seed 000). Nodes only have `default via` the VPC router,
  which holds one route per node block via that node; outside hosts in the VPC reach pods too.
"""
from __future__ import annotations

from lab.addressing import AddressPlan, interface
from lab.model import Topology
from lab.modes import common, register
from lab.ops import AddAddress, AddRoute, Op


@register("l3")
def plan(topo: Topology, addrs: AddressPlan) -> list[Op]:
    ops = common.base(topo, addrs)
    gateway = topo.routing == "gateway"
    for node in addrs.nodes:
        ops.append(common.forwarding(node.netns))
        ops += common.node_uplink_address(topo, addrs, node)
        if gateway:
            ops.append(AddRoute(node.netns, common.DEFAULT, via=addrs.router_ip))
        else:
            ops += [AddRoute(node.netns, peer.block, via=peer.ip, dev="eth0")
                    for peer in addrs.nodes if peer is not node]
    if gateway:
        router = addrs.underlay_netns
        ops += [common.forwarding(router),
                AddAddress(router, common.UNDERLAY_BRIDGE, interface(addrs.router_ip, addrs.underlay_prefixlen))]
        ops += [AddRoute(router, node.block, via=node.ip) for node in addrs.nodes]
    return ops + common.outside_hosts(topo, addrs, default_via_router=gateway)
