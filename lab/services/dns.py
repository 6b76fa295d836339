"""The cluster DNS: dnsmasq, run as the kube-dns pod's container, answering the records the
Kubernetes DNS specification (and CoreDNS's kubernetes plugin) define:

  <svc>.<ns>.svc.cluster.local               A    the ClusterIP; a headless Service: each selected pod
  <a-b-c-d>.<svc>.<ns>.svc.cluster.local     A    each pod of a headless Service
  _<port>._<proto>.<svc>.<ns>.svc.cluster.local  SRV  each named port (headless: one per pod)
  <a-b-c-d>.<ns>.pod.cluster.local           A    every pod
  and the reverse (PTR) of each ClusterIP.

The zone is answered here only (`local=/cluster.local/`), so an unknown name in it is NXDOMAIN;
a bare name (no dot) is never forwarded (`domain-needed`), so `ping nginx-6bfd886fb5-fvngf`
fails as in seed 001; there is no upstream: other names get REFUSED. TTL 5 s, as CoreDNS.
dnsmasq listens on the pod's own address only; pods reach it through the DNS Service's
ClusterIP, which kube-proxy's rules DNAT to that address like any other Service. It is a plan
daemon (ops below): the workload agent runs it as the DNS pod's container, and `up` waits until
it answers.
"""
from __future__ import annotations

from pathlib import Path

from lab import state
from lab.addressing import AddressPlan
from lab.model import Topology
from lab.ops import AnswersDns, Op, StartDaemon, WriteFile
from lab.services import schema
from lab.services.endpoints import CLUSTER_DOMAIN, ServicePlan

TTL = 5


def dashed(ip: object) -> str:
    return str(ip).replace(".", "-")


def config(topo: Topology, addrs: AddressPlan, splan: ServicePlan) -> str:
    """dnsmasq's configuration: how it runs, then one line per record."""
    if splan.dns_pod is None:
        raise ValueError("this topology has no DNS pod (no services: key)")
    ips = {p.name: p.ip for p in addrs.pods}
    namespaces = {p.name: p.namespace for p in topo.pods}
    lines = [
        "# The cluster DNS of this podlab lab: dnsmasq in the role CoreDNS plays in kubeadm clusters.",
        "# Generated from the topology by podlab (lab/services/dns.py); read once at start.",
        "keep-in-foreground", "log-facility=-", "log-queries", "pid-file=", "user=nobody",
        "no-resolv", "no-hosts",
        f"listen-address={ips[splan.dns_pod]}", "bind-interfaces",
        "domain-needed", f"local=/{CLUSTER_DOMAIN}/", f"local-ttl={TTL}", f"neg-ttl={TTL}",
        "", "# Services: <service>.<namespace>.svc.cluster.local"]
    srv: list[str] = []
    for s in splan.services:
        if not s.headless:
            lines.append(f"host-record={s.fqdn},{s.ip}")
            srv += [f"srv-host=_{pp.port.name}._{pp.port.protocol.lower()}.{s.fqdn},{s.fqdn},{pp.port.port},0,100"
                    for pp in s.ports if pp.port.name]
            continue
        # Headless: the pods themselves; each also under its dashed address, the SRV targets.
        for pod in s.pods:
            lines.append(f"host-record={dashed(ips[pod])}.{s.fqdn},{ips[pod]}")
        lines += [f"host-record={s.fqdn},{ips[pod]}" for pod in s.pods]
        for pp in s.ports:
            if pp.port.name and pp.backends:
                weight = 100 // len(pp.backends)   # CoreDNS splits 100 between the records of a priority
                srv += [f"srv-host=_{pp.port.name}._{pp.port.protocol.lower()}.{s.fqdn},"
                        f"{dashed(b.ip)}.{s.fqdn},{b.port},0,{weight}" for b in pp.backends]
    lines += ["", "# Named ports: _<port>._<protocol>.<service>.<namespace>.svc.cluster.local", *srv]
    lines += ["", "# Pods: <a-b-c-d>.<namespace>.pod.cluster.local"]
    seen: set[str] = set()
    for name, ip in ips.items():
        record = f"host-record={dashed(ip)}.{namespaces[name]}.pod.{CLUSTER_DOMAIN},{ip}"
        if record not in seen:   # hostNetwork pods of one node share its address
            seen.add(record)
            lines.append(record)
    return "\n".join(lines) + "\n"


CONFIG = schema.DNS_CONFIG


def config_path(lab: str) -> Path:
    return state.lab_dir(lab) / CONFIG


def ops(topo: Topology, addrs: AddressPlan, splan: ServicePlan) -> list[Op]:
    """The DNS server's configuration, and dnsmasq as the DNS pod's container, ready once it answers."""
    if splan.dns_pod is None:
        return []
    pod = next(p for p in topo.pods if p.name == splan.dns_pod)
    container = next(c for c in pod.containers if c.name == schema.DNS_CONTAINER)
    addr = next(p for p in addrs.pods if p.name == pod.name)
    conf = state.in_lab_dir(CONFIG)
    return [WriteFile(conf, config(topo, addrs, splan), "the cluster DNS server's configuration"),
            StartDaemon("dnsmasq", "container", addr.netns, container.command, (conf,),
                        AnswersDns(addr.netns, addr.ip, f"kubernetes.default.svc.{CLUSTER_DOMAIN}"),
                        "dnsmasq-base", container=f"{pod.name}/{container.name}")]


def log_path(lab: str, pod: str) -> Path:
    return state.lab_dir(lab) / "logs" / f"{pod}_dnsmasq.log"
