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

Only processes read them, so they are written for the pods whose containers are processes
(command containers: the plan writes them before the agent starts those), and for any other
pod when a process first enters it (mounts_for): the built-in workloads read neither, and a
thousand pods' two thousand files would cost `up` a second on ext4 and `down` as much again.
Once written a pod's files stay as they are while it lives, as the kubelet leaves them; they
go with the pod (lab.state.remove_pod_dirs).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from lab import state
from lab.addressing import AddressPlan
from lab.model import Pod, Topology
from lab.ops import WriteFile
from lab.services import schema
from lab.services.endpoints import CLUSTER_DOMAIN, ServicePlan


class Lab(Protocol):
    """What these functions read of a running lab (lab.api.Lab, which the planner must not import)."""
    name: str
    topology: Topology
    addresses: AddressPlan

NDOTS = 5


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
    return state.pod_dir(lab, pod)


def uses_cluster_dns(topo: Topology, pod: Pod) -> bool:
    """Whether the kubelet gives the pod the cluster DNS (ClusterFirst): not in a lab made with
    `dns: false` (no clusterDNS: the node's resolver), nor to a hostNetwork pod, nor to the DNS pod
    itself (kubeadm's CoreDNS Deployment says dnsPolicy: Default: it asks the node's resolver)."""
    return topo.cluster_dns and not pod.host_network and not schema.is_dns_pod(pod)


def _dns_ip(topo: Topology) -> str | None:
    return next((str(s.cluster_ip) for s in topo.services if (s.namespace, s.name) == schema.DNS), None)


def contents(topo: Topology, pod: Pod, ip: object) -> dict[str, str]:
    """The pod's resolv.conf and hosts, as the kubelet writes them ({} if it gets none)."""
    dns_ip = _dns_ip(topo)
    if not uses_cluster_dns(topo, pod) or dns_ip is None:
        return {}
    return {"resolv.conf": resolv_conf(pod.namespace, dns_ip), "hosts": hosts_file(pod.name, str(ip))}


def files(topo: Topology, addrs: AddressPlan, splan: ServicePlan) -> list[WriteFile]:
    """The files of the pods that run processes (command containers), which the agent mounts
    when it starts them; the other pods' are written when something first runs there."""
    out: list[WriteFile] = []
    for pod, addr in zip(topo.pods, addrs.pods):
        if not any(c.command for c in pod.containers):      # a command container (Container.workload)
            continue
        pod_dir(topo.name, pod.name)   # validates the name
        for name, content in contents(topo, pod, addr.ip).items():
            out.append(WriteFile(state.in_lab_dir(f"pods/{pod.name}/{name}"), content,
                                 f"the kubelet's /etc/{name} of pod {pod.name}", pod=pod.name, target=f"/etc/{name}"))
    return out


def mounts_for(lab: Lab, pod: str) -> list[tuple[str, str]]:
    """(file in the state directory, path in the pod) for a process entering the pod: its files,
    written first if this is the first process there; [] for a pod that gets none."""
    topo = lab.topology
    spec = next((p for p in topo.pods if p.name == pod), None)
    if spec is None:
        return []
    wanted = contents(topo, spec, lab.addresses.pod(pod).ip)
    d = pod_dir(lab.name, pod)
    out = []
    for name, content in wanted.items():
        path = d / name
        if not path.is_file():
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = d / f".{name}.{os.getpid()}.tmp"     # two first processes at once: each renames a whole file
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(content)
            os.replace(tmp, path)
        out.append((str(path), f"/etc/{name}"))
    return out


def resolv_conf_of(lab: Lab, pod: str) -> str:
    """What the pod's resolver reads: its resolv.conf as written (perhaps edited since), else what
    the kubelet would write."""
    path = pod_dir(lab.name, pod) / "resolv.conf"
    if path.is_file():
        return path.read_text()
    spec = next(p for p in lab.topology.pods if p.name == pod)
    return contents(lab.topology, spec, lab.addresses.pod(pod).ip).get("resolv.conf", "")
