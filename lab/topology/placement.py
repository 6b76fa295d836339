"""Deployments expanded into named pods, and every pod put on a node.

A fresh lab goes round-robin. A running lab's pods are bound (Scheduling: the node each pod runs
on, and which of a Deployment's pods exist, by ordinal): pods keep their nodes, a Deployment
scaled down loses its newest pods, one scaled up or missing a pod gets pods of new ordinals (new
names), each put on the allowed node with the fewest pods, as the scheduler's spreading does.
A node that left takes its pods with it: its Deployments' pods are replaced by new ones (new
ordinals) elsewhere, as the ReplicaSet controller recreates them once the pod GC deleted them; a
bare pod still in the document is made again on another node. A cordoned node (`podlab drain`,
`cordon`) keeps its pods but takes no new one, as the scheduler skips an unschedulable node.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from lab import naming
from lab.model import Pod
from lab.topology.checker import Checker, YamlPath
from lab.topology.pods import DeploymentDraft, PodDraft, Workload
from lab.topology.wording import did_you_mean, show


def _unknown_node(checker: Checker, path: YamlPath, name: str, nodes: list[str]) -> None:
    hint = did_you_mean(name, nodes)
    shown = ", ".join(nodes[:10]) + (", ..." if len(nodes) > 10 else "")
    checker.add(path, f"no node named {show(name)}; {hint}the nodes are: {shown}")


@dataclass
class Scheduling:
    """A running lab's placement, kept in its record: bound pods and each Deployment's ordinals."""
    bindings: dict[str, str] = field(default_factory=dict)        # pod -> node
    ordinals: dict[str, list[int]] = field(default_factory=dict)  # deployment -> its pods' ordinals
    next: dict[str, int] = field(default_factory=dict)            # deployment -> the next ordinal to use
    cordoned: list[str] = field(default_factory=list)             # nodes marked unschedulable

    def record(self) -> dict:
        return {"bindings": self.bindings, "ordinals": self.ordinals, "next": self.next, "cordoned": self.cordoned}

    @classmethod
    def from_record(cls, r: dict | None) -> "Scheduling | None":
        if not r:
            return None
        return cls(dict(r["bindings"]), {k: [int(x) for x in v] for k, v in r["ordinals"].items()},
                   {k: int(v) for k, v in r["next"].items()}, [str(n) for n in r.get("cordoned", [])])

    def with_cordon(self, node: str, cordoned: bool) -> "Scheduling":
        nodes = [n for n in self.cordoned if n != node] + ([node] if cordoned else [])
        return Scheduling(dict(self.bindings), {k: list(v) for k, v in self.ordinals.items()}, dict(self.next),
                          sorted(nodes))


def unschedulable(nodes: list[str], allowed: list[str], cordoned: set[str]) -> str:
    """The scheduler's reason when no node may take a pod (its FailedScheduling event), and podlab's way out."""
    reasons = [f"{len([n for n in allowed if n in cordoned])} node(s) were unschedulable"]
    if len(allowed) < len(nodes):
        reasons.append(f"{len(nodes) - len(allowed)} node(s) didn't match Pod's node affinity/selector")
    return (f"0/{len(nodes)} nodes are available: {', '.join(reasons)}; podlab keeps no pod Pending: "
            "'podlab uncordon NODE' or add a node, and apply again")


def _forget_gone_nodes(lab: str, bound: Scheduling, known: set[str]) -> Scheduling:
    """The placement without the pods of nodes that left: bare pods unbound (placed again), a
    Deployment's pods gone from its ordinals (it gets new ones)."""
    gone = {pod for pod, node in bound.bindings.items() if node not in known}
    if not gone:
        return bound
    ordinals = {}
    for deployment, have in bound.ordinals.items():
        have = sorted(have)
        names = naming.deployment_pod_names(lab, deployment, len(have), have)
        ordinals[deployment] = [o for o, name in zip(have, names) if name not in gone]
    return Scheduling({k: v for k, v in bound.bindings.items() if k not in gone}, ordinals, dict(bound.next),
                      [n for n in bound.cordoned if n in known])


