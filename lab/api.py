"""The facade the CLI, the TUI and the graders share: up, down, status, targets, check.

A running lab is its state directory: its record (the topology document as `up` read it and
the address allocation it was built with, re-planned on demand), the journal of what it made,
and the agent's status.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from pathlib import Path
from typing import TYPE_CHECKING

from lab import designs, faults, planner, record, state, topology, workloads
from lab.addressing import AddressPlan, PendingPod
from lab.designs import Design
from lab.errors import PodlabError
from lab.model import Topology
from lab.planner import Plan

if TYPE_CHECKING:
    from lab.engine import apply

# lab.engine.apply and the journal are imported by up/down only: every `trace`, `get` and TUI
# start would otherwise pay ~15 ms for them.

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"
DEFAULT_TOPOLOGY = "default"
TOPOLOGY_RECORD = record.TOPOLOGY        # in the lab's state directory
ALLOCATION_RECORD = record.ALLOCATION

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class Target:
    """Anything a command can run in or aim at: a pod, node, outside host, or the underlay."""
    name: str
    kind: str                 # pod | node | outside | underlay
    netns: str
    uts: str | None
    ip: IPv4Address | None
    node: str | None = None


class Lab:
    """A lab that is up (or was left behind), read from its state directory."""

    def __init__(self, name: str, plan: Plan | None = None):
        self.name = name
        self.dir = state.lab_dir(name)
        try:
            self.meta = json.loads((self.dir / "lab.json").read_text())
        except (OSError, ValueError):
            raise PodlabError(f"lab {name!r} is not up (no complete record in {self.dir})") from None
        try:
            self._record_mtime: int | None = (self.dir / ALLOCATION_RECORD).stat().st_mtime_ns
        except OSError:
            self._record_mtime = None
        # The name the document is read under (generated pod names derive from it), whatever --name said.
        self.document_name = Path(self.meta.get("source") or TOPOLOGY_RECORD).stem
        if plan is not None and plan.topology.name == name:
            # `up` hands over the plan it just built: planning a 1000-pod lab again costs ~0.3 s.
            self.topology, self._allocated = plan.topology, plan.allocation
            self._addresses = _observed(plan.allocation, plan.topology, name)
            self._plan: Plan | None = self._over_observed(plan)
            self.scheduling = self._recorded_scheduling()
            return
        source = self.meta.get("source") or TOPOLOGY_RECORD
        # The lab's record: the document as `up` read it (generated pod names derive from the
        # design's name, so it is read under the same name) and the allocation it was built with;
        # while a change is in progress (or was cut short), the record it started from.
        try:
            kept = record.committed(self.dir)
            self.topology, self._allocated, self.scheduling = record.load(kept, name, source, self.document_name)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise PodlabError(f"lab {name}: its allocation record {self.dir / ALLOCATION_RECORD} is "
                              f"unreadable ({e}); 'sudo podlab down {name}' and up again") from None
        self._addresses = _observed(self._allocated, self.topology, name)
        self._plan = None

    @property
    def plan(self) -> Plan:
        """The lab's ops, planned again over its record when first asked for: most commands need only
        the addresses and the topology (a 1000-pod lab's plan costs ~0.2 s). A cni lab's ops are
        planned over the recorded allocation (what podlab predicted), its addresses are observed."""
        if self._plan is None:
            self._plan = self._over_observed(planner.build(self.topology, self._allocated))
        return self._plan

    def _over_observed(self, planned: Plan) -> Plan:
        """The plan with the addresses as the lab has them: a cni lab's ops stay planned over the
        allocation podlab predicted, its addresses are the plugins' (lab.cni.status.observed)."""
        if self._addresses is self._allocated:
            return planned
        return replace(planned, addresses=self._addresses, planned_over=self._allocated)

    def _recorded_scheduling(self) -> topology.Scheduling | None:
        """The placement the record holds (with each Deployment's next ordinal: what the pods alone
        cannot say once the newest was deleted)."""
        try:
            return topology.Scheduling.from_record(record.committed(self.dir).allocation.get("scheduling"))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @property
    def pending(self) -> tuple[PendingPod, ...]:
        """Pods that have no address yet (their node had none left): Pending, ContainerCreating."""
        return self._addresses.pending

    def record_unchanged(self) -> bool:
        """Whether the lab's record is still the one this object was read from."""
        try:
            return (self.dir / ALLOCATION_RECORD).stat().st_mtime_ns == self._record_mtime
        except OSError:
            return False

    @property
    def design(self) -> Design:
        return designs.of(self.topology)

    @property
    def addresses(self) -> AddressPlan:
        return self._addresses

    @property
    def created(self) -> float:
        return float(self.meta.get("created", time.time()))

    def targets(self) -> dict[str, Target]:
        # Derived from the plan alone, which a Lab never changes: made once (a 1000-pod lab's
        # targets cost ~20 ms, and a `trace` asks for them several times). A copy goes out.
        if getattr(self, "_targets", None) is None:
            self._targets = self._make_targets()
        return dict(self._targets)

    def _make_targets(self) -> dict[str, Target]:
        a = self.addresses
        out: dict[str, Target] = {"underlay": Target("underlay", "underlay", a.underlay_netns,
                                                     state.uts_path(self.name, a.underlay_netns),
                                                     a.router_ip if self.design.backend.router else None)}
        for n in a.nodes:
            out[n.name] = Target(n.name, "node", n.netns, state.uts_path(self.name, n.netns), n.ip, n.name)
        for p in a.pods:
            out[p.name] = Target(p.name, "pod", p.netns, state.uts_path(self.name, p.netns), p.ip, p.node)
        for h in a.outside:
            out[h.name] = Target(h.name, "outside", h.netns, state.uts_path(self.name, h.netns), h.ip)
        if self.design.backend.router:
            out["router"] = replace(out["underlay"], name="router")
        return out

    def target(self, name: str) -> Target:
        targets = self.targets()
        if name in targets:
            return targets[name]
        matches = [t for t in targets.values() if t.name.startswith(name)]
        if len(matches) == 1:
            return matches[0]
        hint = f"; did you mean one of: {', '.join(m.name for m in matches[:5])}" if matches else \
            f"; try 'podlab get pods --lab {self.name}'"
        raise PodlabError(f"no pod, node or host named {name!r} in lab {self.name}{hint}")

    def address_of(self, name_or_ip: str) -> IPv4Address:
        """A destination: a target's name, or a literal address."""
        try:
            return IPv4Address(name_or_ip)
        except ValueError:
            pass
        t = self.target(name_or_ip)
        if t.ip is None:
            raise PodlabError(f"{t.name} has no address of its own to aim at")
        return t.ip


def _observed(addrs: AddressPlan, topo: Topology, lab: str) -> AddressPlan:
    """A cni lab's addresses and host veths as the plugins made them (host-local, not podlab, chose
    them: the plan only predicted them)."""
    if not designs.of(topo).attachment.runs_plugins:
        return addrs
    from lab.cni import status
    return status.observed(addrs, lab)


def running() -> list[str]:
    return [name for name in state.labs() if (state.lab_dir(name) / "lab.json").exists()]


def pick(name: str | None) -> Lab:
    """The lab a command means: the one named, or the only one running; a change of it that was cut
    short is finished first (finish_change)."""
    if name:
        finish_change(name)
        return Lab(name)
    labs = running()
    if not labs:
        half = [lab for lab in state.labs() if lab not in labs]
        if half:   # a crashed `up` left these: say how to remove them, rather than "nothing here"
            raise PodlabError(f"no lab is up; {', '.join(half)} {'was' if len(half) == 1 else 'were'} left "
                              f"half-built: 'sudo podlab down {half[0]}' or 'sudo podlab clean' removes "
                              f"{'it' if len(half) == 1 else 'them'}")
        raise PodlabError("no lab is up: start one with 'sudo podlab up' (the default lab) "
                          "or 'sudo podlab up topologies/vxlan.yaml'")
    if len(labs) > 1:
        raise PodlabError(f"{len(labs)} labs are up ({', '.join(labs)}): say which with --lab NAME")
    finish_change(labs[0])
    return Lab(labs[0])


def load_topology(spec: str | None, name: str | None = None) -> Topology:
    path = topology.resolve(spec or DEFAULT_TOPOLOGY, TOPOLOGIES)
    topo = topology.load(path)
    if name:
        if not state.LAB_NAME.fullmatch(name):
            raise PodlabError(f"--name {name!r}: a lab name is 1-24 lowercase letters, digits or '-', "
                              f"starting and ending with a letter or digit")
        topo = replace(topo, name=name)
    return topo


def up(topo: Topology, say: Say = _quiet) -> Lab:
    """Build the lab and return once it is ready (every veth running, every daemon ready)."""
    from lab import clean
    from lab.engine import apply, features
    from lab.engine.journal import Journal
    lab = topo.name
    state.lab_dir(lab)  # validates the name
    with state.locked(lab), state.private_files():
        if state.lab_dir(lab).exists():
            if (state.lab_dir(lab) / "lab.json").exists():
                raise PodlabError(f"lab {lab} is already up: 'sudo podlab down {lab}' first, "
                                  f"or start another copy with --name")
            say(f"lab {lab} was left half-built (a crash?): removing what it made first")
            clean.teardown(lab, say)
        plan = planner.build(topo)
        features.require(plan.ops)   # a missing kernel feature or program is named before anything is made
        d = state.ensure_lab_dir(lab)
        Journal(lab).record("lab", name=lab, pid=os.getpid(), source=topo.source)
        _record(d, topo, plan)
        started = time.monotonic()
        a = plan.addresses
        say(f"lab {lab}: {designs.of(topo).describe()}, "
            f"{len(a.nodes)} nodes, {len(a.pods)} pods, {len(a.outside)} outside hosts")
        try:
            apply.build(lab, plan.ops, progress=_progress(say, len(plan.ops)), say=say)
        except BaseException as e:
            say(f"up failed: {e}\nremoving what was made ...")
            clean.teardown(lab, say)
            if isinstance(e, PodlabError):
                raise
            raise PodlabError(f"up failed: {e}; everything it made was removed") from e
        meta = {"name": lab, "source": topo.source, "created": time.time(), "design": designs.of(topo).name}
        tmp = d / "lab.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1))
        faults.point("lab.json written")
        tmp.rename(d / "lab.json")
        say(f"lab {lab} is up and ready in {time.monotonic() - started:.2f} s ({len(plan.ops)} operations)")
        return _follow_plugins(Lab(lab, plan), say)


def _record(d: Path, topo: Topology, plan: Plan, previous: topology.Scheduling | None = None) -> None:
    """What every later command reads: the document as it was loaded (not the file as it is now),
    the allocation, and where the pods were put (lab.topology.placement)."""
    record.write(d, record.of(topo, plan.addresses, topology.scheduling_of(
        topo.pods, previous, [n.name for n in topo.nodes], topo.replicasets)))


def _progress(say: Say, total: int) -> apply.Progress:
    def report(what: str, done: int, count: int) -> None:
        if count >= 200 and done == count:
            say(f"  {what}: {count}")
    return report


# How long a change waits for another change (or up, down, clean) of the same lab to finish.
CHANGE_WAIT = 120.0


class PodsPending(PodlabError):
    """A change was made, but some of its pods got no address: they wait, Pending."""


def change(name: str, desired: Topology | Callable[[Lab], Topology], say: Say = _quiet,
           current: Lab | None = None) -> Lab:
    """Make a running lab what `desired` says (pods added, removed, replaced), in place: a topology,
    or a function making it from the lab as it is once this change's turn has come (changes of one
    lab wait for each other, and one made from a record another change has since replaced would
    undo that change). `current`: the lab as the caller just read it, used if its record has not
    changed since (a 1000-pod lab's plan costs ~0.2 s to make again).

    Journalled before anything is made, and finished by the next command if cut short
    (lab.converge); a change that fails half way is undone. Pods their node has no address left
    for are Pending: the rest is made, and PodsPending names them."""
    from lab import change as changes
    from lab import converge
    from lab.engine import features
    turn = ExitStack()
    try:
        turn.enter_context(state.locked(name))
    except state.LabBusy:
        say(f"lab {name}: waiting for another podlab to finish changing it ...")
        turn.enter_context(state.locked(name, wait=CHANGE_WAIT))
    with turn, state.private_files():
        converge.finish(name, say)
        lab = current if current is not None and current.record_unchanged() else Lab(name)
        desired = desired(lab) if callable(desired) else desired
        desired = replace(desired, name=name)
        ch = changes.plan_change(lab.plan, desired)
        before = {p.name for p in lab.pending}
        pending = ch.plan.addresses.pending
        if ch.empty and {p.name for p in pending} == before:
            # The record may change still: a Deployment of 0 replicas deleted, a template changed (its new
            # ReplicaSet has no pods yet: lab.rollout scales it).
            if desired.text != lab.topology.text or desired.replicasets != lab.topology.replicasets:
                _record(state.lab_dir(name), desired, ch.plan, lab.scheduling)
                return Lab(name, ch.plan)
            say(f"lab {name}: nothing to change")
            return lab
        features.require(ch.ops)
        if workloads.agent_pid(name) is None:
            raise PodlabError(f"the workload agent of lab {name} is not running, and a change needs it: "
                              f"'sudo podlab restart-agent --lab {name}' first; nothing was changed")
        started = time.monotonic()
        kernel = converge.start(name, lab.plan, lab.scheduling, desired, ch, say)
        for node in ch.nodes_removed:
            say(f"node/{node} deleted")
        for pod in ch.removed:
            say(f"pod/{pod} deleted")
        for node in ch.nodes_added:
            n = ch.plan.addresses.node(node)
            say(f"node/{node} created ({n.ip}, pod CIDR {n.block})")
        changed = Lab(name, ch.plan)
        new = {p.name: p for p in changed.addresses.pods}     # a cni lab's as the plugins gave them
        for pod in ch.added:
            say(f"pod/{pod} created ({new[pod].ip} on {new[pod].node})")
        for p in pending:
            say(f"pod/{p.name} Pending on {p.node} (ContainerCreating): FailedCreatePodSandBox: {p.reason}")
        say(f"lab {name} changed in {time.monotonic() - started:.2f} s ({len(ch.ops)} operations, "
            f"{kernel:.3f} s of it in the kernel)")
        changed = _follow_plugins(changed, say)
    stuck = [p for p in pending if p.name not in before]
    if stuck:
        raise PodsPending(f"lab {name}: {len(stuck)} pod{'s' if len(stuck) != 1 else ''} could not be given an "
                          f"address and {'are' if len(stuck) != 1 else 'is'} Pending ({', '.join(p.name for p in stuck[:5])}"
                          f"{', ...' if len(stuck) > 5 else ''}): {stuck[0].reason}; the rest of the change was made, "
                          "and they get an address once one is free")
    return changed


def _follow_plugins(lab: Lab, say: Say) -> Lab:
    """A cni lab's pods have the addresses the plugins gave them, which need not be the ones podlab
    predicted: host-local gives the next free address after the last it gave, so a failed ADD moves
    it on, and a pod made again gets a new one. What depends on the addresses (the cluster DNS's
    records and its server's own address, kube-proxy's endpoints) follows them, as in a cluster the
    API server learns a pod's IP from the runtime: a change from the plan as predicted to the plan
    over the addresses observed, recorded as any change. The caller holds the lab's lock."""
    if all(seen.ip == planned.ip for seen, planned in zip(lab.addresses.pods, lab._allocated.pods)):
        return lab                          # a lab without plugins, or every address as predicted
    from lab import change as changes
    from lab import converge
    ch = changes.plan_change(lab.plan, lab.topology)
    if ch.empty or ch.added or ch.removed:  # nothing depends on them; or (never expected) pods would change
        return lab
    converge.start(lab.name, lab.plan, lab.scheduling, lab.topology, ch, say)
    say(f"lab {lab.name}: {len(ch.ops)} operations follow the addresses the plugins gave")
    return Lab(lab.name, ch.plan)


def finish_change(name: str, say: Say | None = None) -> bool:
    """If a change of `name` was cut short (its podlab killed), finish it now, unless another podlab
    is changing the lab (its record is then the one the change started from, until it commits).
    What a command that reads a lab does first: its answer is then the lab as it is. True if one
    was finished."""
    if not record.change_pending(state.lab_dir(name)) or os.geteuid() != 0:
        return False
    say = say or (lambda line: print(line, file=sys.stderr))
    from lab import converge
    try:
        with state.locked(name), state.private_files():
            return converge.finish(name, say) is not None
    except state.LabBusy:
        return False
    except PodlabError as e:
        say(f"warning: {e}")
        return False


def cordon(name: str, node: str, cordoned: bool = True) -> bool:
    """Mark a running lab's node unschedulable (or schedulable again), as `kubectl cordon` sets
    spec.unschedulable: its pods stay, new pods go elsewhere (lab.topology.placement). Recorded in
    the lab's placement state; whether it changed."""
    from lab import converge
    with state.locked(name, wait=CHANGE_WAIT), state.private_files():
        converge.finish(name, _quiet)      # a change cut short would otherwise undo the mark when finished
        lab = Lab(name)
        if node not in {n.name for n in lab.addresses.nodes}:
            raise PodlabError(f'nodes "{node}" not found in lab {name} (nodes: '
                              f'{", ".join(n.name for n in lab.addresses.nodes)})')
        bound = lab.scheduling or topology.scheduling_of(lab.topology.pods, replicasets=lab.topology.replicasets)
        if (node in bound.cordoned) == cordoned:
            return False
        # The record as it is but for the mark (its Pending pods keep their names and nodes).
        kept = record.read_files(state.lab_dir(name))
        record.write(state.lab_dir(name), record.Record(
            kept.text, {**kept.allocation, "scheduling": bound.with_cordon(node, cordoned).record()}))
        return True


def restart_agent(lab: str, say: Say = _quiet) -> int:
    """Start a lab's workload agent again after it died; its pods' containers start again and
    RESTARTS counts it. What the dead agent's containers left in the pods is stopped first."""
    with state.locked(lab), state.private_files():
        Lab(lab)   # the lab must be up (lab.json)
        if (pid := workloads.agent_pid(lab)) is not None:
            raise PodlabError(f"the workload agent of lab {lab} is running (pid {pid}); nothing to restart")
        from lab import clean
        from lab.engine import daemons
        left = clean.kill_recorded(lab) + clean.kill_container_leftovers(lab)
        if left:
            say(f"stopped {len(left)} processes the dead agent's containers left behind")
        pid = daemons.restart_agent(lab)
        say(f"lab {lab}: workload agent restarted (pid {pid})")
        return pid


def down(lab: str, say: Say = _quiet) -> list[str]:
    state.lab_dir(lab)  # validates the name
    with state.locked(lab):
        if not state.lab_dir(lab).exists():
            raise PodlabError(f"lab {lab} is not up (running: {', '.join(running()) or 'none'})")
        from lab import clean
        return clean.teardown(lab, say)


def down_all(say: Say = _quiet) -> list[str]:
    """Take down every lab; one that another podlab is changing is skipped, and named at the end."""
    labs = state.labs()
    busy = []
    for lab in labs:
        try:
            down(lab, say)
        except state.LabBusy:
            busy.append(lab)
    if busy:
        raise state.LabBusy(f"{len(busy)} labs skipped because an 'up' or 'down' of them is running: {', '.join(busy)}; "
                      "run 'sudo podlab down --all' again once it has finished")
    return labs
