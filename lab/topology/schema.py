"""The schema of a topology file: the keys allowed at each level and the types of their values.

Checker.fields (lab.topology.checker) checks a mapping against one of these tables; what a
value means (a CIDR, a name, a reference to a node) is checked by the section modules.
"""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Field:
    types: tuple[type, ...]
    required: bool = False


STR, INT, BOOL, LIST, MAP = Field((str,)), Field((int,)), Field((bool,)), Field((list,)), Field((dict,))
NAME = Field((str,), required=True)

TOP_SCHEMA = {
    "name": STR, "description": STR, "design": Field((str, dict)), "mode": STR, "routing": STR, "network": MAP,
    "nodes": Field((list, int)), "pods": LIST, "deployments": LIST, "outside": LIST, "services": LIST,
    "calico": MAP, "dns": BOOL, "cni": MAP,
}
CNI_SCHEMA = {"conflist": Field((str, dict), required=True), "cniPath": Field((str, list)),
              "timeoutSeconds": Field((int, float))}
CALICO_SCHEMA = {"blockSize": INT, "asNumber": INT, "nodeToNodeMesh": BOOL, "routeReflectors": LIST}
DESIGN_SCHEMA = {"attach": Field((str,), required=True), "backend": Field((str,), required=True)}
NETWORK_SCHEMA = {
    "podCIDR": STR, "nodeCIDRMaskSize": INT, "nodeSubnet": STR, "serviceCIDR": STR, "mtu": INT, "bridge": STR,
}
NODE_SCHEMA = {"name": NAME}
OUTSIDE_SCHEMA = {"name": NAME}
_WORKLOAD = {
    "image": STR, "command": LIST, "containers": LIST, "hostNetwork": BOOL, "namespace": STR, "labels": MAP,
    "initContainers": LIST, "volumes": LIST, "annotations": MAP,
}
POD_SCHEMA = {"name": NAME, "node": STR, **_WORKLOAD}
# A Deployment's own fields (the rest is its pod template), as apps/v1 names them.
DEPLOYMENT_FIELDS = {"name": NAME, "replicas": INT, "strategy": MAP, "minReadySeconds": INT,
                     "progressDeadlineSeconds": INT, "revisionHistoryLimit": INT}
TEMPLATE_SCHEMA = {"nodes": LIST, **_WORKLOAD}     # a Deployment's pod template (a ReplicaSet's, recorded)
DEPLOYMENT_SCHEMA = {**DEPLOYMENT_FIELDS, **TEMPLATE_SCHEMA}
STRATEGY_SCHEMA = {"type": STR, "rollingUpdate": MAP}
ROLLING_UPDATE_SCHEMA = {"maxSurge": Field((int, str)), "maxUnavailable": Field((int, str))}
CONTAINER_SCHEMA = {"name": NAME, "image": STR, "command": LIST, "ports": LIST, "volumeMounts": LIST, "env": LIST}
# An init container runs to completion: a command, nothing listening (its ports would mean nothing).
INIT_CONTAINER_SCHEMA = {"name": NAME, "image": STR, "command": LIST, "volumeMounts": LIST, "env": LIST}
ENV_SCHEMA = {"name": NAME, "value": STR, "valueFrom": MAP}
VOLUME_SCHEMA = {"name": NAME, "emptyDir": MAP}     # emptyDir: {} (medium and sizeLimit are not emulated)
VOLUME_MOUNT_SCHEMA = {"name": NAME, "mountPath": Field((str,), required=True), "readOnly": BOOL}
PORT_SCHEMA = {"containerPort": Field((int,), required=True), "name": STR, "protocol": STR, "hostPort": INT}
# Services (checked by lab.services.schema): clusterIP is an address in serviceCIDR, or None (headless).
SERVICE_SCHEMA = {"name": NAME, "namespace": STR, "type": STR, "selector": MAP, "ports": LIST, "clusterIP": STR}
SERVICE_PORT_SCHEMA = {"name": STR, "port": Field((int,), required=True), "targetPort": Field((int, str)),
                       "protocol": STR, "nodePort": INT}

TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list", dict: "a mapping"}

LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
PORT_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
PROTOCOLS = ("TCP", "UDP", "SCTP")


def is_port_name(text: str) -> bool:
    """An IANA service name, as Kubernetes requires of a port's name (and a targetPort given by name)."""
    return bool(PORT_NAME.fullmatch(text) and len(text) <= 15 and "--" not in text and re.search("[a-z]", text))
