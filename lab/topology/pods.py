"""The pods: and deployments: sections, and the pod template they share (containers, init containers,
volumes, namespace, labels, annotations)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from lab import naming
from lab.errors import PodlabError
from lab.model import Container, Volume
from lab.topology.checker import Checker, YamlPath
from lab.topology.containers import pod_containers, pod_init_containers
from lab.topology.schema import DEPLOYMENT_FIELDS, DEPLOYMENT_SCHEMA, LABEL_NAME, POD_SCHEMA, TEMPLATE_SCHEMA, Field
from lab.topology.strategy import DeploymentSpec, deployment_spec
from lab.topology.volumes import pod_volumes
from lab.topology.wording import describe, quote_hint, show


@dataclass
class Workload:
    """What pods and deployments share: the pod template."""
    containers: tuple[Container, ...]
    namespace: str
    host_network: bool
    labels: dict[str, str]
    init_containers: tuple[Container, ...] = ()
    volumes: tuple[Volume, ...] = ()
    annotations: dict[str, str] | None = None


@dataclass
class PodDraft:
    """A pod as written: its node, if the file names one, is checked when it is placed."""
    name: str
    path: YamlPath
    node: str | None
    workload: Workload


@dataclass
class DeploymentDraft:
    name: str
    path: YamlPath
    replicas: int
    nodes: list[str] | None        # placement restriction; None = every node
    workload: Workload
    template: dict[str, Any] = field(default_factory=dict)   # the pod template's keys as written, for the record
    spec: DeploymentSpec = field(default_factory=DeploymentSpec)

    @property
    def canonical(self) -> str:
        """Its pod template in canonical form: what its pod-template-hash is made from."""
        return canonical_template(self.workload, self.nodes)


def canonical_template(workload: Workload, nodes: list[str] | None) -> str:
    """A pod template as one string that any change of it changes, and nothing else does: the
    template as read and defaulted (image: shorthand and a containers: list of the same container
    are the same template), as Kubernetes hashes the PodTemplateSpec the API server stored."""
    return json.dumps({"template": asdict(workload), "nodes": nodes}, sort_keys=True, separators=(",", ":"))


def recorded_template(raw: dict[str, Any], deployment: str) -> tuple[Workload, list[str] | None]:
    """An older ReplicaSet's pod template, as the lab's record keeps it (the Deployment's document
    now has another): read as it was when it was the Deployment's."""
    checker = Checker(f"the record's ReplicaSet of {deployment}")
    spec = checker.fields(("template",), raw, TEMPLATE_SCHEMA, "a pod template")
    workload = _workload(checker, ("template",), spec or {}, "a deployment")
    workload.labels = workload.labels or {"app": deployment}
    nodes = _placement_nodes(checker, ("template", "nodes"), spec["nodes"]) if spec and "nodes" in spec else None
    if checker.problems:
        raise PodlabError(f"{checker.error()}; 'sudo podlab down' the lab and up again")
    return workload, nodes


def parse_labels(checker: Checker, path: YamlPath, raw: dict[str, Any]) -> dict[str, str]:
    """Kubernetes labels (a pod's labels:, a Service's selector:), as valid keys and string values."""
    labels = {}
    for key, value in raw.items():
        at = path + (key,)
        prefix, _, name = key.rpartition("/")
        bad_prefix = prefix and naming.kube_name_problem(prefix, "prefix")
        if not (LABEL_NAME.fullmatch(name) and len(name) <= 63) or bad_prefix:
            checker.add(at, f"label key {show(key)} is not valid: an optional DNS prefix and '/', then at most 63 "
                            "letters, digits, '-', '_' or '.', starting and ending with a letter or digit (e.g. app)")
        if not isinstance(value, str):
            checker.add(at, f"label values are strings, got {describe(value)}{quote_hint(value, key)}")
            continue
        if value and not (LABEL_NAME.fullmatch(value) and len(value) <= 63):
            checker.add(at, f"label value {show(value)} is not valid: at most 63 letters, digits, '-', '_' or '.', "
                            "starting and ending with a letter or digit, or empty")
        labels[key] = value
    return labels


