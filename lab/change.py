"""A running lab changed: what a new desired state means for it, as kernel work.

The new plan is planned over the lab's allocation kept as state (lab.allocation: pods keep their
addresses, new pods get the next free ones), then compared with the plan the lab was built from:
the ops only the new plan has are made, the namespaces of pods that went are removed (with them
their veths, and every route and neighbour entry on those), and the workload agent reloads its
spec. Nodes join and leave the same way: a joining node's namespace, uplink, bridge and its
routes, neighbours and FDB entries on the others are new ops; a leaving node's namespace goes
(with its pods, which placement put elsewhere) and what the other namespaces held for it is
deleted (routes, permanent neighbours, FDB entries). A daemon that stays and whose configuration
is rewritten (BIRD, when a peer comes or goes or its node takes a block) is reconfigured in place
(UpdateDaemon). Pure: no root. What cannot change in place yet (the design, the network,
the cluster DNS switched on or off, outside hosts) is refused with the reason, and nothing is done.
"""
from __future__ import annotations

from dataclasses import dataclass

from lab import allocation, planner
from lab.addressing import AddressPlan
from lab.errors import PodlabError
from lab.model import Topology
from lab.cni import changes as cni_changes
from lab.ops import (AddAddress, AddFdb, AddNeighbour, AddRoute, ApplyNft, CniNode, CreateNamespace, CreateVeth, DelFdb,
                     DelNeighbour, DelRoute, LinkUp, Op, SetHairpin, SetLinkConf, StartDaemon, UpdateDaemon, WriteFile,
                     ordered)
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
    nodes_added: tuple[str, ...] = ()
    nodes_removed: tuple[str, ...] = ()
    node_namespaces: tuple[str, ...] = ()   # the leaving nodes': whatever runs in them is stopped first

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.ops)


def plan_change(current: Plan, desired: Topology) -> Change:
    _same_cluster(current.topology, desired)
    addrs: AddressPlan = allocation.allocate(desired, previous=current.addresses)
    # Pods their node has no address for are Pending: planned, and made, once they get one.
    return diff(current, planner.build(allocation.without_pending(desired, addrs), addrs))


def diff(current: Plan, new: Plan) -> Change:
    """What turns a lab built from `current` into `new`: also how a change cut short is made again
    from the records of both (lab.converge), or undone (the other way round).

    Between plans of the same machines only the ops of the pods that changed (and those other pods
    hold for them), and the whole lab's that follow from its pods, can differ (lab.planner.part):
    those alone are planned and compared, the same change as full_diff's at a fraction of the cost
    (one pod into a 1000-pod lab: some 60 ops of each plan, not 40,000)."""
    if not planner.same_machines(current, new):
        return full_diff(current, new)
    pods = _changed_pods(current, new)
    return _diff(current, new, planner.part(current, pods), planner.part(new, pods))


def full_diff(current: Plan, new: Plan) -> Change:
    """diff, from every op of both plans."""
    return _diff(current, new, current.ops, new.ops)


def _changed_pods(current: Plan, new: Plan) -> set[str]:
    """The pods that come, go or change: their address, node or spec (what their ops are planned over)."""
    old_addr = {p.name: p for p in current.allocation.pods}
    new_addr = {p.name: p for p in new.allocation.pods}
    old_spec = {p.name: p for p in current.topology.pods}
    new_spec = {p.name: p for p in new.topology.pods}
    return {name for name in old_addr.keys() | new_addr.keys()
            if old_addr.get(name) != new_addr.get(name) or old_spec.get(name) != new_spec.get(name)}


