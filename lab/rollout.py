"""A running lab's Deployments rolled out, step by step, as the deployment controller does it.

podlab is the lab's controller manager: no process watches a lab between commands, so the command
that changes a Deployment's template (`apply` of a changed Deployment, `rollout restart`) carries
its rollout out before it returns, and every later command that changes the lab (and `rollout
status`) carries on one it finds unfinished. Each step is a change of its own (api.change:
journalled, finished by the next command if cut short), planned from the lab as it is when its turn
comes: the new ReplicaSet scaled up, or old ones scaled down, as far as lab.rolling allows; a step
that needs new pods available first waits for the workload agent to report them Ready (the
readiness the endpoints and kube-proxy follow) for minReadySeconds. A SIGKILL between steps leaves
both generations running, each pod whole, the Service answering from the ready ones; the next
command goes on from there. The old pods a step removes are the ones a ReplicaSet removes first:
those without an address (Pending), then those not Ready, then the newest. What it prints is what
`kubectl rollout status` prints.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from lab import api, rolling, topology, workloads
from lab.errors import PodlabError
from lab.model import Deployment, Pod, ReplicaSet, Topology
from lab.topology import replicasets

if TYPE_CHECKING:
    from lab.api import Lab

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"   # kubectl rollout restart's template annotation
POLL = 0.02          # how often a waiting rollout reads the agent's status
HINT_AFTER = 5.0     # seconds of waiting for new pods before saying how to leave the rollout where it is

Say = Callable[[str], None]


def restarted_at(now: datetime | None = None) -> str:
    """The time as kubectl's restart writes it: time.Now().Format(time.RFC3339), local time with its
    offset (Z for UTC), to the second."""
    now = (now or datetime.now(timezone.utc)).astimezone()
    text = now.replace(microsecond=0).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def available_pods(lab_name: str, topo: Topology, now: float | None = None) -> set[str]:
    """The pods the agent reports Ready, each for its Deployment's minReadySeconds (Kubernetes' available)."""
    status = workloads.read_status(lab_name)
    ready = workloads.ready_pods(status)
    wait = {d.name: d.min_ready_seconds for d in topo.deployments if d.min_ready_seconds}
    if not wait:
        return ready
    now = time.time() if now is None else now
    pods = status.get("pods", {})
    out = set()
    for pod in topo.pods:
        if pod.name not in ready:
            continue
        seconds = wait.get(pod.deployment or "", 0)
        started = [c.get("startedAt") or now for c in pods.get(pod.name, {}).get("containers", {}).values()]
        if not seconds or now - max(started, default=now) >= seconds:
            out.add(pod.name)
    return out


def _members(topo: Topology, rs: ReplicaSet) -> list[Pod]:
    return [p for p in topo.pods if p.deployment == rs.deployment and p.template_hash == rs.template_hash]


def replicasets_of(topo: Topology, deployment: str) -> list[ReplicaSet]:
    return [r for r in topo.replicasets if r.deployment == deployment]


def counted(topo: Topology, d: Deployment, available: set[str]) -> list[rolling.Pods]:
    """The Deployment's ReplicaSets as the controller counts them."""
    return [rolling.Pods(r.template_hash, r.revision, r.replicas,
                         sum(p.name in available for p in _members(topo, r)))
            for r in replicasets_of(topo, d.name)]


def in_rollout(d: Deployment, sets: list[rolling.Pods]) -> bool:
    """Whether the Deployment is not (yet) all in its newest ReplicaSet: a rollout to carry on."""
    return any(s.replicas for s in sets if s.template_hash != d.template_hash) or \
        next((s.replicas for s in sets if s.template_hash == d.template_hash), 0) != d.replicas


def unfinished(lab: Lab) -> list[str]:
    """The Deployments of the lab with a rollout to carry on (from the record alone: what each
    ReplicaSet has, not what is available, so a change of a lab with none costs nothing more)."""
    sets: dict[str, list[rolling.Pods]] = {}
    for r in lab.topology.replicasets:
        sets.setdefault(r.deployment, []).append(rolling.Pods(r.template_hash, r.revision, r.replicas))
    return [d.name for d in lab.topology.deployments if in_rollout(d, sets.get(d.name, []))]


