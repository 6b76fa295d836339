"""A running lab changed: what a new desired state means for it, as kernel work.

The new plan is planned over the lab's allocation kept as state (lab.allocation: pods keep their
addresses, new pods get the next free ones), then compared with the plan the lab was built from:
the ops only the new plan has are made, the namespaces of pods that went are removed (with them
their veths, and every route and neighbour entry on those), and the workload agent reloads its
spec. Pure: no root. What cannot change in place yet (the design, the network, the node list,
Services, outside hosts) is refused with the reason, and nothing is done.
"""
from __future__ import annotations

from dataclasses import dataclass

from lab import allocation, planner
from lab.addressing import AddressPlan
from lab.errors import PodlabError
from lab.model import Topology
from lab.cni import changes as cni_changes
from lab.ops import (AddAddress, AddNeighbour, AddRoute, ApplyNft, CniNode, CreateVeth, DelNeighbour, LinkUp, Op, SetHairpin,
                     SetLinkConf, StartDaemon, WriteFile, ordered)
from lab.planner import Plan


@dataclass(frozen=True)
class Change:
    plan: Plan                       # the lab as it will be
    added: tuple[str, ...]           # pods made
    removed: tuple[str, ...]         # pods gone
    remove_namespaces: tuple[str, ...]
    ops: tuple[Op, ...]              # to make, in execution order
    restarted: tuple[str, ...] = ()  # pods whose daemon's configuration changed (the DNS pod's dnsmasq)
    gone_links: tuple[tuple[str, str], ...] = ()   # (node namespace, host veth) of the pods that went

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.ops)


def plan_change(current: Plan, desired: Topology) -> Change:
    _same_cluster(current.topology, desired)
    addrs: AddressPlan = allocation.allocate(desired, previous=current.addresses)
    new = planner.build(desired, addrs)
    old_pods = {p.name: p for p in current.addresses.pods}
    new_pods = {p.name: p for p in addrs.pods}
    removed = [n for n in old_pods if n not in new_pods or new_pods[n] != old_pods[n]]
    added = [n for n in new_pods if n not in old_pods or new_pods[n] != old_pods[n]]
    again = sorted(cni_changes.reconfigured_pods(current.ops, new.ops) - set(removed))   # their node's list changed
    removed, added = removed + again, added + [n for n in again if n not in added]
    gone_ns = {old_pods[n].netns for n in removed if not old_pods[n].host_network}
    gone_veths = {(current.addresses.node(old_pods[n].node).netns, old_pods[n].veth) for n in removed
                  if old_pods[n].veth}
    before, after = set(current.ops), set(new.ops)
    _daemons_unchanged(current, new)
    undo: list[Op] = []
    for op in current.ops:
        # Files are written again whole, nftables tables loaded again whole in place of the old ones.
        replaced = isinstance(op, (WriteFile, ApplyNft, CniNode))     # a node's list: rewritten whole
        if op in after or replaced or _goes_with(op, gone_ns, gone_veths):
            continue
        if isinstance(op, AddNeighbour):    # a static entry another namespace held for a gone pod
            undo.append(DelNeighbour(op.ns, op.dev, op.address))
        else:
            raise PodlabError(f"this change would have to undo '{_describe(op)}', which podlab cannot do in a "
                              "running lab yet; 'podlab down' and 'podlab up' the new design instead")
    # A pod replaced under the same name gets the same namespace name: its ops equal the old ones,
    # but the old objects go with the old namespace, so they are made again.
    # In execution order; the deletions first among the neighbour entries (a pod replaced keeps its name).
    if gone_ns or gone_veths:
        # Pods made again under their names come back with the same spec: the agent's file is written anew.
        made = [op for op in new.ops if op not in before or _goes_with(op, gone_ns, gone_veths)
                or (again and isinstance(op, WriteFile))]
    else:
        made = [op for op in new.ops if op not in before]
    ops = tuple(ordered(undo + made))
    return Change(new, tuple(added), tuple(removed), tuple(sorted(gone_ns)), ops, _restarted(new, ops),
                  tuple(sorted((ns, veth) for ns, veth in gone_veths if veth)))


def _restarted(new: Plan, ops: tuple[Op, ...]) -> tuple[str, ...]:
    """Pods running a daemon whose configuration this change rewrites: dnsmasq reads its records once,
    so the cluster DNS restarts (a moment without answers) to serve the pods that came and went."""
    written = {op.path for op in ops if isinstance(op, WriteFile)}
    return tuple(op.container.split("/", 1)[0] for op in new.ops if isinstance(op, StartDaemon)
                 and op.kind == "container" and op.container and written & set(op.config))


def _daemons_unchanged(current: Plan, new: Plan) -> None:
    """A daemon of the engine's (BIRD) reads its configuration once: one that would change (a Calico
    node taking another block) cannot be changed in place yet."""
    configs = {path for op in current.ops if isinstance(op, StartDaemon) and op.kind == "process" for path in op.config}
    old = {op.path: op.content for op in current.ops if isinstance(op, WriteFile) and op.path in configs}
    for op in new.ops:
        if isinstance(op, WriteFile) and op.path in old and old[op.path] != op.content:
            raise PodlabError(f"this change rewrites {op.what} (a node took another block), and podlab does not "
                              "reconfigure a running BIRD yet; 'podlab down' and 'podlab up' the new design instead")


def _same_cluster(old: Topology, new: Topology) -> None:
    changed = [what for what, a, b in (
        ("the design", old.design, new.design), ("the network", (old.pod_cidr, old.node_mask, old.node_subnet,
                                                                 old.service_cidr, old.mtu, old.bridge),
                                                  (new.pod_cidr, new.node_mask, new.node_subnet, new.service_cidr,
                                                   new.mtu, new.bridge)),
        ("the nodes", old.nodes, new.nodes), ("the outside hosts", old.outside, new.outside),
        ("Calico's settings", old.calico, new.calico)) if a != b]
    if old.cluster_services != new.cluster_services:
        changed.append("whether the lab has Services")
    if changed:
        raise PodlabError(f"this change touches {', '.join(changed)}: only pods can be added to or removed from a "
                          "running lab yet; 'podlab down' and 'podlab up' the new design instead")


def _goes_with(op: Op, gone_ns: set[str], gone_veths: set[tuple[str, str | None]]) -> bool:
    """Whether an op of the old plan is undone by removing the pods' namespaces: everything in them,
    and on the node everything on their veths (the kernel drops a link's addresses, routes and
    neighbour entries with it)."""
    ns = getattr(op, "ns", None)
    if ns in gone_ns or (isinstance(op, CreateVeth) and op.peer_ns in gone_ns):
        return True
    dev = op.name if isinstance(op, (LinkUp, SetHairpin)) else getattr(op, "dev", None)
    return isinstance(op, (LinkUp, SetHairpin, AddAddress, AddRoute, AddNeighbour, SetLinkConf)) and (ns, dev) in gone_veths


def _describe(op: Op) -> str:
    from lab import commands
    return commands.command(op).split("\n", 1)[0]
