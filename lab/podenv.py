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
    if not isinstance(path, str) or not path:
        return "fieldPath is required: the pod field to read, e.g. status.podIP"
    if path in FIELD_PATHS or (m := SUBSCRIPTED.fullmatch(path)) and m[2]:
        return None
    if path in ("metadata.labels", "metadata.annotations"):
        return f"{path} as a whole is for a downwardAPI volume; an env takes one key: {path}['app']"
    return f"Unsupported value: \"{path}\": supported values: " + ", ".join(f'"{p}"' for p in FIELD_PATHS) + \
        ", and metadata.labels['KEY'] or metadata.annotations['KEY']"


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
    if m := SUBSCRIPTED.fullmatch(path):
        return (labels if m[1] == "labels" else annotations).get(m[2], "")
    return {"metadata.name": pod, "metadata.namespace": namespace, "metadata.uid": pod_uid(lab, namespace, pod),
            "spec.nodeName": node, "spec.serviceAccountName": SERVICE_ACCOUNT, "status.hostIP": host_ip,
            "status.hostIPs": host_ip, "status.podIP": pod_ip, "status.podIPs": pod_ip}[path]
