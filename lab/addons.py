"""Add-ons: what a lab runs beside its design — Services and cluster DNS today; NetworkPolicy,
BGP daemons and the API server next.

An add-on plugs in through one protocol: given the topology, the address plan and the design's
ops, it returns the ops it adds — kernel objects (nftables tables, sysctls, routes), files
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

    def ops(self, topo: Topology, addrs: AddressPlan, design_ops: list[Op]) -> list[Op]:
        """The ops this add-on adds to the design's ([] when the topology does not use it). Pure."""
        ...


ALL: tuple[AddOn, ...] = (services.ADDON,)


def ops(topo: Topology, addrs: AddressPlan, design_ops: list[Op]) -> list[Op]:
    out: list[Op] = []
    for addon in ALL:
        out += addon.ops(topo, addrs, design_ops + out)
    return out
