"""Deployments expanded into named pods, and every pod put on a node.

A fresh lab goes round-robin. A running lab's pods are bound (Scheduling: the node each pod runs
on, and each Deployment's ReplicaSets with which of its pods each has, by ordinal): pods keep their
nodes; a ReplicaSet scaled down loses the pods its controller deletes first (a pod on a node where
the Deployment is doubled up before the newest: rsets.deletion_order); one scaled up or missing a
pod gets pods of new ordinals (new names), each put on the allowed node with the fewest pods of its
ReplicaSet, then the fewest pods, as the scheduler's default scoring spreads them. A Deployment
whose template changed gets a new ReplicaSet (lab.topology.replicasets) beside the old ones, whose
pods stay planned from their own templates until lab.rollout has scaled them away. A node that left
takes its pods with it: its Deployments' pods are replaced by new ones (new ordinals) elsewhere, as
the ReplicaSet controller recreates them once the pod GC deleted them; a bare pod still in the
document is made again on another node. A cordoned node (`podlab drain`, `cordon`) keeps its pods
but takes no new one, as the scheduler skips an unschedulable node.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from lab import naming
from lab.model import Deployment, Pod, ReplicaSet
from lab.topology import replicasets as rsets
from lab.topology.checker import Checker, YamlPath
from lab.topology.pods import DeploymentDraft, PodDraft, Workload, recorded_template
from lab.topology.wording import did_you_mean, show


def _unknown_node(checker: Checker, path: YamlPath, name: str, nodes: list[str]) -> None:
    hint = did_you_mean(name, nodes)
    shown = ", ".join(nodes[:10]) + (", ..." if len(nodes) > 10 else "")
    checker.add(path, f"no node named {show(name)}; {hint}the nodes are: {shown}")


@dataclass
class Scheduling:
    """A running lab's placement, kept in its record: bound pods and each Deployment's ReplicaSets."""
    bindings: dict[str, str] = field(default_factory=dict)                   # pod -> node
    replicasets: dict[str, list[ReplicaSet]] = field(default_factory=dict)   # deployment -> its, oldest first
    next: dict[str, int] = field(default_factory=dict)            # deployment -> the next ordinal to use
    cordoned: list[str] = field(default_factory=list)             # nodes marked unschedulable
    # Deployments whose ReplicaSets' replicas are taken as they are, not recorded: lab.rollout's step
    # sets them (else a Deployment with no old pods left has its replicas in its newest ReplicaSet).
    stepped: frozenset[str] = frozenset()
    # The pods available now (lab.rollout.available_pods), asked only when a ReplicaSet scales down,
    # so it deletes the unavailable first; not recorded. None: every pod counts as available.
    available: Callable[[], set[str]] | None = None

    @property
    def ordinals(self) -> dict[str, list[int]]:
        """Each Deployment's pods by ordinal, every ReplicaSet's."""
        return {d: sorted(o for r in sets for o in r.ordinals) for d, sets in self.replicasets.items()}

    def record(self) -> dict:
        return {"bindings": self.bindings, "next": self.next, "cordoned": self.cordoned,
                "replicasets": {d: [rsets.record(r) for r in sets] for d, sets in self.replicasets.items()}}

    @classmethod
    def from_record(cls, r: dict | None) -> "Scheduling | None":
        if not r:
            return None
        if "replicasets" in r:
            sets = {d: rsets.from_record(d, raw) for d, raw in r["replicasets"].items()}
        else:     # a record from before ReplicaSets: each Deployment's ordinals, of one ReplicaSet
            sets = {d: [rsets.legacy(d, [int(x) for x in v])] for d, v in r["ordinals"].items()}
        return cls(dict(r["bindings"]), sets, {k: int(v) for k, v in r["next"].items()},
                   [str(n) for n in r.get("cordoned", [])])

    def copy(self, **changes: object) -> "Scheduling":
        fresh = Scheduling(dict(self.bindings), {k: list(v) for k, v in self.replicasets.items()}, dict(self.next),
                           list(self.cordoned), self.stepped, self.available)
        return replace(fresh, **changes)

    def with_cordon(self, node: str, cordoned: bool) -> "Scheduling":
        nodes = [n for n in self.cordoned if n != node] + ([node] if cordoned else [])
        return self.copy(cordoned=sorted(nodes))


def unschedulable(nodes: list[str], allowed: list[str], cordoned: set[str]) -> str:
    """The scheduler's reason when no node may take a pod (its FailedScheduling event), and podlab's way out."""
    reasons = [f"{len([n for n in allowed if n in cordoned])} node(s) were unschedulable"]
    if len(allowed) < len(nodes):
        reasons.append(f"{len(nodes) - len(allowed)} node(s) didn't match Pod's node affinity/selector")
    return (f"0/{len(nodes)} nodes are available: {', '.join(reasons)}; podlab keeps no pod Pending: "
            "'podlab uncordon NODE' or add a node, and apply again")


def _forget_gone_nodes(lab: str, bound: Scheduling, known: set[str]) -> Scheduling:
    """The placement without the pods of nodes that left: bare pods unbound (placed again), a
    Deployment's pods gone from its ReplicaSets' ordinals (they get new ones)."""
    gone = {pod for pod, node in bound.bindings.items() if node not in known}
    if not gone:
        return bound
    sets = {}
    for deployment, have in bound.replicasets.items():
        sets[deployment] = []
        for r in have:
            r = rsets.resolved(lab, r)
            ordinals = sorted(r.ordinals)
            names = naming.deployment_pod_names(lab, deployment, r.template_hash, len(ordinals), ordinals)
            sets[deployment].append(replace(r, ordinals=tuple(o for o, n in zip(ordinals, names) if n not in gone)))
    return Scheduling({k: v for k, v in bound.bindings.items() if k not in gone}, sets, dict(bound.next),
                      [n for n in bound.cordoned if n in known], bound.stepped, bound.available)


@dataclass
class Placed:
    """What placement makes of the document: the pods on their nodes, the Deployments and their ReplicaSets."""
    pods: list[tuple[Pod, YamlPath]]
    deployments: list[Deployment]
    replicasets: list[ReplicaSet]


def place(checker: Checker, lab: str, nodes: list[str], pods: list[PodDraft],
          deployments: list[DeploymentDraft], bound: Scheduling | None = None) -> Placed:
    """Expand deployments and put every pod on a node.

    Fresh (`bound` None): pods without a node and replicas go round-robin over their allowed
    nodes with one counter shared by the whole file, so load stays even and the result is
    deterministic. A running lab's (`bound`): see the module's docstring.
    """
    placed: list[tuple[Pod, YamlPath]] = []
    known = set(nodes)
    turn = 0
    load = {n: 0 for n in nodes}
    if bound is not None:
        bound = _forget_gone_nodes(lab, bound, known)
        for name, node in bound.bindings.items():
            if node in load:
                load[node] += 1
    cordoned = set(bound.cordoned) if bound is not None else set()

    def schedule(name: str, allowed: list[str], path: YamlPath, peers: Counter[str] | None = None) -> str:
        """`peers`: where the pod's ReplicaSet has its pods so far (a bare pod has none)."""
        nonlocal turn
        if bound is None:
            node, turn = allowed[turn % len(allowed)], turn + 1
            return node
        if bound.bindings.get(name) in allowed:
            return bound.bindings[name]
        open_nodes = [n for n in allowed if n not in cordoned]
        if not open_nodes:
            checker.add(path, f"pod {name}: " + unschedulable(nodes, allowed, cordoned))
            return allowed[0]
        # The scheduler's default scoring: PodTopologySpread's system default (weight 2) counts the
        # pods that match the pod's Services and its ReplicaSet's selector, pod-template-hash
        # included, so a ReplicaSet's pods spread over the nodes; NodeResourcesFit's LeastAllocated
        # (weight 1; pods without requests count as 100m and 200Mi) then prefers the emptier node.
        peers = peers if peers is not None else Counter()
        node = min(open_nodes, key=lambda n: (peers[n], load[n]))
        load[node] += 1
        peers[node] += 1
        return node

    for draft in pods:
        if draft.node is None:
            node = schedule(draft.name, nodes, draft.path)
        else:
            node = draft.node
            if node not in known:
                _unknown_node(checker, draft.path + ("node",), node, nodes)
        placed.append((_pod(draft.name, node, draft.workload, None), draft.path))
    out_deployments: list[Deployment] = []
    out_sets: list[ReplicaSet] = []
    for deployment in deployments:
        if deployment.nodes is not None:
            for index, name in enumerate(deployment.nodes):
                if name not in known:
                    _unknown_node(checker, deployment.path + ("nodes", index), name, nodes)
        recorded = bound.replicasets.get(deployment.name) if bound is not None else None
        sets = rsets.replicasets(lab, deployment, recorded,
                                 as_given=bound is not None and deployment.name in bound.stepped)
        current = sets[-1]
        spec = deployment.spec
        out_deployments.append(Deployment(deployment.name, deployment.workload.namespace, deployment.replicas,
                                          current.template_hash, spec.strategy, spec.min_ready_seconds,
                                          spec.progress_deadline_seconds, spec.revision_history_limit))
        counter = _first_free(bound, deployment.name, sets)
        for rs in sets:
            workload, restriction = (deployment.workload, deployment.nodes) if rs is current \
                else _template(rs, deployment)
            allowed = nodes if restriction is None else [n for n in nodes if n in set(restriction)]
            # Where its pods are matters only to a ReplicaSet that grows (spreading) or shrinks
            # (which pod goes): a 1000-pod one's names cost ~4 ms to make.
            name_of = _names(lab, deployment.name, rs) if bound is not None and len(rs.ordinals) != rs.replicas else {}
            node_of = _nodes(bound, name_of, set(allowed))
            have = _kept(lab, deployment.name, bound, sets, rs, name_of, node_of) if allowed else []
            ordinals = have + list(range(counter, counter + rs.replicas - len(have))) if allowed else []
            counter += max(0, len(ordinals) - len(have))
            labels = {**workload.labels, "pod-template-hash": rs.template_hash}
            labelled = replace(workload, labels=labels)
            names = naming.deployment_pod_names(lab, deployment.name, rs.template_hash, len(ordinals), ordinals)
            peers = Counter(node_of[o] for o in have if o in node_of)
            for ordinal, name in zip(ordinals, names):
                placed.append((_pod(name, schedule(name, allowed, deployment.path, peers), labelled, deployment.name,
                                    ordinal), deployment.path))
            out_sets.append(replace(rs, ordinals=tuple(ordinals)))
    return Placed(placed, out_deployments, out_sets)


