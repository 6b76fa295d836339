"""A Deployment's ReplicaSets in a running lab: which one its template asks for, how many pods each
has, and which older ones are kept, as the deployment controller keeps them.

The pod-template-hash comes from the pod template (lab.naming.pod_template_hash), so a Deployment
whose template changed finds no ReplicaSet of that hash: a new one is made with no pods (the next
revision), and the old ones keep theirs; lab.rollout then scales them step by step
(lab.rolling). A template changed back to an older one's takes that ReplicaSet up again (a
rollback: it gets the next revision). With no old ReplicaSet left that has pods, the Deployment's
replicas are its new ReplicaSet's: scaling needs no steps. Old ReplicaSets scaled to 0 are kept,
revisionHistoryLimit of them (10), with their templates.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import replace

from lab import naming
from lab.model import ReplicaSet
from lab.topology.pods import DeploymentDraft

ADOPTED = None   # a ReplicaSet the record keeps without its template: the Deployment's, whatever it is now


def replicasets(lab: str, deployment: DeploymentDraft, recorded: list[ReplicaSet] | None,
                as_given: bool = False) -> list[ReplicaSet]:
    """The Deployment's ReplicaSets, the oldest revision first; `recorded`: a running lab's, as its
    placement record holds them (None: a new lab, or a Deployment new to it). `as_given`: their
    replicas are a rollout's step (lab.rollout), kept as they are."""
    template_hash = naming.pod_template_hash(lab, deployment.canonical)
    template = json.dumps(deployment.template, sort_keys=True, separators=(",", ":"))
    namespace = deployment.workload.namespace
    name = naming.replicaset_name(deployment.name, template_hash)
    if not recorded:
        return [ReplicaSet(name, deployment.name, namespace, template_hash, deployment.replicas, 1, (), template)]
    recorded = [resolved(lab, r) for r in recorded]
    # The ReplicaSet of this template (Kubernetes compares templates, not hashes: one adopted from an
    # older record keeps the hash its pods are named with); else one whose template is not known.
    current = next((r for r in recorded if r.template_hash == template_hash), None) \
        or next((r for r in recorded if r.template == template), None) \
        or next((r for r in recorded if r.template is ADOPTED), None)
    others = [r for r in recorded if r is not current]
    rolling = as_given or any(r.replicas for r in others)
    newest = max(r.revision for r in recorded)
    if current is None:
        # A new template: its ReplicaSet starts empty while old pods run (the rollout scales it).
        current = ReplicaSet(name, deployment.name, namespace, template_hash, 0 if rolling else deployment.replicas,
                             newest + 1, (), template)
    else:
        current = replace(current, namespace=namespace, template=template,
                          replicas=current.replicas if rolling else deployment.replicas,
                          revision=current.revision if current.revision == newest else newest + 1)
    kept = [r for r in others if r.replicas]
    history = [r for r in others if not r.replicas][-deployment.spec.revision_history_limit:] \
        if deployment.spec.revision_history_limit else []
    return sorted([*history, *kept, current], key=lambda r: r.revision)


def deletion_order(ordinals: Iterable[int], node_of: Mapping[int, str], related_nodes: Iterable[str],
                   available: set[int] | None = None) -> list[int]:
    """A ReplicaSet's pods (by ordinal) in the order the ReplicaSet controller deletes them when scaled
    down (controller.ActivePodsWithRanks): a pod not on a node (Pending) first; then one not available
    (`available` None: every pod is); then a pod doubled up, on a node with more of the Deployment's
    pods (`related_nodes`: the node of each of its pods, every ReplicaSet's), so scaling down evens the
    spread out again; then the newest. The ready time and the restart count, which come next, podlab
    does not keep apart from availability."""
    on_node = Counter(related_nodes)
    return sorted(ordinals, key=lambda o: (o in node_of, available is None or o in available,
                                           -on_node[node_of.get(o)], -o))


def from_record(deployment: str, raw: list[dict]) -> list[ReplicaSet]:
    return [ReplicaSet(str(r["name"]), deployment, str(r.get("namespace", "default")), str(r["hash"]),
                       int(r["replicas"]), int(r["revision"]), tuple(int(x) for x in r["ordinals"]),
                       None if r.get("template") is None else json.dumps(r["template"], sort_keys=True,
                                                                          separators=(",", ":")))
            for r in raw]


def record(r: ReplicaSet) -> dict:
    out = {"name": r.name, "namespace": r.namespace, "hash": r.template_hash, "replicas": r.replicas,
           "revision": r.revision, "ordinals": list(r.ordinals)}
    if r.template is not None:
        out["template"] = json.loads(r.template)
    return out


def legacy(deployment: str, ordinals: list[int]) -> ReplicaSet:
    """A record from before ReplicaSets were recorded: one, whose hash came from the Deployment's
    name (resolved() works it out: the record does not say the lab's name), with whatever template
    the Deployment has (its pods were restarted in place when it changed): adopted as it is."""
    return ReplicaSet("", deployment, "default", "", len(ordinals), 1, tuple(sorted(ordinals)), ADOPTED)


def resolved(lab: str, r: ReplicaSet) -> ReplicaSet:
    """A ReplicaSet with its hash and name, worked out for one read from an older record (legacy)."""
    if r.template_hash:
        return r
    template_hash = naming.legacy_template_hash(lab, r.deployment)
    return replace(r, name=naming.replicaset_name(r.deployment, template_hash), template_hash=template_hash)
