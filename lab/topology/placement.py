"""Deployments expanded into named pods, and every pod put on a node.

A fresh lab goes round-robin. A running lab's pods are bound (Scheduling: the node each pod runs
on, and which of a Deployment's pods exist, by ordinal): pods keep their nodes, a Deployment
scaled down loses its newest pods, one scaled up or missing a pod gets pods of new ordinals (new
names), each put on the allowed node with the fewest pods, as the scheduler's spreading does.
"""
from __future__ import annotations

from dataclasses import dataclass, field

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

    def record(self) -> dict:
        return {"bindings": self.bindings, "ordinals": self.ordinals, "next": self.next}

    @classmethod
    def from_record(cls, r: dict | None) -> "Scheduling | None":
        if not r:
            return None
        return cls(dict(r["bindings"]), {k: [int(x) for x in v] for k, v in r["ordinals"].items()},
                   {k: int(v) for k, v in r["next"].items()})


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
        for name, node in bound.bindings.items():
            if node in load:
                load[node] += 1

    def schedule(name: str, allowed: list[str]) -> str:
        nonlocal turn
        if bound is None:
            node, turn = allowed[turn % len(allowed)], turn + 1
            return node
        if bound.bindings.get(name) in allowed:
            return bound.bindings[name]
        node = min(allowed, key=lambda n: load[n])
        load[node] += 1
        return node

    for draft in pods:
        if draft.node is None:
            node = schedule(draft.name, nodes)
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
        workload = Workload(deployment.workload.containers, deployment.workload.namespace,
                            deployment.workload.host_network, labels, deployment.workload.annotations)
        ordinals = _ordinals(bound, deployment.name, deployment.replicas)
        for ordinal, name in zip(ordinals, naming.deployment_pod_names(lab, deployment.name, deployment.replicas,
                                                                         ordinals)):
            placed.append((_pod(name, schedule(name, allowed), workload, deployment.name, ordinal), deployment.path))
    return placed


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
               deployment=deployment, ordinal=ordinal,
               annotations=tuple(sorted((workload.annotations or {}).items())))


def scheduling_of(pods: tuple[Pod, ...] | list[Pod], previous: Scheduling | None = None) -> Scheduling:
    """The placement a lab records once built or changed: where each pod is, which ordinals exist."""
    ordinals: dict[str, list[int]] = {}
    for pod in pods:
        if pod.deployment is not None and pod.ordinal is not None:
            ordinals.setdefault(pod.deployment, []).append(pod.ordinal)
    nxt = dict(previous.next) if previous else {}
    for deployment, have in ordinals.items():
        nxt[deployment] = max(nxt.get(deployment, 0), max(have) + 1)
    return Scheduling({p.name: p.node for p in pods}, ordinals, nxt)


def without(bound: Scheduling, pods: set[str], all_pods: tuple[Pod, ...]) -> Scheduling:
    """The placement with these pods gone (a Deployment's pod deleted is then replaced by a new one)."""
    gone = {(p.deployment, p.ordinal) for p in all_pods if p.name in pods and p.deployment is not None}
    return Scheduling({k: v for k, v in bound.bindings.items() if k not in pods},
                      {d: [o for o in ords if (d, o) not in gone] for d, ords in bound.ordinals.items()},
                      dict(bound.next))
