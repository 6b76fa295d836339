"""A change of a running lab carried out so that a crash or a failure at any point leaves a lab the
next command makes whole again.

1. Before anything is made, the change is recorded (lab.record: change.json holds the record the
   lab starts from and the one the change makes) and journalled.
2. The kernel work and the workload agent's reloads (lab.engine.apply.change).
3. The commit: the new record files, then change.json removed.

Killed anywhere after 1, the change is finished by the next command that finds change.json with
nobody holding the lab's lock (`finish`): it is made again from the two records, idempotently. The
namespaces it makes may be half made, so they are removed (by the journal's identities) and made
again, with the addresses the record gave them; the namespaces it removes are removed if they are
still there; netlink requests in the namespaces that stay replace what they make and take a
deletion of what is gone already as done; files and nftables tables are written whole again; then
it is committed. That is Kubernetes' way too: the desired state is stored before any controller
acts, and a kubelet that dies half way through a pod carries on from it.

A change that fails half way (the kernel refuses, the agent does not take up its spec) is undone
the same way, towards the record it started from, so the rest of the cluster works as it did;
change.json says which way it is going, so a crash while undoing is finished by undoing.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

from lab import change as changes
from lab import faults, record, state, topology, workloads
from lab.change import Change
from lab.errors import PodlabError
from lab.model import Topology
from lab.ops import CreateNamespace, CreateVeth
from lab.planner import Plan

Say = Callable[[str], None]


def start(name: str, current: Plan, scheduling: topology.Scheduling | None, desired: Topology, ch: Change,
          say: Say) -> float:
    """Carry out `ch`, planned from the lab's `current` plan to `desired` (every pod it names,
    those left Pending too). The caller holds the lab's lock and has finished any change pending.
    Raises PodlabError if the change failed; it was then undone. Returns the seconds of the
    kernel work (lab.engine.apply.change)."""
    from lab.engine.journal import Journal
    d = state.lab_dir(name)
    committed = record.read_files(d)
    proposed = record.of(desired, ch.plan.addresses,
                         topology.scheduling_of(desired.pods, scheduling, [n.name for n in desired.nodes],
                                                desired.replicasets))
    pending = record.PendingChange(committed, proposed)
    record.write_change(d, pending)
    Journal(name).record("change", added=list(ch.added), removed=list(ch.removed),
                         **({"services_added": made} if (made := _services_added(current.topology, desired)) else {}))
    try:
        kernel = _make(name, current, ch, again=False)
    except (PodlabError, OSError) as e:
        _undo(name, pending, ch.plan, current, e, say)
    _commit(name, proposed)
    return kernel


def _services_added(old: Topology, new: Topology) -> list[str]:
    """The Services (namespace/name) that `new` has and `old` has not: their AGE counts from this
    change (lab.ages.services_added), as kubectl's from a Service's creationTimestamp."""
    had = {(s.namespace, s.name) for s in old.services}
    return [f"{s.namespace}/{s.name}" for s in new.services if (s.namespace, s.name) not in had]


def finish(name: str, say: Say) -> Plan | None:
    """Finish the change of `name` that was cut short, if there is one: its plan once finished, or
    None if no change was pending. The caller holds the lab's lock (so nobody is making it)."""
    from lab.engine.journal import Journal
    d = state.lab_dir(name)
    try:
        pending = record.read_change(d)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PodlabError(f"lab {name}: {d / record.CHANGE} is unreadable ({e}); "
                          f"'sudo podlab down {name}' removes the lab") from None
    if pending is None:
        return None
    source, document_name = _names(d)
    try:
        other = record.plan(pending.other, name, source, document_name)
        target = record.plan(pending.target, name, source, document_name)
    except (PodlabError, KeyError, TypeError, ValueError) as e:
        raise PodlabError(f"lab {name}: the records of a change cut short are unreadable ({e}); "
                          f"'sudo podlab down {name}' removes the lab") from None
    ch = changes.diff(other, target)
    when = time.strftime("%H:%M:%S", time.localtime(pending.started)) if pending.started else "earlier"
    say(f"lab {name}: a change started at {when} (podlab pid {pending.pid}) was cut short; "
        f"{'undoing' if pending.undo else 'completing'} it")
    Journal(name).record("change", added=list(ch.added), removed=list(ch.removed), again=True, undo=pending.undo)
    try:
        _make(name, other, ch, again=True)
    except (PodlabError, OSError) as e:
        if pending.undo:
            raise PodlabError(f"lab {name}: undoing a change cut short failed ({e}); the next podlab command of "
                              f"this lab tries again; 'sudo podlab down {name}' removes the lab") from None
        _undo(name, pending, target, other, e, say)
    _commit(name, pending.target)
    for node in ch.nodes_removed:
        say(f"node/{node} deleted")
    for pod in ch.removed:
        say(f"pod/{pod} deleted")
    for node in ch.nodes_added:
        say(f"node/{node} created")
    new = {p.name: p for p in target.addresses.pods}
    for pod in ch.added:
        say(f"pod/{pod} created ({new[pod].ip} on {new[pod].node})")
    say(f"lab {name}: the change is {'undone' if pending.undo else 'complete'}")
    return target


