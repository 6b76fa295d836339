"""What the kubelet writes into every pod: /etc/resolv.conf and /etc/hosts, and how a process
in the pod sees them.

dnsPolicy ClusterFirst: the nameserver is the DNS Service's ClusterIP, the search list is the
pod's namespace, then svc and the cluster domain, and `ndots:5` makes short names go through it.
hostNetwork pods get the node's resolver instead (as ClusterFirst falls back to Default for
them), so podlab writes nothing for them.

The files live in the lab's state directory (pods/<pod>/). `podlab exec` makes them the pod's
own: its child process enters a mount namespace of its own (unshare(1), / made private) and
bind-mounts them over /etc/resolv.conf and /etc/hosts before exec, as a container runtime does
(lab.engine.nsexec; the agent does the same for command containers); the host's mount
namespace never changes.
"""
from __future__ import annotations

from pathlib import Path

from lab import state
from lab.addressing import AddressPlan
from lab.ops import WriteFile
from lab.model import Topology
from lab.services.endpoints import CLUSTER_DOMAIN, ServicePlan

NDOTS = 5
FILES = ("resolv.conf", "hosts")


def search(namespace: str) -> list[str]:
    return [f"{namespace}.svc.{CLUSTER_DOMAIN}", f"svc.{CLUSTER_DOMAIN}", CLUSTER_DOMAIN]


def resolv_conf(namespace: str, nameserver: str) -> str:
    return f"search {' '.join(search(namespace))}\nnameserver {nameserver}\noptions ndots:{NDOTS}\n"


def hosts_file(pod: str, ip: str) -> str:
    """The kubelet-managed /etc/hosts: localhost, and the pod's own name (other pods are not in it)."""
    return ("# Kubernetes-managed hosts file.\n"
            "127.0.0.1\tlocalhost\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n"
            "fe00::0\tip6-localnet\n"
            "fe00::0\tip6-mcastprefix\n"
            "fe00::1\tip6-allnodes\n"
            "fe00::2\tip6-allrouters\n"
            f"{ip}\t{pod}\n")


def pod_dir(lab: str, pod: str) -> Path:
    if not pod or "/" in pod or pod in (".", ".."):
        raise ValueError(f"invalid pod name {pod!r}")
    return state.lab_dir(lab) / "pods" / pod


def files(topo: Topology, addrs: AddressPlan, splan: ServicePlan) -> list[WriteFile]:
    """Every pod's resolv.conf and hosts (not hostNetwork pods': they use the node's)."""
    if splan.dns_ip is None:
        return []
    out: list[WriteFile] = []
    for pod, addr in zip(topo.pods, addrs.pods):
        if pod.host_network:
            continue
        pod_dir(topo.name, pod.name)   # validates the name
        for name, content in (("resolv.conf", resolv_conf(pod.namespace, str(splan.dns_ip))),
                              ("hosts", hosts_file(pod.name, str(addr.ip)))):
            out.append(WriteFile(state.in_lab_dir(f"pods/{pod.name}/{name}"), content,
                                 f"the kubelet's /etc/{name} of pod {pod.name}", pod=pod.name, target=f"/etc/{name}"))
    return out


def mounts_for(lab: str, pod: str) -> list[tuple[str, str]]:
    """(file in the state directory, path in the pod) for the pod's files that exist."""
    d = pod_dir(lab, pod)
    return [(str(d / f), f"/etc/{f}") for f in FILES if (d / f).is_file()]
