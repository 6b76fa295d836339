"""Kubernetes manifests as podlab reads them: v1 Pod, apps/v1 Deployment, v1 Service and v1 Namespace,
as entries of a lab's topology document.

`kubectl apply -f nginx_pod.yaml` of seed 004 works verbatim. Fields that matter for the network
(name, namespace, labels, nodeName, hostNetwork, each container's image, command, args and ports; a
Deployment's replicas, selector and template; a Service's type, selector, ports and clusterIP) are
emulated; others podlab accepts and lists once as "not emulated". An unknown kind or field is an error
naming the document, its path and line, and nothing changes. Namespaces need no object in podlab (a
pod's namespace is a name): a Namespace document is accepted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from lab.errors import PodlabError

KINDS = {("v1", "Pod"), ("apps/v1", "Deployment"), ("v1", "Service"), ("v1", "Namespace")}
NOT_EMULATED = {"resources", "livenessProbe", "readinessProbe", "startupProbe", "securityContext",
                "imagePullPolicy", "env", "envFrom", "volumeMounts", "workingDir", "terminationMessagePath",
                "terminationMessagePolicy", "lifecycle", "stdin", "tty"}
POD_SPEC_NOT_EMULATED = {"restartPolicy", "imagePullSecrets", "serviceAccountName", "serviceAccount",
                         "terminationGracePeriodSeconds", "securityContext", "volumes", "tolerations",
                         "affinity", "priorityClassName", "schedulerName", "dnsPolicy", "enableServiceLinks",
                         "initContainers"}


@dataclass
class Manifests:
    pods: list[dict[str, Any]] = field(default_factory=list)          # topology pod entries
    deployments: list[dict[str, Any]] = field(default_factory=list)   # topology deployment entries
    services: list[dict[str, Any]] = field(default_factory=list)      # topology service entries
    namespaces: list[str] = field(default_factory=list)
    not_emulated: list[str] = field(default_factory=list)


def is_manifest(text: str) -> bool:
    """Kubernetes objects (documents with a kind), not a podlab topology document."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError:
        return False
    return bool(docs) and all(isinstance(d, dict) and "kind" in d for d in docs)


def read(text: str, source: str) -> Manifests:
    out = Manifests()
    try:
        nodes = list(yaml.compose_all(text))
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        raise PodlabError(f"{source}: not YAML: {e}") from None
    for i, (doc, node) in enumerate(zip(docs, nodes)):
        if doc is None:
            continue
        where = _Where(source, i, node)
        kind = (doc.get("apiVersion"), doc.get("kind"))
        if kind not in KINDS:
            known = ", ".join(f"{v} {k}" for v, k in sorted(KINDS))
            raise where.error(("kind",), f"{doc.get('apiVersion')}/{doc.get('kind')} is not a kind podlab applies "
                                         f"({known})")
        if kind[1] == "Pod":
            out.pods.append(_pod(doc, where, out.not_emulated))
        elif kind[1] == "Deployment":
            out.deployments.append(_deployment(doc, where, out.not_emulated))
        elif kind[1] == "Service":
            out.services.append(_service(doc, where, out.not_emulated))
        else:
            out.namespaces.append(_name(doc, where))
    return out


def _name(doc: dict, where: "_Where") -> str:
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        raise where.error(("metadata", "name"), f"a {doc.get('kind')} needs metadata.name")
    return meta["name"]


def _deployment(doc: dict, where: "_Where", not_emulated: list[str]) -> dict[str, Any]:
    name = _name(doc, where)
    meta, spec = doc["metadata"], doc.get("spec") or {}
    for key in spec:
        if key in ("strategy", "revisionHistoryLimit", "progressDeadlineSeconds", "minReadySeconds", "paused"):
            not_emulated.append(f"spec.{key}")
        elif key not in ("replicas", "selector", "template"):
            raise where.error(("spec", key), f"unknown field spec.{key}")
    template = spec.get("template")
    if not isinstance(template, dict):
        raise where.error(("spec", "template"), "a Deployment needs spec.template")
    labels = (template.get("metadata") or {}).get("labels") or {}
    wanted = ((spec.get("selector") or {}).get("matchLabels")) or {}
    if not wanted or any(labels.get(k) != v for k, v in wanted.items()):
        raise where.error(("spec", "selector"), "spec.selector.matchLabels must match the template's labels "
                                                "(the API server refuses it otherwise)")
    pod = _pod({"metadata": {"name": name, **{k: v for k, v in (template.get("metadata") or {}).items()
                                               if k in ("labels", "annotations")}},
                "spec": template.get("spec") or {}}, _Nested(where, ("spec", "template")), not_emulated)
    entry: dict[str, Any] = {"name": name, "replicas": int(spec.get("replicas", 1))}
    if meta.get("namespace"):
        entry["namespace"] = meta["namespace"]
    for key in ("labels", "annotations", "containers", "hostNetwork"):
        if key in pod:
            entry[key] = pod[key]
    if "node" in pod:
        entry["nodes"] = [pod["node"]]
    return entry


