"""Kubernetes manifests as podlab reads them: v1 Pod, apps/v1 Deployment, v1 Service and v1 Namespace,
as entries of a lab's topology document.

`kubectl apply -f nginx_pod.yaml` of seed 004 works verbatim, and seed 001's Deployment with its
init container and emptyDir. Fields that matter for the network (name, namespace, labels, nodeName,
hostNetwork, each container's image, command, args and ports; a Deployment's replicas, selector,
template and how it rolls (strategy, minReadySeconds, progressDeadlineSeconds, revisionHistoryLimit);
a Service's type, selector, ports and clusterIP) and for what the pods run (initContainers, emptyDir
volumes and volumeMounts, env values, annotations) are emulated; others podlab accepts and lists once
as "not emulated". An unknown kind or field is an error
naming the document, its path and line, and nothing changes. Namespaces need no object in podlab (a
pod's namespace is a name): a Namespace document is accepted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from lab import podenv
from lab.errors import PodlabError

KINDS = {("v1", "Pod"), ("apps/v1", "Deployment"), ("v1", "Service"), ("v1", "Namespace")}
NOT_EMULATED = {"resources", "livenessProbe", "readinessProbe", "startupProbe", "securityContext",
                "imagePullPolicy", "envFrom", "workingDir", "terminationMessagePath",
                "terminationMessagePolicy", "lifecycle", "stdin", "tty"}
POD_SPEC_NOT_EMULATED = {"restartPolicy", "imagePullSecrets", "serviceAccountName", "serviceAccount",
                         "terminationGracePeriodSeconds", "securityContext", "tolerations",
                         "affinity", "priorityClassName", "schedulerName", "dnsPolicy", "enableServiceLinks"}
MOUNT_NOT_EMULATED = {"mountPropagation", "recursiveReadOnly"}
EMPTY_DIR_NOT_EMULATED = {"medium", "sizeLimit"}
# A Deployment's rollout (lab.rolling): spec.strategy's maxSurge/maxUnavailable or Recreate, and the rest.
ROLLOUT_FIELDS = ("strategy", "minReadySeconds", "progressDeadlineSeconds", "revisionHistoryLimit")


@dataclass
class Manifests:
    pods: list[dict[str, Any]] = field(default_factory=list)          # topology pod entries
    deployments: list[dict[str, Any]] = field(default_factory=list)   # topology deployment entries
    services: list[dict[str, Any]] = field(default_factory=list)      # topology service entries
    namespaces: list[str] = field(default_factory=list)
    not_emulated: list[str] = field(default_factory=list)
    # Where each entry came from (by the entry's identity): its document, so that a problem the
    # topology's checks find in it is said at the manifest's own path and line (origin_of).
    origins: dict[int, "Origin"] = field(default_factory=dict)

    def extend(self, other: "Manifests") -> None:
        for key in ("pods", "deployments", "services", "namespaces", "not_emulated"):
            getattr(self, key).extend(getattr(other, key))
        self.origins.update(other.origins)

    def origin_of(self, entry: object) -> "Origin | None":
        return self.origins.get(id(entry))


# A topology entry's fields, where they are in the manifest it was made from (the rest of a path follows).
POD_FIELDS = {"name": ("metadata", "name"), "namespace": ("metadata", "namespace"), "labels": ("metadata", "labels"),
              "annotations": ("metadata", "annotations"), "node": ("spec", "nodeName")}
DEPLOYMENT_FIELDS = {"name": ("metadata", "name"), "namespace": ("metadata", "namespace"),
                     "replicas": ("spec", "replicas"), "labels": ("spec", "template", "metadata", "labels"),
                     "annotations": ("spec", "template", "metadata", "annotations"),
                     "nodes": ("spec", "template", "spec", "nodeName"), **{k: ("spec", k) for k in ROLLOUT_FIELDS}}
SERVICE_FIELDS = {"name": ("metadata", "name"), "namespace": ("metadata", "namespace")}


@dataclass
class Origin:
    """The manifest document a topology entry was made from."""
    where: "_Where"
    kind: str           # Pod, Deployment, Service

    def problem(self, below: tuple, message: str) -> str:
        """A problem found at `below` in the entry (a topology path), said at the manifest's path and line."""
        head, rest = (below[0], below[1:]) if below else ("", ())
        if self.kind == "Service":
            path = SERVICE_FIELDS.get(head, ("spec", head)) if head else ()
        elif self.kind == "Deployment":
            path = DEPLOYMENT_FIELDS.get(head, ("spec", "template", "spec", head)) if head else ()
            rest = () if head == "nodes" else rest
        else:
            path = POD_FIELDS.get(head, ("spec", head)) if head else ()
        return self.where.locate(path + rest, message)


