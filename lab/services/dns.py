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
ClusterIP, which kube-proxy's rules DNAT to that address like any other Service.
"""
from __future__ import annotations

import socket
import time
from pathlib import Path

from lab import state
from lab.addressing import AddressPlan
from lab.errors import PodlabError
from lab.model import Topology
from lab.services import dnsclient
from lab.services.endpoints import CLUSTER_DOMAIN, ServicePlan

TTL = 5
READY_TIMEOUT = 15.0


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


def config_path(lab: str) -> Path:
    return state.lab_dir(lab) / "dns" / "dnsmasq.conf"


def write(lab: str, topo: Topology, addrs: AddressPlan, splan: ServicePlan) -> Path:
    path = config_path(lab)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config(topo, addrs, splan))
    return path


def container_command(lab: str) -> list[str]:
    """The DNS container's command line: dnsmasq reads the lab's config (before it drops to nobody)."""
    return ["dnsmasq", "--keep-in-foreground", f"--conf-file={config_path(lab)}"]


def log_path(lab: str, pod: str) -> Path:
    return state.lab_dir(lab) / "logs" / f"{pod}_dnsmasq.log"


def wait_ready(lab: str, addrs: AddressPlan, splan: ServicePlan, timeout: float = READY_TIMEOUT) -> None:
    """Until the DNS server answers from inside its pod (a readiness probe): PodlabError if it never does."""
    from lab.engine import netns
    if splan.dns_pod is None:
        return
    pod = next(p for p in addrs.pods if p.name == splan.dns_pod)
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            sock = netns.socket_in(pod.netns, socket.AF_INET, socket.SOCK_DGRAM)
        except OSError as e:
            raise PodlabError(f"cannot reach the DNS pod {pod.name}: {e}") from None
        try:
            answer = dnsclient.ask(sock, str(pod.ip), f"kubernetes.default.svc.{CLUSTER_DOMAIN}", timeout=0.5)
            if answer.ok:
                return
            last = f"answer {answer.rcode}"
        except (TimeoutError, OSError) as e:
            last = str(e)
        finally:
            sock.close()
        time.sleep(0.1)
    try:
        tail = "\n".join(log_path(lab, pod.name).read_text(errors="replace").splitlines()[-10:])
    except OSError:
        tail = "(no log)"
    raise PodlabError(f"the cluster DNS (dnsmasq in pod {pod.name}) did not answer within {timeout:g} s "
                      f"({last}); its log:\n{tail}")