def _service(doc: dict, where: "_Where", not_emulated: list[str]) -> dict[str, Any]:
    name = _name(doc, where)
    meta, spec = doc["metadata"], doc.get("spec") or {}
    entry: dict[str, Any] = {"name": name}
    if meta.get("namespace"):
        entry["namespace"] = meta["namespace"]
    for key, value in spec.items():
        if key in ("type", "selector", "clusterIP"):
            entry[key] = value
        elif key == "ports":
            entry["ports"] = [{k: v for k, v in port.items() if k in ("name", "port", "targetPort", "protocol", "nodePort")}
                              for port in value or []]
        elif key in ("sessionAffinity", "externalTrafficPolicy", "internalTrafficPolicy", "ipFamilies",
                     "ipFamilyPolicy", "clusterIPs"):
            not_emulated.append(f"spec.{key}")
        else:
            raise where.error(("spec", key), f"unknown field spec.{key}")
    return entry


class _Where:
    def __init__(self, source: str, index: int, node: yaml.Node):
        self.source, self.index, self.node = source, index, node

    def line(self, path: tuple) -> int | None:
        node = self.node
        for key in path:
            if isinstance(node, yaml.MappingNode):
                node = next((v for k, v in node.value if k.value == key), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
                node = node.value[key]
            else:
                node = None
            if node is None:
                break
        return node.start_mark.line + 1 if node is not None else None

    def error(self, path: tuple, message: str) -> PodlabError:
        shown = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path).replace(".[", "[")
        line = self.line(path)
        return PodlabError(f"{self.source}: document {self.index + 1}, {shown}"
                           + (f" (line {line})" if line else "") + f": {message}; nothing was changed")


class _Nested:
    """A part of a document (a Deployment's pod template) addressed as a document of its own."""

    def __init__(self, outer: _Where, prefix: tuple):
        self.outer, self.prefix = outer, prefix

    def error(self, path: tuple, message: str) -> PodlabError:
        return self.outer.error(self.prefix + path, message)


def _pod(doc: dict, where: _Where | _Nested, not_emulated: list[str]) -> dict[str, Any]:
    meta = doc.get("metadata") or {}
    spec = doc.get("spec") or {}
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        raise where.error(("metadata", "name"), "a Pod needs metadata.name")
    for key in meta:
        if key not in ("name", "namespace", "labels", "annotations"):
            raise where.error(("metadata", key), f"unknown field metadata.{key}")
    entry: dict[str, Any] = {"name": meta["name"]}
    if meta.get("namespace"):
        entry["namespace"] = meta["namespace"]
    if meta.get("labels"):
        entry["labels"] = meta["labels"]
    if meta.get("annotations"):
        entry["annotations"] = meta["annotations"]
    if not isinstance(spec.get("containers"), list) or not spec["containers"]:
        raise where.error(("spec", "containers"), "a Pod needs at least one container")
    for key in spec:
        if key in POD_SPEC_NOT_EMULATED:
            not_emulated.append(f"spec.{key}")
        elif key not in ("containers", "nodeName", "hostNetwork"):
            raise where.error(("spec", key), f"unknown field spec.{key} (or one podlab does not know yet)")
    if spec.get("nodeName"):
        entry["node"] = spec["nodeName"]
    if spec.get("hostNetwork"):
        entry["hostNetwork"] = True
    containers = []
    for j, c in enumerate(spec["containers"]):
        at = ("spec", "containers", j)
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not isinstance(c.get("image"), str):
            raise where.error(at, "a container needs a name and an image")
        out: dict[str, Any] = {"name": c["name"], "image": c["image"]}
        command = list(c.get("command") or []) + list(c.get("args") or [])
        if command:
            out["command"] = [str(x) for x in command]
        ports = []
        for k, port in enumerate(c.get("ports") or []):
            if not isinstance(port, dict) or "containerPort" not in port:
                raise where.error(at + ("ports", k), "a port needs containerPort")
            ports.append({key: port[key] for key in ("containerPort", "name", "protocol", "hostPort") if key in port})
        if ports:
            out["ports"] = ports
        for key in c:
            if key in NOT_EMULATED:
                not_emulated.append(f"spec.containers[{j}].{key}")
            elif key not in ("name", "image", "command", "args", "ports"):
                raise where.error(at + (key,), f"unknown field {key}")
        containers.append(out)
    entry["containers"] = containers
    return entry
