"""Topology -> (AddressPlan, ops). Pure: no root, no kernel, same input same output."""
from __future__ import annotations

from dataclasses import dataclass

from lab import addressing, modes, services
from lab.addressing import AddressPlan
from lab.model import Topology
from lab.ops import Op, ordered


@dataclass(frozen=True)
class Plan:
    topology: Topology
    addresses: AddressPlan
    ops: tuple[Op, ...]     # in execution order


def build(topo: Topology) -> Plan:
    addrs = addressing.plan(topo)
    ops = modes.planner(topo.mode)(topo, addrs)
    ops += services.ops(topo, addrs, ops)
    return Plan(topo, addrs, tuple(ordered(ops)))
