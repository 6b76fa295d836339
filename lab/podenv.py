"""A container's environment variables as the API server checks them and the kubelet fills them in.

A variable has a value, or takes one from the pod through the downward API
(`valueFrom: {fieldRef: {fieldPath: status.podIP}}`): the kubelet resolves it when it starts the
container, once the pod has its address (kubelet's podFieldSelectorRuntimeValue and
fieldpath.ExtractFieldPathAsString). The paths an env may name are the API server's
(validEnvDownwardAPIFieldPathExpressions, and a label's or an annotation's value by its key);
secretKeyRef, configMapKeyRef and resourceFieldRef podlab does not emulate.
"""
from __future__ import annotations

import hashlib
import re

NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")          # k8s.io/apimachinery validation: IsEnvVarName
FIELD_PATHS = ("metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName",
               "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs")
SUBSCRIPTED = re.compile(r"metadata\.(labels|annotations)\['([^']*)'\]")
SERVICE_ACCOUNT = "default"        # a pod's when it names none (the admission controller's default)


def name_problem(name: str) -> str | None:
    """What the API server says of an invalid variable name; None if it is valid."""
    if NAME.fullmatch(name):
        return None
    return ("a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', "
            "and must not start with a digit")


def field_path_problem(path: object) -> str | None:
    """What the API server says of a fieldRef.fieldPath an env may not name; None if it may."""
    if not isinstance(path, str):
        return "fieldPath is a string: the pod field to read, e.g. status.podIP"
    if not path:
        return "fieldPath is required: the pod field to read, e.g. status.podIP"
    if path in FIELD_PATHS or (m := SUBSCRIPTED.fullmatch(path)) and m[2]:
        return None
    if path in ("metadata.labels", "metadata.annotations"):
        return f"{path} as a whole is for a downwardAPI volume; an env takes one key: {path}['app']"
    return f"Unsupported value: \"{path}\": supported values: " + ", ".join(f'"{p}"' for p in FIELD_PATHS) + \
        ", and metadata.labels['KEY'] or metadata.annotations['KEY']"


NOT_EMULATED = ("secretKeyRef", "configMapKeyRef", "resourceFieldRef")
SOURCES = ("fieldRef", *NOT_EMULATED)


class ValueFrom:
    """An env entry's valueFrom as the API server reads it: `field_path` for a fieldRef it takes;
    `not_emulated` for a Secret, a ConfigMap or a resource field; else `problem`, at `where` (the
    path below valueFrom)."""

    def __init__(self, raw: object) -> None:
        self.field_path: str | None = None
        self.not_emulated = False
        self.where: tuple[str, ...] = ()
        self.problem: str | None = None
        if not isinstance(raw, dict) or len(raw) != 1:
            self.problem = "valueFrom takes exactly one of " + ", ".join(SOURCES)
            return
        source, ref = next(iter(raw.items()))
        if source in NOT_EMULATED:
            self.not_emulated = True
        elif source != "fieldRef":
            self.where, self.problem = (source,), f"unknown field {source}; allowed here: " + ", ".join(SOURCES)
        elif not isinstance(ref, dict):
            self.where, self.problem = ("fieldRef",), "fieldRef is a mapping: {fieldPath: status.podIP}"
        elif unknown := sorted(set(ref) - {"fieldPath", "apiVersion"}):
            self.where, self.problem = ("fieldRef", unknown[0]), \
                f"unknown field {unknown[0]}; allowed here: fieldPath, apiVersion"
        elif ref.get("apiVersion", "v1") != "v1":
            self.where, self.problem = ("fieldRef", "apiVersion"), \
                f"unsupported version {ref['apiVersion']!r}: the pod's fields are v1's (apiVersion: v1, or none)"
        elif (problem := field_path_problem(ref.get("fieldPath"))) is not None:
            self.where, self.problem = ("fieldRef", "fieldPath"), problem
        else:
            self.field_path = ref["fieldPath"]


def pod_uid(lab: str, namespace: str, pod: str) -> str:
    """The pod's metadata.uid: a version-4 UUID, the same for the same pod of the same lab (the
    plugins see it as K8S_POD_UID)."""
    n = int(hashlib.sha256(f"podlab/{lab}/{namespace}/{pod}/uid".encode()).hexdigest()[:32], 16)
    n = (n & ~(0xc000 << 48)) | (0x8000 << 48)      # the RFC 4122 variant, as uuid.UUID(..., version=4) sets
    n = (n & ~(0xf000 << 64)) | (4 << 76)           # version 4
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def field_value(path: str, *, lab: str, pod: str, namespace: str, node: str, pod_ip: str, host_ip: str,
                labels: dict[str, str], annotations: dict[str, str]) -> str:
    """The value the kubelet gives a variable of this fieldPath (checked by field_path_problem):
    podIPs and hostIPs list one address, as in a single-stack cluster."""
    if path in ("status.podIP", "status.podIPs"):
        return pod_ip
    if path in ("status.hostIP", "status.hostIPs"):
        return host_ip
    if path == "spec.nodeName":
        return node
    if path == "metadata.name":
        return pod
    if path == "metadata.namespace":
        return namespace
    if path == "metadata.uid":
        return pod_uid(lab, namespace, pod)
    if path == "spec.serviceAccountName":
        return SERVICE_ACCOUNT
    m = SUBSCRIPTED.fullmatch(path)
    assert m is not None, path
    return (labels if m[1] == "labels" else annotations).get(m[2], "")
