"""Topology -> (AddressPlan, ops): allocation, the design's ops, the add-ons' ops. Pure: no root, no kernel, same input same output."""
from __future__ import annotations

from dataclasses import dataclass

from lab import allocation, designs, services
from lab.addressing import AddressPlan
from lab.model import Topology
from lab.ops import Op, ordered


@dataclass(frozen=True)
class Plan:
    topology: Topology
    addresses: AddressPlan
    ops: tuple[Op, ...]     # in execution order


def build(topo: Topology) -> Plan:
    addrs = allocation.allocate(topo)
    ops = designs.plan(topo, addrs)
    ops += services.ops(topo, addrs, ops)
    return Plan(topo, addrs, tuple(ordered(ops)))