def _names(lab: str, deployment: str, rs: ReplicaSet) -> dict[int, str]:
    """A ReplicaSet's pods' names, by ordinal."""
    ordinals = sorted(rs.ordinals)
    return dict(zip(ordinals, naming.deployment_pod_names(lab, deployment, rs.template_hash, len(ordinals), ordinals)))


def _nodes(bound: Scheduling | None, name_of: dict[int, str], open_to: set[str]) -> dict[int, str]:
    """The nodes among `open_to` that these pods (by ordinal) are bound to."""
    if bound is None:
        return {}
    return {o: node for o, n in name_of.items() if (node := bound.bindings.get(n)) in open_to}


def _kept(lab: str, deployment: str, bound: Scheduling | None, sets: list[ReplicaSet], rs: ReplicaSet,
          name_of: dict[int, str], node_of: dict[int, str]) -> list[int]:
    """The ordinals a ReplicaSet keeps, sorted: scaled down, it deletes in the controller's order
    (rsets.deletion_order, as a rollout's steps do), so an unavailable pod goes first, then one of a
    node where the Deployment (`sets`: all its ReplicaSets) is doubled up."""
    if bound is None or len(rs.ordinals) <= rs.replicas:
        return sorted(rs.ordinals)[:rs.replicas]
    related = [bound.bindings[n] for r in sets for n in (name_of if r is rs else _names(lab, deployment, r)).values()
               if n in bound.bindings]
    available = bound.available() if bound.available is not None else None
    order = rsets.deletion_order(rs.ordinals, node_of, related,
                                 None if available is None else {o for o, n in name_of.items() if n in available})
    return sorted(order[len(rs.ordinals) - rs.replicas:])


