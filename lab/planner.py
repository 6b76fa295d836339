"""Topology -> (AddressPlan, ops): allocation, the design's ops, the add-ons' ops, the workload
agent. Pure: no root, no kernel, same input same output.

A plan's ops are made when first asked for: a 1000-pod lab has some 40,000 (~0.2 s), and most
readers of a lab need only its addresses. A change of a running lab asks for a part of them
only (`part`): the ops of the pods it changes, and those of the whole lab that follow from its
pods (Services, DNS records, the agent's spec); the nodes' own and the wiring's stay as they were
as long as the machines do (`same_machines`).
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace

from lab import addons, allocation, designs
from lab.addressing import AddressPlan
from lab.model import Topology
from lab.ops import Op, ordered
from lab.workloads import plan as workloads_plan


@dataclass(frozen=True)
class Plan:
    topology: Topology
    addresses: AddressPlan
    # The ops, in execution order: made by `ops` when first asked for (or handed over made).
    made: tuple[Op, ...] | None = field(default=None, compare=False, repr=False)
    # What the ops are planned over, when it is not `addresses`: a cni lab's ops follow podlab's
    # prediction, its addresses are the ones the plugins gave (lab.api.Lab.plan).
    planned_over: AddressPlan | None = None

    @property
    def allocation(self) -> AddressPlan:
        """The addresses the ops are planned over."""
        return self.planned_over if self.planned_over is not None else self.addresses

    @property
    def ops(self) -> tuple[Op, ...]:
        if self.made is None:
            object.__setattr__(self, "made", _ops(self.topology, self.allocation))
        assert self.made is not None
        return self.made


def build(topo: Topology, addrs: AddressPlan | None = None) -> Plan:
    """The plan of a topology; over `addrs` if given (a lab's recorded allocation), else a new one."""
    return Plan(topo, addrs if addrs is not None else allocation.allocate(topo))


def part(plan: Plan, pods: Collection[str]) -> tuple[Op, ...]:
    """The ops of `pods` (each one's own, and those other pods hold for it), and those of the lab
    as a whole that follow from its pods, but none of the nodes' and the wiring's own: a
    subsequence of `plan.ops` (in its order), and all of it that two plans of the same machines
    (same_machines) can differ in, when only `pods` differ between them (lab.designs.base)."""
    return _ops(plan.topology, plan.allocation, set(pods))


def same_machines(a: Plan, b: Plan) -> bool:
    """Whether two plans have the same nodes, underlay, outside hosts and design, set up the same
    way: everything but their pods and Services, so that only `part` of their ops can differ."""
    return _machines(a) == _machines(b)


def _machines(plan: Plan) -> tuple[Topology, AddressPlan]:
    """What the ops that are no pod's follow from: the topology and allocation without the pods
    (and the Deployments and ReplicaSets they come from), the Services and what only allocation
    keeps (where each node's IPAM is, the Pending pods). Whatever else differs (a field added to
    either) makes two plans of other machines: compared whole, slower but never wrong."""
    return (replace(plan.topology, pods=(), services=(), deployments=(), replicasets=(), description=""),
            replace(plan.allocation, pods=(), last=(), pending=()))


def _ops(topo: Topology, addrs: AddressPlan, pods: Collection[str] | None = None) -> tuple[Op, ...]:
    design_ops = designs.plan(topo, addrs, pods)
    addon_ops = addons.ops(topo, addrs)
    # The agent before the add-ons' daemons: it starts the ones that are pods' containers.
    agent_ops = workloads_plan.ops(topo, addrs, addon_ops)
    return tuple(ordered(design_ops + agent_ops + addon_ops))
