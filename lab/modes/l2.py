"""l2: pods and nodes share one broadcast domain.

Each node bridges its uplink into cni0 (like a host whose NIC is enslaved to its bridge),
and pods are addressed with the whole pod CIDR's mask, so a pod reaches a pod on another
node by switching alone: ARP across the underlay switch, no routing hop, TTL unchanged.
"""
from __future__ import annotations

from lab.addressing import AddressPlan
from lab.model import Topology
from lab.modes import common, register
from lab.ops import Op, SetMaster


@register("l2")
def plan(topo: Topology, addrs: AddressPlan) -> list[Op]:
    ops = common.base(topo, addrs)
    for node in addrs.nodes:
        ops.append(common.forwarding(node.netns))
        ops.append(SetMaster(node.netns, "eth0", topo.bridge))
        # The node's own underlay address moves to the bridge, as on a bridged host.
        ops += common.node_uplink_address(topo, addrs, node, dev=topo.bridge)
    return ops + common.outside_hosts(topo, addrs, default_via_router=False)

