"""What a container runtime hands each plugin: the environment and the stdin, derived as
containerd (internal/cri/server/sandbox_run.go: cniNamespaceOpts, toCNILabels, toCNIPortMappings,
toCNIBandWidth), go-cni and libcni (libcni/api.go: buildOneConfig, injectRuntimeConfig, args) do.

- CNI_ARGS: IgnoreUnknown=1 and the K8S_POD_* labels (containerd's map; its order is Go's map
  order, random: podlab writes them in dockershim's order, always the same).
- capability arguments: the pod's annotations (io.kubernetes.cri.pod-annotations), portMappings
  from hostPorts (protocol lower-case, hostPort > 0 only), bandwidth from kubernetes.io/ingress-
  and egress-bandwidth (bits/s, burst MaxUint32), and podlab's own `podlab.dev/cni-ips` and
  `podlab.dev/cni-mac` annotations for the ips and mac capabilities (as cnitool's CAP_ARGS would).
  go-cni's structs carry no JSON tags, so they reach the plugins as {"HostPort": ...}; Go's
  decoder matches field names without regard to case, so plugins read them as hostPort.
- each plugin's stdin: its configuration with name, cniVersion, prevResult and a runtimeConfig of
  the capabilities it declares. Pure.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from lab import podenv
from lab.cni import gojson
from lab.cni.conflist import Conflist, capabilities
from lab.errors import PodlabError
from lab.model import Pod

IFNAME = "eth0"
ENV_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"   # plugins run iptables, ip6tables
INGRESS = "kubernetes.io/ingress-bandwidth"
EGRESS = "kubernetes.io/egress-bandwidth"
IPS = "podlab.dev/cni-ips"
MAC = "podlab.dev/cni-mac"
POD_ANNOTATIONS = "io.kubernetes.cri.pod-annotations"
MAX_UINT32 = 2**32 - 1


def sandbox_id(lab: str, pod: Pod) -> str:
    """The pod sandbox's ID (CNI_CONTAINERID): 64 hex characters, as containerd's."""
    return hashlib.sha256(f"podlab/{lab}/{pod.namespace}/{pod.name}/sandbox".encode()).hexdigest()


def pod_uid(lab: str, pod: Pod) -> str:
    return podenv.pod_uid(lab, pod.namespace, pod.name)


def cni_args(lab: str, pod: Pod) -> tuple[tuple[str, str], ...]:
    return (("IgnoreUnknown", "1"), ("K8S_POD_NAMESPACE", pod.namespace), ("K8S_POD_NAME", pod.name),
            ("K8S_POD_INFRA_CONTAINER_ID", sandbox_id(lab, pod)), ("K8S_POD_UID", pod_uid(lab, pod)))


_QUANTITY = re.compile(r"([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m|)")
_SUFFIX = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def bandwidth_value(key: str, text: str) -> int:
    """A bandwidth annotation (a resource.Quantity, bits per second) as kubelet's bandwidth package
    reads it: 1k..1P, else the pod cannot start."""
    m = _QUANTITY.fullmatch(text.strip())
    if not m:
        raise PodlabError(f"annotation {key}: {text!r} is not a quantity such as 10M (bits per second)")
    value = float(m.group(1)) * _SUFFIX[m.group(2)]
    if not 1e3 <= value <= 1e15:
        raise PodlabError(f"annotation {key}: {text} is out of range: kubelet accepts 1k..1P (bits per second)")
    return int(value)


def capability_args(pod: Pod) -> gojson.Struct:
    """The capability arguments containerd builds for a pod (a map: its keys are sorted on the wire)."""
    annotations = dict(pod.annotations)
    out: dict[str, Any] = {POD_ANNOTATIONS: annotations}
    mappings = [gojson.Struct(HostPort=p.host_port, ContainerPort=p.port, Protocol=p.protocol.lower(), HostIP="")
                for c in pod.containers for p in c.port_specs if p.host_port]
    if mappings:
        out["portMappings"] = mappings
    ingress, egress = annotations.get(INGRESS), annotations.get(EGRESS)
    if ingress is not None or egress is not None:
        out["bandwidth"] = gojson.Struct(
            IngressRate=bandwidth_value(INGRESS, ingress) if ingress is not None else 0,
            IngressBurst=MAX_UINT32 if ingress is not None else 0,
            EgressRate=bandwidth_value(EGRESS, egress) if egress is not None else 0,
            EgressBurst=MAX_UINT32 if egress is not None else 0)
    if IPS in annotations:
        out["ips"] = [ip.strip() for ip in annotations[IPS].split(",") if ip.strip()]
    if MAC in annotations:
        out["mac"] = annotations[MAC].strip()
    return gojson.Struct(sorted(out.items()))


@dataclass(frozen=True)
class RuntimeConf:
    """libcni's RuntimeConf for one pod: what stays the same for every plugin of the chain."""
    container_id: str
    netns: str                              # CNI_NETNS: the pod's /run/netns/NAME ("" once it is gone)
    ifname: str
    args: tuple[tuple[str, str], ...]
    capability_args: dict[str, Any]
    cni_path: tuple[str, ...]

    def env(self, command: str) -> dict[str, str]:
        """The plugin's environment: podlab's PATH and the CNI variables (libcni's Args.AsEnv)."""
        return {"PATH": ENV_PATH, "CNI_COMMAND": command, "CNI_CONTAINERID": self.container_id,
                "CNI_NETNS": self.netns, "CNI_ARGS": ";".join(f"{k}={v}" for k, v in self.args),
                "CNI_IFNAME": self.ifname, "CNI_PATH": ":".join(self.cni_path)}


def plugin_stdin(conf: Conflist, plugin: dict[str, Any], prev_result: Any | None, rt: RuntimeConf) -> str:
    """libcni's buildOneConfig: the plugin's configuration as a map (sorted), with the list's name
    and version, the previous result (a Result struct) and, when the plugin declares capabilities
    the runtime has arguments for, runtimeConfig (whose insertion decodes prevResult into a map)."""
    config: dict[str, Any] = gojson.maps(plugin)
    config["name"], config["cniVersion"] = conf.name, conf.cni_version
    if prev_result is not None:
        config["prevResult"] = gojson.result_struct(gojson.maps(prev_result))
    runtime = {cap: rt.capability_args[cap] for cap in capabilities(plugin) if cap in rt.capability_args}
    if runtime:
        config = gojson.maps(config)     # InjectConf decodes the bytes again: prevResult becomes a map
        config["runtimeConfig"] = runtime
    return gojson.dumps(config)
