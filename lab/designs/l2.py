"""The l2 backend: pods and nodes share one broadcast domain.

Each node bridges its uplink into cni0 (like a host whose NIC is enslaved to its bridge), and
pods are addressed with the whole pod CIDR's mask, so a pod reaches a pod on another node by
switching alone: ARP across the underlay switch, no routing hop, TTL unchanged.
"""
from __future__ import annotations

from lab.addressing import AddressPlan
from lab.designs import wiring
from lab.designs.base import Attachment, Backend
from lab.model import Topology
from lab.ops import Op, SetMaster


class L2Backend(Backend):
    def ops(self, topo: Topology, addrs: AddressPlan, attachment: Attachment) -> list[Op]:
        ops: list[Op] = []
        for node in addrs.nodes:
            ops.append(wiring.forwarding(node.netns))
            ops.append(SetMaster(node.netns, "eth0", topo.bridge))
            # The node's own underlay address moves to the bridge, as on a bridged host.
            ops += wiring.node_uplink_address(topo, addrs, node, dev=topo.bridge)
        return ops


L2 = L2Backend(
    name="l2", mirrors="a flat network: the node's NIC enslaved to its bridge",
    summary="one broadcast domain: each node's uplink is a port of its bridge, pods switch across nodes",
    shared_segment=True, needs_bridge=True,
    # A node's address sits on cni0 with its uplink as a port: a NodePort's answer would be
    # switched past the node's conntrack, so the Service's DNAT could not be undone.
    node_port=False)
