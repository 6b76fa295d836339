"""Deployments expanded into named pods, and every pod put on a node."""
from __future__ import annotations

from lab import naming
from lab.model import Pod
from lab.topology.checker import Checker, YamlPath
from lab.topology.pods import DeploymentDraft, PodDraft, Workload
from lab.topology.wording import did_you_mean, show


def _unknown_node(checker: Checker, path: YamlPath, name: str, nodes: list[str]) -> None:
    hint = did_you_mean(name, nodes)
    shown = ", ".join(nodes[:10]) + (", ..." if len(nodes) > 10 else "")
    checker.add(path, f"no node named {show(name)}; {hint}the nodes are: {shown}")


def place(checker: Checker, lab: str, nodes: list[str], pods: list[PodDraft],
          deployments: list[DeploymentDraft]) -> list[tuple[Pod, YamlPath]]:
    """Expand deployments and put every pod on a node.

    Pods without a node and replicas go round-robin over their allowed nodes with one
    counter shared by the whole file, so load stays even and the result is deterministic.
    """
    placed: list[tuple[Pod, YamlPath]] = []
    known = set(nodes)
    turn = 0
    for draft in pods:
        if draft.node is None:
            node, turn = nodes[turn % len(nodes)], turn + 1
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
                            deployment.workload.host_network, labels)
        for name in naming.deployment_pod_names(lab, deployment.name, deployment.replicas):
            node, turn = allowed[turn % len(allowed)], turn + 1
            placed.append((_pod(name, node, workload, deployment.name), deployment.path))
    return placed


def _pod(name: str, node: str, workload: Workload, deployment: str | None) -> Pod:
    return Pod(name=name, node=node, containers=workload.containers, namespace=workload.namespace,
               host_network=workload.host_network, labels=tuple(sorted(workload.labels.items())),
               deployment=deployment)