def _diff(current: Plan, new: Plan, before_ops: tuple[Op, ...], after_ops: tuple[Op, ...]) -> Change:
    """diff, from these ops of the two plans: all of each, or the part of each they can differ in."""
    addrs = new.addresses
    old_pods = {p.name: p for p in current.addresses.pods}
    new_pods = {p.name: p for p in addrs.pods}
    removed = [n for n in old_pods if n not in new_pods or new_pods[n] != old_pods[n]]
    added = [n for n in new_pods if n not in old_pods or new_pods[n] != old_pods[n]]
    # A cni node whose list changed makes its pods again, under their names (kubelet would DEL and ADD).
    again = sorted(cni_changes.reconfigured_pods(before_ops, after_ops) - set(removed))
    removed, added = removed + again, added + [n for n in again if n not in added]
    old_nodes = {n.name: n for n in current.addresses.nodes}
    new_nodes = [n.name for n in addrs.nodes]
    nodes_removed = [n for n in old_nodes if n not in new_nodes]
    nodes_added = [n for n in new_nodes if n not in old_nodes]
    gone_nodes = {old_nodes[n].netns for n in nodes_removed}
    underlay = current.addresses.underlay_netns
    gone_ns = {old_pods[n].netns for n in removed if not old_pods[n].host_network} | gone_nodes
    # The veths that go with a removed namespace on its other side: a pod's on its node (unless the
    # node goes too), a leaving node's uplink port on the underlay switch.
    gone_veths = {(current.addresses.node(old_pods[n].node).netns, old_pods[n].veth) for n in removed
                  if old_pods[n].veth and old_pods[n].node not in nodes_removed}
    gone_veths |= {(underlay, n) for n in nodes_removed}
    # Set differences compare the hashes the sets hold: hashing 40,000 ops again for each
    # membership test (ipaddress hashes in Python) cost more than all the rest of a change.
    before, after = set(before_ops), set(after_ops)
    gone = {id(op) for op in before - after}
    fresh = {id(op) for op in after - before}
    old_daemons, new_daemons = _daemons(before_ops), _daemons(after_ops)
    kept_daemons = old_daemons.keys() & new_daemons.keys()
    undo: list[Op] = []
    for op in before_ops:
        if id(op) not in gone:
            continue
        # Files are written again whole, nftables tables loaded again whole in place of the old ones,
        # a cni node's list rewritten whole.
        if isinstance(op, (WriteFile, ApplyNft, CniNode)) or _goes_with(op, gone_ns, gone_veths):
            continue
        if isinstance(op, StartDaemon) and _daemon_key(op) in kept_daemons:
            continue            # still running: updated below
        if isinstance(op, StartDaemon) and op.kind == "container":
            continue            # the agent's, in a pod that stays: restarted if its files change (_restarted)
        if (undone := _undo(op)) is not None:   # what another namespace held for a gone pod or node
            undo.append(undone)
        else:
            raise PodlabError(f"this change would have to undo '{_describe(op)}', which podlab cannot do in a "
                              "running lab yet; 'podlab down' and 'podlab up' the new design instead")
    # A pod replaced under the same name gets the same namespace name: its ops equal the old ones,
    # but the old objects go with the old namespace, so they are made again.
    # In execution order; the deletions first among the neighbour entries (a pod replaced keeps its name).
    if gone_ns or gone_veths:
        # Pods made again under their names come back with the same spec: the agent's file is written anew.
        made = [op for op in after_ops if id(op) in fresh or _goes_with(op, gone_ns, gone_veths)
                or (again and isinstance(op, WriteFile))]
    else:
        made = [op for op in after_ops if id(op) in fresh]
    made = [op for op in made if not (isinstance(op, StartDaemon) and _daemon_key(op) in kept_daemons)]
    made += _updated_daemons(before_ops, after_ops, old_daemons, new_daemons, kept_daemons)
    # kube-proxy's table is the agent's to keep once loaded (each Service rewritten as its ready
    # endpoints change, lab.services.kube_proxy): loaded here only into a namespace this change makes.
    new_namespaces = {op.ns for op in made if isinstance(op, CreateNamespace)}
    made = [op for op in made if not (isinstance(op, ApplyNft) and op.kept and op.ns not in new_namespaces)]
    ops = tuple(ordered(undo + made))
    restarted = _restarted(after_ops, ops)
    if restarted:
        # They leave the agent's spec while their daemon's files are rewritten, so the spec is written
        # whole again for them to come back, also when no pod came or went (a Service deleted).
        specs = {path for op in after_ops if isinstance(op, StartDaemon) and op.kind == "agent" for path in op.config}
        ops = tuple(ordered([*ops, *(op for op in after_ops if isinstance(op, WriteFile) and op.path in specs
                                     and op not in ops)]))
    return Change(new, tuple(added), tuple(removed), tuple(sorted(gone_ns)), ops, restarted,
                  tuple(sorted((ns, veth) for ns, veth in gone_veths if veth)), tuple(nodes_added),
                  tuple(nodes_removed), tuple(sorted(gone_nodes)))


