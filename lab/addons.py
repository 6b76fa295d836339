"""Add-ons: what a lab runs beside its design — Services and cluster DNS today; NetworkPolicy,
BGP daemons and the API server next.

An add-on plugs in through one protocol: given the topology and the address plan, it returns
the ops it adds — kernel objects (nftables tables, sysctls, routes), files
(WriteFile) and daemons (StartDaemon, each with its readiness check). What a host must have for
them (programs, kernel switches) follows from the ops (lab.engine.features), and `up` waits for
every daemon's readiness; neither the planner nor the facade names an add-on.
"""
from __future__ import annotations

from typing import Protocol

from lab import services
from lab.addressing import AddressPlan
from lab.model import Topology
from lab.ops import Op


class AddOn(Protocol):
    name: str

    def ops(self, topo: Topology, addrs: AddressPlan) -> list[Op]:
        """The ops this add-on adds to the design's ([] when the topology does not use it). Pure, and
        made from the topology and the addresses alone, the whole lab's: a change of a running lab
        plans the design's ops of a few pods only (lab.planner.part), but every add-on's."""
        ...


ALL: tuple[AddOn, ...] = (services.ADDON,)


def ops(topo: Topology, addrs: AddressPlan) -> list[Op]:
    return [op for addon in ALL for op in addon.ops(topo, addrs)]