def place(checker: Checker, lab: str, nodes: list[str], pods: list[PodDraft],
          deployments: list[DeploymentDraft], bound: Scheduling | None = None) -> list[tuple[Pod, YamlPath]]:
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

    def schedule(name: str, allowed: list[str], path: YamlPath) -> str:
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
        node = min(open_nodes, key=lambda n: load[n])
        load[node] += 1
        return node

    for draft in pods:
        if draft.node is None:
            node = schedule(draft.name, nodes, draft.path)
        else:
            node = draft.node
            if node not in known:
                _unknown_node(checker, draft.path + ("node",), node, nodes)
        placed.append((_pod(draft.name, node, draft.workload, None), draft.path))
    for deployment in deployments:
        allowed = nodes
        if deployment.nodes is not None:
            for index, name in enumerate(deployment.nodes):
                if name not in known:
                    _unknown_node(checker, deployment.path + ("nodes", index), name, nodes)
            allowed = [n for n in nodes if n in set(deployment.nodes)]
        if not allowed:
            continue
        template_hash = naming.pod_template_hash(lab, deployment.name)
        labels = {**deployment.workload.labels, "pod-template-hash": template_hash}
        workload = replace(deployment.workload, labels=labels)
        ordinals = _ordinals(bound, deployment.name, deployment.replicas)
        for ordinal, name in zip(ordinals, naming.deployment_pod_names(lab, deployment.name, deployment.replicas,
                                                                         ordinals)):
            placed.append((_pod(name, schedule(name, allowed, deployment.path), workload, deployment.name, ordinal),
                           deployment.path))
    return placed


def replica(lab: str, deployment: str, nodes: list[str], placed: list[Pod],
            bound: Scheduling | None) -> tuple[str, str | None, int]:
    """The name, node and ordinal of the one pod of a Deployment podlab runs itself (the cluster DNS):
    fresh, ordinal 0 on the first node; in a running lab it stays where it is, and once its node left
    (or it was evicted) a new one goes to the schedulable node with the fewest pods. Node None: no
    node may take it (unschedulable() says why)."""
    if bound is not None:
        bound = _forget_gone_nodes(lab, bound, set(nodes))
    ordinal = _ordinals(bound, deployment, 1)[0]
    name = naming.deployment_pod_names(lab, deployment, 1, [ordinal])[0]
    if bound is None:
        return name, nodes[0], ordinal
    if bound.bindings.get(name) in nodes:
        return name, bound.bindings[name], ordinal
    open_nodes = [n for n in nodes if n not in set(bound.cordoned)]
    load = {n: 0 for n in open_nodes}
    for pod in placed:
        if pod.node in load:
            load[pod.node] += 1
    return name, min(open_nodes, key=lambda n: load[n]) if open_nodes else None, ordinal


def _ordinals(bound: Scheduling | None, deployment: str, replicas: int) -> list[int]:
    """Which of a Deployment's pods exist: 0 .. replicas-1 when fresh; else those it has, the newest
    dropped when scaled down, new ordinals added when it is short (scaled up, or a pod deleted)."""
    if bound is None or deployment not in bound.ordinals:
        return list(range(replicas))
    have = sorted(bound.ordinals[deployment])[:replicas]
    start = max(bound.next.get(deployment, 0), max(have, default=-1) + 1)
    return have + list(range(start, start + replicas - len(have)))


def _pod(name: str, node: str, workload: Workload, deployment: str | None, ordinal: int | None = None) -> Pod:
    return Pod(name=name, node=node, containers=workload.containers, namespace=workload.namespace,
               host_network=workload.host_network, labels=tuple(sorted(workload.labels.items())),
               deployment=deployment, ordinal=ordinal, init_containers=workload.init_containers,
               volumes=workload.volumes, annotations=tuple(sorted((workload.annotations or {}).items())))


def scheduling_of(pods: tuple[Pod, ...] | list[Pod], previous: Scheduling | None = None,
                  nodes: list[str] | None = None) -> Scheduling:
    """The placement a lab records once built or changed: where each pod is, which ordinals exist,
    which of `nodes` are cordoned."""
    ordinals: dict[str, list[int]] = {}
    for pod in pods:
        if pod.deployment is not None and pod.ordinal is not None:
            ordinals.setdefault(pod.deployment, []).append(pod.ordinal)
    nxt = dict(previous.next) if previous else {}
    for deployment, have in ordinals.items():
        nxt[deployment] = max(nxt.get(deployment, 0), max(have) + 1)
    cordoned = [n for n in previous.cordoned if nodes is None or n in nodes] if previous else []
    return Scheduling({p.name: p.node for p in pods}, ordinals, nxt, cordoned)


def without(bound: Scheduling, pods: set[str], all_pods: tuple[Pod, ...]) -> Scheduling:
    """The placement with these pods gone (a Deployment's pod deleted is then replaced by a new one)."""
    gone = {(p.deployment, p.ordinal) for p in all_pods if p.name in pods and p.deployment is not None}
    return Scheduling({k: v for k, v in bound.bindings.items() if k not in pods},
                      {d: [o for o in ords if (d, o) not in gone] for d, ords in bound.ordinals.items()},
                      dict(bound.next), list(bound.cordoned))