def _undo(op: Op) -> Op | None:
    """The op that removes what `op` made in a namespace that stays, where podlab knows one."""
    if isinstance(op, AddNeighbour):
        return DelNeighbour(op.ns, op.dev, op.address)
    if isinstance(op, AddFdb):
        return DelFdb(op.ns, op.dev, op.mac, op.dst)
    if isinstance(op, AddRoute):
        return DelRoute(op.ns, op.dst, op.dev, op.via)
    return None


DaemonKey = tuple[str, str | None, tuple[str, ...]]


def _daemon_key(op: StartDaemon) -> DaemonKey:
    """Which running process a StartDaemon is (its readiness may change with the cluster, it stays the same one)."""
    return op.name, op.ns, op.argv


def _daemons(ops: tuple[Op, ...]) -> dict[DaemonKey, StartDaemon]:
    """The engine's own daemons (BIRD) of a plan; the agent's containers follow their pods."""
    return {_daemon_key(op): op for op in ops if isinstance(op, StartDaemon) and op.kind == "process"}


def _updated_daemons(before_ops: tuple[Op, ...], after_ops: tuple[Op, ...], old_daemons: dict[DaemonKey, StartDaemon],
                     new_daemons: dict[DaemonKey, StartDaemon], kept: set[DaemonKey]) -> list[UpdateDaemon]:
    """The daemons that stay and whose configuration or readiness changes: a BIRD whose node got or
    lost a peer, or took a block, reads its new configuration in place (BIRD reads it once, at start
    and on `configure`); one whose peers' blocks changed is only waited for."""
    if not kept:
        return []
    old_files = {op.path: op.content for op in before_ops if isinstance(op, WriteFile)}
    new_files = {op.path: op.content for op in after_ops if isinstance(op, WriteFile)}
    out = []
    for key in sorted(kept, key=repr):
        op = new_daemons[key]
        rewritten = any(old_files.get(path) != new_files.get(path) for path in op.config)
        if rewritten and not (op.control and op.reconfigure):
            raise PodlabError(f"this change rewrites the configuration of {op.name} in {op.ns}, which cannot be told "
                              "to read it again; 'podlab down' and 'podlab up' the new design instead")
        if rewritten or op != old_daemons[key]:
            out.append(UpdateDaemon(op, rewritten))
    return out


def _restarted(new_ops: tuple[Op, ...], ops: tuple[Op, ...]) -> tuple[str, ...]:
    """Pods running a daemon whose configuration this change rewrites: dnsmasq reads its configuration
    once, so a change of it (SRV records: a Service's named ports, the pods of a headless Service)
    restarts the cluster DNS, a moment without answers. Its A records are not its configuration
    (lab.services.dns): pods that come and go only rewrite those, which dnsmasq reads again itself."""
    written = {op.path for op in ops if isinstance(op, WriteFile)}
    return tuple(op.container.split("/", 1)[0] for op in new_ops if isinstance(op, StartDaemon)
                 and op.kind == "container" and op.container and written & set(op.config))


def _same_cluster(old: Topology, new: Topology) -> None:
    changed = [what for what, a, b in (
        ("the design", old.design, new.design), ("the network", (old.pod_cidr, old.node_mask, old.node_subnet,
                                                                 old.service_cidr, old.mtu, old.bridge),
                                                  (new.pod_cidr, new.node_mask, new.node_subnet, new.service_cidr,
                                                   new.mtu, new.bridge)),
        ("the outside hosts", old.outside, new.outside),
        ("Calico's settings", old.calico, new.calico)) if a != b]
    # Every lab has Services (the cluster DNS's) unless it was made with `dns: false`; only such a
    # lab would have to start kube-proxy (its tables, bridge netfilter and a route on every node),
    # or a lab stop it, to take its first Service or drop its last.
    if old.cluster_dns != new.cluster_dns:
        changed.append(f"the cluster DNS (dns: {str(old.cluster_dns).lower()} -> {str(new.cluster_dns).lower()})")
    elif old.cluster_services != new.cluster_services:
        changed.append("whether the lab runs kube-proxy (it was made with dns: false and no services: key, so it "
                       "has no Services to add one to)" if new.cluster_services else
                       "whether the lab runs kube-proxy (with dns: false, no services: key would mean no Services)")
    if changed:
        raise PodlabError(f"this change touches {', '.join(changed)}: only pods and nodes can be added to or removed "
                          "from a running lab yet; 'podlab down' and 'podlab up' the new design instead")


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