def _template(rs: ReplicaSet, deployment: DeploymentDraft) -> tuple[Workload, list[str] | None]:
    """An older ReplicaSet's pod template, from the record (one adopted from an older record: the
    Deployment's own)."""
    if rs.template is rsets.ADOPTED:
        return deployment.workload, deployment.nodes
    return recorded_template(json.loads(rs.template), deployment.name)


def _first_free(bound: Scheduling | None, deployment: str, sets: list[ReplicaSet]) -> int:
    """The next ordinal a Deployment's new pod gets: past every one it has had."""
    used = max((o for r in sets for o in r.ordinals), default=-1) + 1
    return max(bound.next.get(deployment, 0) if bound is not None else 0, used)


def replica(lab: str, deployment: str, template_hash: str, nodes: list[str], placed: list[Pod],
            bound: Scheduling | None) -> tuple[str, str | None, int, str]:
    """The name, node, ordinal and template hash of the one pod of a Deployment podlab runs itself
    (the cluster DNS): fresh, ordinal 0 on the first node; in a running lab it stays where it is
    (under the hash its record names it with), and once its node left (or it was evicted) a new one
    goes to the schedulable node with the fewest pods. Node None: no node may take it
    (unschedulable() says why)."""
    if bound is not None:
        bound = _forget_gone_nodes(lab, bound, set(nodes))
    recorded = [rsets.resolved(lab, r) for r in bound.replicasets.get(deployment, [])] if bound is not None else []
    if recorded:
        template_hash = recorded[-1].template_hash
    have = sorted(o for r in recorded for o in r.ordinals)[:1]
    ordinal = have[0] if have else _first_free(bound, deployment, recorded)
    name = naming.deployment_pod_names(lab, deployment, template_hash, 1, [ordinal])[0]
    if bound is None:
        return name, nodes[0], ordinal, template_hash
    if bound.bindings.get(name) in nodes:
        return name, bound.bindings[name], ordinal, template_hash
    open_nodes = [n for n in nodes if n not in set(bound.cordoned)]
    load = {n: 0 for n in open_nodes}
    for pod in placed:
        if pod.node in load:
            load[pod.node] += 1
    return name, min(open_nodes, key=lambda n: load[n]) if open_nodes else None, ordinal, template_hash


