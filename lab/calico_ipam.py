"""Calico IPAM: an IP pool cut into blocks (/26 by default); a node takes a block, and another when
the ones it has are full; addresses inside a block are handed out in order, from its first.

Which block a node tries first follows Calico's randomBlockGenerator: a start derived from the FNV-1
(32-bit) hash of the node's name, then onward through the pool, wrapping. Calico then draws the start
from Go's math/rand seeded with that hash, so a real cluster's first block differs; the pattern (blocks
scattered over the pool, one node's blocks next to each other) is the same. Every node takes its first
block when the lab comes up (as calico-node does for a tunnel address); the tunnel device, where the
backend has one (vxlan.calico), takes that block's first address.
(libcalico-go lib/ipam/ipam_block_reader_writer.go: randomBlockGenerator, determineSeed.)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network

from lab.errors import PodlabError


def fnv1_32(data: bytes) -> int:
    """Go's hash/fnv New32: FNV-1, 32 bits."""
    h = 0x811C9DC5
    for byte in data:
        h = (h * 0x01000193) & 0xFFFFFFFF
        h ^= byte
    return h


@dataclass
class NodeBlocks:
    """A node's blocks in the order it took them (lab.allocation.Ipam hands out their addresses)."""
    blocks: list[IPv4Network] = field(default_factory=list)


class Pool:
    def __init__(self, cidr: IPv4Network, block_size: int):
        self.cidr, self.block_size = cidr, block_size
        self.count = 2 ** (block_size - cidr.prefixlen)
        self.per_block = 2 ** (32 - block_size)
        self.taken: set[int] = set()
        self.nodes: dict[str, NodeBlocks] = {}

    def _block(self, index: int) -> IPv4Network:
        return IPv4Network((int(self.cidr.network_address) + index * self.per_block, self.block_size))

    def take_block(self, node: str) -> IPv4Network:
        start = fnv1_32(node.encode()) % self.count
        for step in range(self.count):
            index = (start + step) % self.count
            if index not in self.taken:
                self.taken.add(index)
                block = self._block(index)
                self.nodes.setdefault(node, NodeBlocks()).blocks.append(block)
                return block
        raise PodlabError(f"the IP pool {self.cidr} has no free /{self.block_size} block left for node {node}")

    def keep(self, blocks: dict[str, list[IPv4Network]]) -> None:
        """A running lab's blocks, as its nodes took them."""
        for node, mine in blocks.items():
            self.nodes[node] = NodeBlocks(list(mine))
            self.taken |= {(int(b.network_address) - int(self.cidr.network_address)) // self.per_block for b in mine}