# libyaml where PyYAML was built with it: the same documents and lines, ~7x faster than PyYAML's own.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _documents(text: str) -> list[tuple[Any, yaml.Node]]:
    """Each document, with its node (which knows its lines), the text read once."""
    return [(yaml.constructor.SafeConstructor().construct_document(node), node)
            for node in yaml.compose_all(text, Loader=_LOADER)]


def is_manifest(text: str) -> bool:
    """Kubernetes objects (documents with a kind), not a podlab topology document."""
    try:
        docs = [d for d, _ in _documents(text) if d is not None]
    except yaml.YAMLError:
        return False
    return bool(docs) and all(isinstance(d, dict) and "kind" in d for d in docs)


def read(text: str, source: str) -> Manifests:
    out = Manifests()
    try:
        documents = _documents(text)
    except yaml.YAMLError as e:
        raise PodlabError(f"{source}: not YAML: {e}") from None
    for i, (doc, node) in enumerate(documents):
        if doc is None:
            continue
        where = _Where(source, i, node)
        kind = (doc.get("apiVersion"), doc.get("kind"))
        if kind not in KINDS:
            known = ", ".join(f"{v} {k}" for v, k in sorted(KINDS))
            raise where.error(("kind",), f"{doc.get('apiVersion')}/{doc.get('kind')} is not a kind podlab applies "
                                         f"({known})")
        if kind[1] == "Namespace":
            out.namespaces.append(_name(doc, where))
            continue
        make, entries = {"Pod": (_pod, out.pods), "Deployment": (_deployment, out.deployments),
                         "Service": (_service, out.services)}[kind[1]]
        entry = make(doc, where, out.not_emulated)
        entries.append(entry)
        out.origins[id(entry)] = Origin(where, kind[1])
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
        if key == "paused":
            not_emulated.append(f"spec.{key}")
        elif key not in ("replicas", "selector", "template", *ROLLOUT_FIELDS):
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
    for key in ROLLOUT_FIELDS:       # checked with the rest of the document (lab.topology.strategy)
        if key in spec:
            entry[key] = spec[key]
    for key in ("labels", "annotations", "containers", "hostNetwork", "initContainers", "volumes"):
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

    def locate(self, path: tuple, message: str) -> str:
        """'FILE: document N, spec.replicas (line L): message'."""
        shown = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path).replace(".[", "[")
        line = self.line(path)
        return f"{self.source}: document {self.index + 1}, {shown}" + (f" (line {line})" if line else "") + f": {message}"

    def error(self, path: tuple, message: str) -> PodlabError:
        return PodlabError(f"{self.locate(path, message)}; nothing was changed")


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
        elif key not in ("containers", "nodeName", "hostNetwork", "initContainers", "volumes"):
            raise where.error(("spec", key), f"unknown field spec.{key} (or one podlab does not know yet)")
    if spec.get("nodeName"):
        entry["node"] = spec["nodeName"]
    if spec.get("hostNetwork"):
        entry["hostNetwork"] = True
    if spec.get("volumes"):
        entry["volumes"] = _volumes(spec["volumes"], where, not_emulated)
    if spec.get("initContainers"):
        entry["initContainers"] = _containers(spec["initContainers"], "initContainers", where, not_emulated)
    entry["containers"] = _containers(spec["containers"], "containers", where, not_emulated)
    return entry


def _containers(raw: Any, key: str, where: _Where | _Nested, not_emulated: list[str]) -> list[dict[str, Any]]:
    """spec.containers or spec.initContainers as podlab's topology writes them."""
    if not isinstance(raw, list):
        raise where.error(("spec", key), f"spec.{key} must be a list of containers")
    init = key == "initContainers"
    containers = []
    for j, c in enumerate(raw):
        at = ("spec", key, j)
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
        if ports and not init:
            out["ports"] = ports
        if c.get("volumeMounts"):
            out["volumeMounts"] = _mounts(c["volumeMounts"], at, where, not_emulated)
        if c.get("env"):
            out["env"] = _env(c["env"], at, where, not_emulated)
        for field_ in c:
            if field_ in NOT_EMULATED or (init and field_ == "ports"):
                not_emulated.append(f"spec.{key}[{j}].{field_}")
            elif init and field_ == "restartPolicy":
                raise where.error(at + (field_,), "an init container with a restartPolicy is a sidecar, which "
                                                  "podlab does not emulate yet: make it one of spec.containers")
            elif field_ not in ("name", "image", "command", "args", "ports", "volumeMounts", "env"):
                raise where.error(at + (field_,), f"unknown field {field_}")
        containers.append(out)
    return containers