def _workload(checker: Checker, path: YamlPath, spec: dict[str, Any], what: str) -> Workload:
    volumes = pod_volumes(checker, path + ("volumes",), spec.get("volumes", []))
    names = {v.name for v in volumes}
    first_use: dict[str, YamlPath] = {}
    init = pod_init_containers(checker, path, spec.get("initContainers", []), names, first_use)
    containers = pod_containers(checker, path, spec, what, names, first_use)
    namespace = spec.get("namespace", "default")
    problem = naming.dns_label_problem(namespace, "namespace")
    if problem:
        checker.add(path + ("namespace",), problem)
    labels = parse_labels(checker, path + ("labels",), spec.get("labels", {}))
    annotations = parse_annotations(checker, path + ("annotations",), spec.get("annotations", {}))
    return Workload(containers, namespace, spec.get("hostNetwork", False), labels, init, volumes, annotations)


def parse_annotations(checker: Checker, path: YamlPath, raw: dict[str, Any]) -> dict[str, str]:
    """metadata.annotations: keys as labels' keys, any string values (kubernetes.io/ingress-bandwidth: 10M,
    kubectl.kubernetes.io/restartedAt)."""
    out = {}
    for key, value in raw.items():
        prefix, _, name = key.rpartition("/")
        if not (LABEL_NAME.fullmatch(name) and len(name) <= 63) or (prefix and naming.kube_name_problem(prefix, "prefix")):
            checker.add(path + (key,), f"annotation key {show(key)} is not valid: an optional DNS prefix and '/', then "
                                       "at most 63 letters, digits, '-', '_' or '.'")
        elif not isinstance(value, str):
            checker.add(path + (key,), f"annotation values are strings, got {describe(value)}{quote_hint(value, key)}")
        else:
            out[key] = value
    return out


def _entries(checker: Checker, key: str, raw: list[Any], schema: dict[str, Field],
             what: str) -> Iterator[tuple[YamlPath, dict[str, Any], Workload]]:
    """Each entry of pods: or deployments: with a usable mapping, and the pod template it describes."""
    for index, item in enumerate(raw):
        path: YamlPath = (key, index)
        spec = checker.fields(path, item, schema, what)
        if spec is not None:
            yield path, spec, _workload(checker, path, spec, what)


def pod_drafts(checker: Checker, raw: list[Any]) -> list[PodDraft]:
    """The pods: section, not yet placed on nodes."""
    drafts = []
    for path, spec, workload in _entries(checker, "pods", raw, POD_SCHEMA, "a pod"):
        if "name" not in spec:
            continue
        problem = naming.kube_name_problem(spec["name"], "pod name")
        if problem:
            checker.add(path + ("name",), problem)
        drafts.append(PodDraft(spec["name"], path, spec.get("node"), workload))
    return drafts


def deployment_drafts(checker: Checker, raw: list[Any]) -> list[DeploymentDraft]:
    """The deployments: section, not yet expanded into pods (lab.topology.placement does that)."""
    drafts: list[DeploymentDraft] = []
    first_use: dict[str, YamlPath] = {}
    for path, spec, workload in _entries(checker, "deployments", raw, DEPLOYMENT_SCHEMA, "a deployment"):
        replicas = spec.get("replicas", 1)
        if replicas < 0:
            checker.add(path + ("replicas",), f"replicas {replicas} is negative; use 0 or more")
            replicas = 0
        nodes = _placement_nodes(checker, path + ("nodes",), spec["nodes"]) if "nodes" in spec else None
        if "name" not in spec:
            continue
        name = spec["name"]
        problem = naming.kube_name_problem(name, "deployment name")
        if problem:
            checker.add(path + ("name",), problem)
        if name in first_use:
            checker.add(path + ("name",), f"deployment name {show(name)} is already used by "
                                          f"{checker.where(first_use[name])}; give each deployment its own name")
            continue
        first_use[name] = path + ("name",)
        workload.labels = workload.labels or {"app": name}
        template = {k: v for k, v in spec.items() if k not in DEPLOYMENT_FIELDS}
        drafts.append(DeploymentDraft(name, path, replicas, nodes, workload, template,
                                      deployment_spec(checker, path, spec)))
    return drafts


def _placement_nodes(checker: Checker, path: YamlPath, raw: list[Any]) -> list[str]:
    names = []
    for index, item in enumerate(raw):
        if isinstance(item, str):
            names.append(item)
        else:
            checker.add(path + (index,), f"each entry is a node name, got {describe(item)}")
    if not raw:
        checker.add(path, "nodes: [] leaves nowhere to run the replicas; list node names, "
                          "or remove it to use every node")
    return names
