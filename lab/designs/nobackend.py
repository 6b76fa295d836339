"""The none backend: nodes on the underlay with their addresses and forwarding, and no routes to
each other's blocks. For a single node, or a plugin of your own that connects the nodes itself."""
from __future__ import annotations

from lab.addressing import AddressPlan
from lab.designs import wiring
from lab.designs.base import Attachment, Backend
from lab.model import Topology
from lab.ops import Op


class NoBackend(Backend):
    def ops(self, topo: Topology, addrs: AddressPlan, attachment: Attachment) -> list[Op]:
        ops: list[Op] = []
        for node in addrs.nodes:
            ops += wiring.routed_node(topo, addrs, node)
        return ops


NONE = NoBackend(
    name="none", mirrors="no cross-node part (a single node, or a plugin that connects nodes itself)",
    summary="nodes share the underlay; no routes to other nodes' blocks")