def _step(lab: Lab, name: str) -> Topology:
    """The lab after one step of the Deployment's rollout, from the lab as it is now (api.change's
    turn); as it is when there is nothing to do."""
    d = lab.topology.deployment(name)
    if d is None:
        return lab.topology
    available = available_pods(lab.name, lab.topology)
    counts = rolling.step(d, counted(lab.topology, d, available))
    if not counts:
        return lab.topology
    sets = []
    for rs in replicasets_of(lab.topology, name):
        if rs.template_hash in counts:
            rs = _scaled(lab.topology, rs, counts[rs.template_hash], available)
        sets.append(rs)
    bound = lab.scheduling or topology.scheduling_of(lab.topology.pods, replicasets=lab.topology.replicasets)
    bound = bound.copy(replicasets={**bound.replicasets, name: sets}, stepped=frozenset({name}))
    return topology.loads(lab.topology.text, source=f"lab {lab.name}'s record (rollout of {name})",
                          default_name=lab.document_name, bound=bound,
                          conflist=lab.topology.cni.conflist if lab.topology.cni else None)


def _scaled(topo: Topology, rs: ReplicaSet, replicas: int, available: set[str]) -> ReplicaSet:
    """The ReplicaSet scaled to `replicas`; scaled down, it loses the pods a ReplicaSet deletes first
    (lab.topology.replicasets.deletion_order): Pending ones (no address: not among the lab's pods),
    then those not available, then those doubled up on a node, then the newest."""
    if replicas >= rs.replicas:
        return replace(rs, replicas=replicas)
    members = _members(topo, rs)
    ranked = replicasets.deletion_order(rs.ordinals, {p.ordinal: p.node for p in members},
                                        [p.node for p in topo.pods if p.deployment == rs.deployment],
                                        {p.ordinal for p in members if p.name in available})
    gone = set(ranked[:rs.replicas - replicas])
    return replace(rs, replicas=replicas, ordinals=tuple(o for o in sorted(rs.ordinals) if o not in gone))


def drive(name: str, say: Say, deployments: list[str] | None = None, timeout: float | None = None,
          quiet_changes: bool = False, lab: Lab | None = None) -> None:
    """Carry the rollouts of lab `name` through to the end: of `deployments` (also waiting, as
    `kubectl rollout status`, until their new pods are available), or of every Deployment found
    unfinished (None). Prints what `kubectl rollout status` prints as it goes. PodlabError if a
    Deployment makes no progress for its progressDeadlineSeconds, or `timeout` passes: the lab is
    then left at the step it had reached. `lab`: the lab as a change just left it, if at hand."""
    lab = lab if lab is not None and lab.record_unchanged() else api.Lab(name)
    names = deployments if deployments is not None else unfinished(lab)
    started = time.monotonic()
    for deployment in names:
        lab = _drive_one(name, lab, deployment, say, wait_available=deployments is not None, started=started,
                         timeout=timeout, quiet_changes=quiet_changes)


def _drive_one(name: str, lab: Lab, deployment: str, say: Say, wait_available: bool, started: float,
               timeout: float | None, quiet_changes: bool) -> Lab:
    last_message = None
    progress_at = time.monotonic()
    seen_available = -1
    hinted = False
    while True:
        if not lab.record_unchanged():
            lab = api.Lab(name)
        d = lab.topology.deployment(deployment)
        if d is None:
            raise PodlabError(f'deployments.apps "{deployment}" not found in lab {name}')
        available = available_pods(name, lab.topology)
        sets = counted(lab.topology, d, available)
        message, done = rolling.status(d, sets)
        if message != last_message:
            say(message)
            last_message = message
        if done or (not wait_available and not in_rollout(d, sets)):
            return lab
        now_available = sum(s.available for s in sets if s.template_hash == d.template_hash)
        if now_available > seen_available:
            seen_available, progress_at = now_available, time.monotonic()
        if rolling.step(d, sets):
            lab = api.change(name, lambda now: _step(now, deployment), _quiet if quiet_changes else say,
                             current=lab)
            progress_at = time.monotonic()
            continue
        if not workloads.agent_alive(name):
            raise PodlabError(f'deployment "{deployment}": the workload agent of lab {name} is not running, so no '
                              f"pod becomes ready: 'sudo podlab restart-agent --lab {name}', then "
                              f"'sudo podlab rollout status deployment {deployment} --lab {name}'")
        if not hinted and time.monotonic() - progress_at > HINT_AFTER:
            say(f"  (the new pods of {deployment} are not available yet: see 'podlab get pods'; Ctrl-C leaves the "
                f"rollout at this step, 'podlab rollout status deployment {deployment}' carries it on)")
            hinted = True
        if time.monotonic() - progress_at > d.progress_deadline_seconds:
            raise PodlabError(f'deployment "{deployment}" exceeded its progress deadline '
                              f"({d.progress_deadline_seconds} s without a new pod available); the lab is left "
                              "as it is, both generations running: see 'podlab get pods' and the pods' logs")
        if timeout is not None and time.monotonic() - started > timeout:
            raise PodlabError("timed out waiting for the condition")
        time.sleep(POLL)


def _quiet(_: str) -> None:
    pass
