"""Grader of exercise 12: every pod's resolver reaches the cluster DNS through the kube-dns Service again.

Real DNS questions from inside every pod, asked the way its resolver asks (its resolv.conf's
nameserver, search list and ndots: lab.services.dnsclient, what `podlab nslookup` uses), real
requests to Service web by name (lab.services.probe, what `podlab check` sends), and each node's
`table ip kube-proxy` read from the kernel (`nft -j`) against what kube-proxy writes.
"""
import json
import socket

from lab.engine import netns
from lab.services import dnsclient, endpoints, nft, resolv, schema
from lab.services import probe as service_probe
from lab.services.cli import _resolv_settings

SERVICE = "default/web"
FQDN = "web.default.svc.cluster.local"


def where(podlab, pod):
    node = next((p.node for p in podlab.addresses.pods if p.name == pod), None)
    return f"pod {pod}" + (f" (on {node})" if node else "")


def dns_clients(podlab):
    """The pods that use the cluster DNS (hostNetwork pods use their node's resolver)."""
    return [p for p in podlab.topology.pods if not p.host_network and resolv.mounts_for(podlab.lab.name, p.name)]


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


# ---------------------------------------------------------------- the table, as the kernel holds it

def _walk(obj, key):
    """Every value under `key` anywhere in nft's JSON."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key:
                yield v
            yield from _walk(v, key)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk(v, key)


def read_table(podlab, node):
    done = podlab.run(node, ["nft", "-j", "list", "table", "ip", nft.TABLE])
    if done.returncode != 0:
        return None
    items = json.loads(done.stdout)["nftables"]
    elements, rules = {}, {}
    for item in items:
        if "map" in item and item["map"]["name"] == "service-ips":
            for key, verdict in item["map"].get("elem", []):
                ip, proto, port = key["concat"]
                elements[(ip, proto, int(port))] = next(iter(_walk(verdict, "target")), None)
        elif "chain" in item:
            rules.setdefault(item["chain"]["name"], [])
        elif "rule" in item:
            rules.setdefault(item["rule"]["chain"], []).append(item["rule"]["expr"])
    return elements, rules


def table_problems(podlab, node):
    """What is missing or wrong in a node's kube-proxy table, in words (empty: it is as kube-proxy writes it)."""
    table = read_table(podlab, node)
    if table is None:
        return [f"{node} has no table ip {nft.TABLE}: nothing there turns a ClusterIP into a pod address"]
    elements, rules = table
    splan = endpoints.plan(podlab.topology, podlab.addresses)
    problems, expected = [], {}
    for svc in splan.services:
        if svc.headless:
            continue
        for pp in svc.ports:
            if not pp.backends:
                continue
            proto = pp.port.protocol.lower()
            key = (str(svc.ip), proto, pp.port.port)
            chain = f"service-{nft.port_base(svc, pp)}"
            expected[key] = chain
            shown = f"{svc.ip} . {proto} . {pp.port.port}"
            if key not in elements:
                problems.append(f"{node}'s kube-proxy map service-ips has no element for {shown} (Service {svc.key}): "
                                f"packets from pods on {node} to that ClusterIP are never DNATed to a pod, so they "
                                f"go nowhere")
                continue
            if elements[key] != chain:
                problems.append(f"{node}'s service-ips map sends {shown} (Service {svc.key}) to "
                                f"{elements[key]}, but kube-proxy sends it to chain {chain}")
                continue
            if chain not in rules:
                problems.append(f"{node} has no chain {chain} (Service {svc.key})")
                continue
            wanted = {nft.endpoint_chain(svc, pp, b): b for b in pp.backends}
            spread = {t for expr in rules[chain] for t in _walk(expr, "target")} - {"mark-for-masquerade"}
            if spread != set(wanted):
                eps = ", ".join(f"{b.ip}:{b.port}" for b in wanted.values())
                problems.append(f"{node}'s chain {chain} picks among {sorted(spread) or 'no endpoints'}, but "
                                f"Service {svc.key}'s endpoints are {eps}")
                continue
            for ep_chain, b in wanted.items():
                dnats = [(d.get("addr"), d.get("port"))
                         for expr in rules.get(ep_chain, []) for d in _walk(expr, "dnat")]
                if (str(b.ip), b.port) not in dnats:
                    problems.append(f"{node}'s chain {ep_chain} does not DNAT to {b.ip}:{b.port} "
                                    f"(an endpoint of Service {svc.key})")
    for key, target in elements.items():
        if key not in expected:
            problems.append(f"{node}'s service-ips map has an element kube-proxy would not write: "
                            f"{' . '.join(map(str, key))} : goto {target}")
    hooks = {"nat-prerouting": "services", "nat-output": "services"}
    for chain, target in hooks.items():
        if target not in {t for expr in rules.get(chain, []) for t in _walk(expr, "target")}:
            problems.append(f"{node}'s chain {chain} does not jump to {target}")
    if "@service-ips" not in {d for expr in rules.get("services", []) for d in _walk(expr, "data")}:
        problems.append(f"{node}'s chain services does not look destinations up in @service-ips")
    return problems


# ---------------------------------------------------------------- the checks

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