def _pod(name: str, node: str, workload: Workload, deployment: str | None, ordinal: int | None = None) -> Pod:
    return Pod(name=name, node=node, containers=workload.containers, namespace=workload.namespace,
               host_network=workload.host_network, labels=tuple(sorted(workload.labels.items())),
               deployment=deployment, ordinal=ordinal, init_containers=workload.init_containers,
               volumes=workload.volumes, annotations=tuple(sorted((workload.annotations or {}).items())))


def scheduling_of(pods: tuple[Pod, ...] | list[Pod], previous: Scheduling | None = None,
                  nodes: list[str] | None = None, replicasets: tuple[ReplicaSet, ...] | list[ReplicaSet] = ()
                  ) -> Scheduling:
    """The placement a lab records once built or changed: where each pod is, each Deployment's
    ReplicaSets (`replicasets`, as placement made them; for a Deployment not among them, one per
    template hash its pods have), which of `nodes` are cordoned."""
    sets: dict[str, list[ReplicaSet]] = {}
    for r in replicasets:
        sets.setdefault(r.deployment, []).append(r)
    derived: dict[tuple[str, str], list[Pod]] = {}
    for pod in pods:
        if pod.deployment is not None and pod.ordinal is not None and pod.deployment not in sets:
            derived.setdefault((pod.deployment, pod.template_hash or ""), []).append(pod)
    for (deployment, template_hash), have in derived.items():
        name = naming.replicaset_name(deployment, template_hash)
        sets.setdefault(deployment, []).append(ReplicaSet(name, deployment, have[0].namespace, template_hash,
                                                          len(have), 1, tuple(p.ordinal for p in have), None))
    nxt = dict(previous.next) if previous else {}
    for deployment, have in sets.items():
        used = [o for r in have for o in r.ordinals]
        if used:
            nxt[deployment] = max(nxt.get(deployment, 0), max(used) + 1)
    cordoned = [n for n in previous.cordoned if nodes is None or n in nodes] if previous else []
    return Scheduling({p.name: p.node for p in pods}, sets, nxt, cordoned)


def without(bound: Scheduling, pods: set[str], all_pods: tuple[Pod, ...]) -> Scheduling:
    """The placement with these pods gone (a Deployment's pod deleted is then replaced by a new one)."""
    gone = {(p.deployment, p.ordinal) for p in all_pods if p.name in pods and p.deployment is not None}
    return Scheduling({k: v for k, v in bound.bindings.items() if k not in pods},
                      {d: [replace(r, ordinals=tuple(o for o in r.ordinals if (d, o) not in gone)) for r in sets]
                       for d, sets in bound.replicasets.items()},
                      dict(bound.next), list(bound.cordoned), bound.stepped, bound.available)