def _names(d: Path) -> tuple[str, str]:
    """The source the lab's document was read from, and the name it is read under (api.Lab's)."""
    meta = json.loads((d / "lab.json").read_text())
    source = meta.get("source") or record.TOPOLOGY
    return source, Path(source).stem


def _make(name: str, current: Plan, ch: Change, again: bool) -> float:
    """The kernel work of `ch` from a lab built from `current`; `again`: it may be half done. Its
    seconds, but for the agent's and the daemons' turns."""
    from lab.engine import apply
    spec_path = state.lab_dir(name) / workloads.SPEC_FILE
    kept = {p.name for p in current.addresses.pods} - set(ch.removed) - set(ch.restarted)
    remove, gone, stop_in = ch.remove_namespaces, ch.gone_links, set(ch.node_namespaces)
    if again:   # what it makes may be there, half made: removed first (what runs there stopped), made again whole
        new = {op.ns for op in ch.ops if isinstance(op, CreateNamespace)}
        remove = tuple(sorted(set(remove) | new))
        stop_in |= new
        # Their veths' other ends, in namespaces that stay (a pod's on its node, a node's on the
        # underlay switch), go with them: their names must be free before they are made again.
        ends = {(op.ns, op.name) for op in ch.ops if isinstance(op, CreateVeth) and op.peer_ns in new
                and op.ns not in new}
        ends |= {(op.peer_ns, op.peer) for op in ch.ops if isinstance(op, CreateVeth) and op.ns in new
                 and op.peer_ns not in new}
        gone = tuple(sorted(set(gone) | ends))

    # What the agent reads when told to (its spec, kube-proxy's Services), as it last read them.
    agent_files = (spec_path, state.lab_dir(name) / workloads.KUBE_PROXY_SPEC)
    read: list[tuple[str | None, ...]] = []

    def let_go() -> None:
        spec = json.loads(spec_path.read_text())
        # The agent serves the lab's pods as its record has them, unless a change was cut short.
        if again or {p["pod"] for p in spec["pods"]} != kept:
            spec["pods"] = [p for p in spec["pods"] if p["pod"] in kept]
            workloads.write_json_atomic(spec_path, spec)
            workloads.reload_agent(name, {p["pod"] for p in spec["pods"]})
        read.append(_contents(agent_files))
        state.remove_pod_dirs(name, ch.removed)     # the kubelet's files (resolv.conf, hosts) go with the pod
        if stop_in:      # a leaving node's BIRD, a shell left in it: they hold its namespace
            from lab import clean
            clean.kill_inside(name, only=stop_in)

    def serve_new() -> None:
        # Told again only if there is something new to read (nothing, when a pod only went).
        if _contents(agent_files) != read[-1]:
            workloads.reload_agent(name, {p.name for p in ch.plan.addresses.pods})
        faults.point("new pods served")

    return apply.change(name, ch.ops, remove, let_go, serve_new, gone, again=again)


def _contents(paths: tuple[Path, ...]) -> tuple[str | None, ...]:
    out: list[str | None] = []
    for path in paths:
        try:
            out.append(path.read_text())
        except FileNotFoundError:
            out.append(None)
    return tuple(out)


def _undo(name: str, pending: record.PendingChange, failed: Plan, back_to: Plan, error: Exception,
          say: Say) -> NoReturn:
    """The change to `failed` went wrong half way: make the lab `back_to` again, and say so."""
    from lab.engine.journal import Journal
    say(f"lab {name}: the change failed ({error}); undoing it")
    undo = replace(pending, undo=True)
    record.write_change(state.lab_dir(name), undo)
    Journal(name).record("change-undo", error=str(error)[:1000])
    try:
        _make(name, failed, changes.diff(failed, back_to), again=True)
    except (PodlabError, OSError) as e:
        raise PodlabError(f"lab {name}: the change failed ({error}), and undoing it failed too ({e}); the next "
                          f"podlab command of this lab tries again; 'sudo podlab down {name}' removes the lab") from None
    _commit(name, undo.target)
    raise PodlabError(f"lab {name}: the change failed ({error}); it was undone: the lab is as it was before")


def _commit(name: str, r: record.Record) -> None:
    from lab.engine.journal import Journal
    d = state.lab_dir(name)
    record.write(d, r)
    record.end_change(d)
    Journal(name).record("change-done")
