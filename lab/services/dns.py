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

Two files, so a running lab's DNS follows its pods without a moment of silence:
  dnsmasq.conf       how it runs, and the SRV records (dnsmasq reads its configuration once)
  records/cluster    every A record (and the PTR of its first name), in hosts-file form, in a
                     directory given as --hostsdir: dnsmasq watches it with inotify and reads a
                     file again, dropping the old file's records, when one is renamed into it.
                     The engine writes it by rename (WriteFile.live), and the rename queues the
                     inotify event before it returns; dnsmasq's main loop reads inotify events
                     before the queries of the same wake-up, so a query sent once `podlab apply`
                     returns already sees the new records. (SIGHUP would reload them too, but a
                     signal is handled by the loop after it; a query can slip in ahead of it.)
A change that only moves pods rewrites the records; one that changes the configuration (a
Service's SRV records: its named ports, or the pods behind a headless Service) restarts dnsmasq
(lab.change).
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
    """dnsmasq's configuration: how it runs, then the SRV records (the A records are in records())."""
    if splan.dns_pod is None:
        raise ValueError("this topology has no DNS pod (dns: false)")
    ips = {p.name: p.ip for p in addrs.pods}
    lines = [
        "# The cluster DNS of this podlab lab: dnsmasq in the role CoreDNS plays in kubeadm clusters.",
        "# Generated from the topology by podlab (lab/services/dns.py); read once at start. The A records",
        f"# are in {RECORDS_DIR}/ (--hostsdir), which dnsmasq reads again whenever a file there is replaced.",
        "keep-in-foreground", "log-facility=-", "log-queries", "pid-file=",
        # root, not nobody: it reads its records again from the lab's state directory, root's only.
        "user=root",
        "no-resolv", "no-hosts",
        f"listen-address={ips[splan.dns_pod]}", "bind-interfaces",
        "domain-needed", f"local=/{CLUSTER_DOMAIN}/", f"local-ttl={TTL}", f"neg-ttl={TTL}",
        "", "# Named ports: _<port>._<protocol>.<service>.<namespace>.svc.cluster.local"]
    for s in splan.services:
        if not s.headless:
            lines += [f"srv-host=_{pp.port.name}._{pp.port.protocol.lower()}.{s.fqdn},{s.fqdn},{pp.port.port},0,100"
                      for pp in s.ports if pp.port.name]
            continue
        for pp in s.ports:     # headless: one per pod, its target the pod's own name
            if pp.port.name and pp.backends:
                weight = 100 // len(pp.backends)   # CoreDNS splits 100 between the records of a priority
                lines += [f"srv-host=_{pp.port.name}._{pp.port.protocol.lower()}.{s.fqdn},"
                          f"{dashed(b.ip)}.{s.fqdn},{b.port},0,{weight}" for b in pp.backends]
    return "\n".join(lines) + "\n"


def records(topo: Topology, addrs: AddressPlan, splan: ServicePlan) -> str:
    """Every A record, one per line as in a hosts file; the first line naming an address also
    answers its PTR query (a ClusterIP's is its Service)."""
    ips = {p.name: str(p.ip) for p in addrs.pods}    # as text once: a thousand pods' addresses, each written twice
    namespaces = {p.name: p.namespace for p in topo.pods}
    lines = ["# The cluster DNS's A records (lab/services/dns.py); dnsmasq reads this file again when it is replaced.",
             "# Services: <service>.<namespace>.svc.cluster.local"]
    for s in splan.services:
        if not s.headless:
            lines.append(f"{s.ip} {s.fqdn}")
            continue
        # Headless: the pods themselves; each also under its dashed address, the SRV targets.
        lines += [f"{ips[pod]} {dashed(ips[pod])}.{s.fqdn}" for pod in s.pods]
        lines += [f"{ips[pod]} {s.fqdn}" for pod in s.pods]
    lines.append("# Pods: <a-b-c-d>.<namespace>.pod.cluster.local")
    seen: set[str] = set()
    for name, ip in ips.items():
        record = f"{ip} {dashed(ip)}.{namespaces[name]}.pod.{CLUSTER_DOMAIN}"
        if record not in seen:   # hostNetwork pods of one node share its address
            seen.add(record)
            lines.append(record)
    return "\n".join(lines) + "\n"


CONFIG = schema.DNS_CONFIG
RECORDS_DIR = schema.DNS_RECORDS
RECORDS = f"{RECORDS_DIR}/cluster"


def config_path(lab: str) -> Path:
    return state.lab_dir(lab) / CONFIG


def ops(topo: Topology, addrs: AddressPlan, splan: ServicePlan) -> list[Op]:
    """The DNS server's configuration and records, and dnsmasq as the DNS pod's container, ready
    once it answers. Only the configuration is the daemon's `config`: a change that rewrites it
    restarts dnsmasq; one that rewrites the records does not (dnsmasq reads them again itself)."""
    if splan.dns_pod is None:
        return []
    pod = next(p for p in topo.pods if p.name == splan.dns_pod)
    container = next(c for c in pod.containers if c.name == schema.DNS_CONTAINER)
    addr = next(p for p in addrs.pods if p.name == pod.name)
    conf = state.in_lab_dir(CONFIG)
    return [WriteFile(conf, config(topo, addrs, splan), "the cluster DNS server's configuration"),
            WriteFile(state.in_lab_dir(RECORDS), records(topo, addrs, splan), "the cluster DNS server's A records",
                      live=True),
            StartDaemon("dnsmasq", "container", addr.netns, container.command, (conf,),
                        AnswersDns(addr.netns, addr.ip, f"kubernetes.default.svc.{CLUSTER_DOMAIN}"),
                        "dnsmasq-base", container=f"{pod.name}/{container.name}")]