def _env(raw: Any, at: tuple, where: _Where | _Nested, not_emulated: list[str]) -> list[dict[str, Any]]:
    """A container's env: name and value given to its process, or valueFrom.fieldRef, a pod field
    the kubelet fills in (the downward API, lab.podenv); secretKeyRef, configMapKeyRef and
    resourceFieldRef are not emulated: listed, and the variable left out."""
    if not isinstance(raw, list):
        raise where.error(at + ("env",), "env must be a list of {name, value}")
    out = []
    for k, e in enumerate(raw):
        here = at + ("env", k)
        if not isinstance(e, dict) or not isinstance(e.get("name"), str):
            raise where.error(here, "an environment variable needs a name")
        for field_ in e:
            if field_ not in ("name", "value", "valueFrom"):
                raise where.error(here + (field_,), f"unknown field {field_}")
        if (problem := podenv.name_problem(e["name"])) is not None:
            raise where.error(here + ("name",), f"Invalid value: {e['name']!r}: {problem}")
        if e.get("valueFrom") is not None:     # null: none, as the API server reads it
            if e.get("value"):
                raise where.error(here + ("valueFrom",), "may not be specified when `value` is not empty")
            source = podenv.ValueFrom(e["valueFrom"])
            if source.problem is not None:
                raise where.error(here + ("valueFrom", *source.where), source.problem)
            if source.not_emulated:
                not_emulated.append(f"spec.{at[1]}[{at[2]}].env[{k}].valueFrom")
            else:
                out.append({"name": e["name"], "valueFrom": {"fieldRef": {"fieldPath": source.field_path}}})
            continue
        value = e.get("value", "")
        if not isinstance(value, str):
            raise where.error(here + ("value",), "an environment variable's value is a string: quote it")
        out.append({"name": e["name"], "value": value})
    return out


def _mounts(raw: Any, at: tuple, where: _Where | _Nested, not_emulated: list[str]) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise where.error(at + ("volumeMounts",), "volumeMounts must be a list")
    out = []
    for k, m in enumerate(raw):
        here = at + ("volumeMounts", k)
        if not isinstance(m, dict):
            raise where.error(here, "a volume mount is a mapping with name and mountPath")
        for field_ in m:
            if field_ in MOUNT_NOT_EMULATED:
                not_emulated.append(f"spec.{at[1]}[{at[2]}].volumeMounts[{k}].{field_}")
            elif field_ in ("subPath", "subPathExpr"):
                raise where.error(here + (field_,), f"{field_} is not emulated yet: podlab mounts the whole volume; "
                                                    "mount it whole and use the subdirectory's path")
            elif field_ not in ("name", "mountPath", "readOnly"):
                raise where.error(here + (field_,), f"unknown field {field_}")
        out.append({key: m[key] for key in ("name", "mountPath", "readOnly") if key in m})
    return out


def _volumes(raw: Any, where: _Where | _Nested, not_emulated: list[str]) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise where.error(("spec", "volumes"), "spec.volumes must be a list")
    out = []
    for k, v in enumerate(raw):
        at = ("spec", "volumes", k)
        if not isinstance(v, dict) or not isinstance(v.get("name"), str):
            raise where.error(at, "a volume needs a name")
        sources = [key for key in v if key != "name"]
        if sources != ["emptyDir"]:
            other = next((key for key in sources if key != "emptyDir"), None)
            raise where.error(at + ((other,) if other else ()),
                              f"{other} volumes are not emulated yet: podlab runs emptyDir volumes (emptyDir: {{}})"
                              if other else "a volume needs a source: podlab runs emptyDir volumes (emptyDir: {})")
        empty_dir = v["emptyDir"] or {}
        if not isinstance(empty_dir, dict):
            raise where.error(at + ("emptyDir",), "emptyDir is a mapping: emptyDir: {}")
        for key in empty_dir:
            if key not in EMPTY_DIR_NOT_EMULATED:
                raise where.error(at + ("emptyDir", key), f"unknown field {key}")
            not_emulated.append(f"spec.volumes[{k}].emptyDir.{key}")
        out.append({"name": v["name"], "emptyDir": {}})
    return out
