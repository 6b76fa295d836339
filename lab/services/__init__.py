"""Services and cluster DNS: how a Service address becomes a pod address, and a name an address.

  schema     the topology file's `services:` section; ClusterIP and NodePort allocation; the DNS pod
  endpoints  which pods stand behind each Service port (the EndpointSlice controller's work)
  nft        kube-proxy's nftables table and the portmap plugin's hostPort table, as text
  planner    the kernel operations they add to a plan (ApplyNft, bridge netfilter, a node route)
  dns        dnsmasq as the cluster DNS server: its configuration, start and readiness
  resolv     the kubelet's /etc/resolv.conf and /etc/hosts for each pod, and mounting them for exec
  dnsclient  a small DNS client (queries from inside a pod, the resolver's search list)
  probe      `podlab check`'s Service rows: by address, by name, hairpin, source preserved
  cli        `podlab get services|endpoints`, `podlab nslookup`, `podlab plan`'s Services

The functions here are the hooks the rest of podlab calls (planner, api); they import lazily.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:   # imports stay inside the functions
    from lab.addressing import AddressPlan
    from lab.model import Container, Pod, Topology
    from lab.ops import Op
    from lab.planner import Plan


def ops(topo: Topology, addrs: AddressPlan, mode_ops: list[Op]) -> list[Op]:
    """The kernel operations Services and hostPorts add to a mode's plan (lab.services.planner)."""
    from lab.services import planner
    return planner.ops(topo, addrs, mode_ops)


def preflight(plan: Plan) -> None:
    """Before anything is made: the programs and the kernel switch the plan's Services need."""
    import os
    import shutil

    from lab.errors import PodlabError
    from lab.ops import ApplyNft, SetSysctl
    from lab.services import planner
    needs_nft = any(isinstance(op, ApplyNft) for op in plan.ops)
    bridge_nf = any(isinstance(op, SetSysctl) and op.key == planner.BRIDGE_NF for op in plan.ops)
    problems = []
    if needs_nft and shutil.which("nft") is None:
        problems.append("the nft command (kube-proxy's and portmap's rules): apt-get install nftables")
    if plan.topology.cluster_services and shutil.which("dnsmasq") is None:
        problems.append("dnsmasq (the cluster DNS server): apt-get install dnsmasq-base")
    if bridge_nf and not os.path.exists("/proc/sys/net/" + planner.BRIDGE_NF[4:].replace(".", "/")):
        problems.append("the br_netfilter kernel module (pods reaching a Service on their own node need "
                        "conntrack to see bridged replies): sudo modprobe br_netfilter. Know that it changes "
                        "every bridge on this host: each one's frames then go through iptables/nftables "
                        "(Docker's and libvirt's bridges too) unless net.bridge.bridge-nf-call-iptables=0 "
                        "there; podlab's labs set it per namespace, 1 only where kube-proxy needs it")
    if problems:
        raise PodlabError("this lab's Services need " + "; and ".join(problems) + ". Nothing was created.")


def prepare(lab: str, plan: Plan) -> None:
    """Once the namespaces exist, before the workloads: the DNS server's config, each pod's resolv.conf
    (files only: it runs while the links are still being set up)."""
    from lab.services import dns, endpoints, resolv
    topo = plan.topology
    if not topo.cluster_services:
        return
    splan = endpoints.plan(topo, plan.addresses)
    dns.write(lab, topo, plan.addresses, splan)
    resolv.write(lab, topo, plan.addresses, splan)


def container_command(lab: str, pod: Pod, container: Container) -> list[str]:
    """What the agent runs for a container: the DNS pod's dnsmasq gets the lab's config file."""
    from lab.services import dns, schema
    if schema.is_dns_pod(pod) and container.name == schema.DNS_CONTAINER:
        return dns.container_command(lab)
    return list(container.command)


def wait_ready(lab: str, plan: Plan) -> None:
    """After the workloads start: until the cluster DNS answers (a readiness probe)."""
    from lab.services import dns, endpoints
    if plan.topology.cluster_services:
        dns.wait_ready(lab, plan.addresses, endpoints.plan(plan.topology, plan.addresses))


def pod_mounts(lab: str, plan: Plan, pod: Pod) -> list[list[str]]:
    """The kubelet's files a pod's command containers see: [file, path] pairs (none without Services)."""
    from lab.services import resolv
    if not plan.topology.cluster_services or pod.host_network:
        return []
    return [[src, dst] for src, dst in resolv.mounts_for(lab, pod.name)]
