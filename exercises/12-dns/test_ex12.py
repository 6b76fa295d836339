"""Grader of exercise 12: every pod's resolver reaches the cluster DNS through the kube-dns Service again.

Real DNS questions from inside every pod, asked the way its resolver asks (its resolv.conf's
nameserver, search list and ndots: lab.services.dnsclient, what `podlab nslookup` uses), real
requests to Service web by name (lab.services.probe, what `podlab check` sends), and each node's
`table ip kube-proxy` read from the kernel (`nft -j`) against what kube-proxy writes.
"""
import socket

from lab.engine import netns
from lab.services import dnsclient, endpoints, resolv, schema
from lab.grading.kubeproxy import table_problems
from lab.services import probe as service_probe
from lab.services.cli import _resolv_settings

SERVICE = "default/web"
FQDN = "web.default.svc.cluster.local"


def where(podlab, pod):
    node = next((p.node for p in podlab.addresses.pods if p.name == pod), None)
    return f"pod {pod}" + (f" (on {node})" if node else "")


def dns_clients(podlab):
    """The pods that use the cluster DNS (hostNetwork pods use their node's resolver)."""
    return [p for p in podlab.topology.pods if resolv.uses_cluster_dns(podlab.topology, p)]


def dns_service(podlab):
    splan = endpoints.plan(podlab.topology, podlab.addresses)
    return next(s for s in splan.services if (s.namespace, s.name) == schema.DNS)


def resolve_problems(podlab, name=None):
    """Resolve `name` from every pod as its resolver does; what went wrong, in words. Without a name:
    the short name a pod of that namespace would use ('web' in default, 'web.default' elsewhere)."""
    dns = dns_service(podlab)
    web = next(s for s in endpoints.plan(podlab.topology, podlab.addresses).services if s.key == SERVICE)
    problems = []
    for pod in dns_clients(podlab):
        who = where(podlab, pod.name)
        asking = name or (web.name if pod.namespace == web.namespace else f"{web.name}.{web.namespace}")
        nameserver, search, ndots = _resolv_settings(podlab.lab, pod.name)
        if nameserver != str(dns.ip):
            problems.append(f"{who} asks {nameserver}, not the kube-dns Service {dns.ip}: repair the way to the "
                            f"Service rather than going around it")
            continue
        sock = netns.socket_in(podlab.target(pod.name).netns, socket.AF_INET, socket.SOCK_DGRAM)
        try:
            found = dnsclient.lookup(sock, nameserver, asking, search, ndots, timeout=service_probe.TIMEOUT)
        finally:
            sock.close()
        if found.error:
            asked = dnsclient.search_names(asking, search, ndots)[len(found.tries)].rstrip(".")
            problems.append(f"{who} cannot resolve {asking}: its question for {asked} to the kube-dns Service "
                            f"({dns.ip}, 53/UDP) got no answer")
        elif str(web.ip) not in found.values():
            rcode = found.tries[-1].rcode if found.tries else "no answer"
            problems.append(f"{who} resolves {asking} to {', '.join(found.values()) or rcode}, "
                            f"not Service web's ClusterIP {web.ip}")
    return problems


def test_kube_proxy_tables(podlab):
    """on every node, kube-proxy's table sends each Service's ClusterIP and port (kube-dns's 53/UDP too) to its pods"""
    problems = [p for node in podlab.nodes() for p in table_problems(podlab, node)]
    assert not problems, "; ".join(problems)


def test_full_name_resolves(podlab):
    """every pod resolves web.default.svc.cluster.local to Service web's ClusterIP, through its own resolver"""
    problems = resolve_problems(podlab, FQDN)
    assert not problems, "; ".join(problems)


def test_short_name_resolves(podlab):
    """every pod resolves the short name 'web' (from kube-system: 'web.default') through its search list"""
    problems = resolve_problems(podlab)
    assert not problems, "; ".join(problems)


def test_reaches_service_by_name(podlab, podlab_lab):
    """every pod reaches Service web by its name, and by its ClusterIP"""
    results, _notes = service_probe.run(podlab_lab)
    results = [r for r in results if r.service == SERVICE and r.via in ("address", "name")]
    bad = [f"{where(podlab, r.src)} gets no answer from Service {SERVICE} by {r.via} ({r.error or 'failed'})"
           for r in results if not r.ok]
    assert results and not bad, "; ".join(bad) or f"no pod was probed against Service {SERVICE}"
