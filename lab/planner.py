"""Topology -> (AddressPlan, ops): allocation, the design's ops, the add-ons' ops, the workload
agent. Pure: no root, no kernel, same input same output."""
from __future__ import annotations

from dataclasses import dataclass

from lab import addons, allocation, designs
from lab.addressing import AddressPlan
from lab.model import Topology
from lab.ops import Op, ordered
from lab.workloads import plan as workloads_plan


@dataclass(frozen=True)
class Plan:
    topology: Topology
    addresses: AddressPlan
    ops: tuple[Op, ...]     # in execution order


def build(topo: Topology, addrs: AddressPlan | None = None) -> Plan:
    """The plan of a topology; over `addrs` if given (a lab's recorded allocation), else a new one."""
    addrs = addrs if addrs is not None else allocation.allocate(topo)
    design_ops = designs.plan(topo, addrs)
    addon_ops = addons.ops(topo, addrs, design_ops)
    # The agent before the add-ons' daemons: it starts the ones that are pods' containers.
    agent_ops = workloads_plan.ops(topo, addrs, addon_ops)
    return Plan(topo, addrs, tuple(ordered(design_ops + agent_ops + addon_ops)))
