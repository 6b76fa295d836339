"""Grader of exercise 11: every node's kube-proxy table turns Service echo's ClusterIP into its pods again.

Real requests from inside every pod (lab.services.probe, what `podlab check` sends), and each
node's `table ip kube-proxy` read from the kernel (`nft -j`) against what kube-proxy writes for
the lab's Services and endpoints.
"""
import json

import pytest

from lab.services import endpoints, nft
from lab.services import probe as service_probe

SERVICE = "default/echo"


@pytest.fixture(scope="module")
def probes(podlab_lab):
    """Every pod to every Service port, by address, by name and hairpin: real packets, once per check."""
    results, _notes = service_probe.run(podlab_lab)
    return [r for r in results if r.service == SERVICE]


def where(podlab, pod):
    node = next((p.node for p in podlab.addresses.pods if p.name == pod), None)
    return f"pod {pod}" + (f" (on {node})" if node else "")


def failures(podlab, results, what):
    lines = [f"{where(podlab, r.src)} gets no answer from Service {SERVICE} at {r.port} {what} "
             f"({r.error or 'failed'})" for r in results if not r.ok]
    return "; ".join(lines)


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
    """on every node, kube-proxy's table sends each Service's ClusterIP and port to that Service's pods"""
    problems = [p for node in podlab.nodes() for p in table_problems(podlab, node)]
    assert not problems, "; ".join(problems)


def test_by_address(podlab, probes):
    """every pod reaches Service echo by its ClusterIP (10.96.0.2, port 80)"""
    results = [r for r in probes if r.via == "address"]
    assert results, f"no pod was probed against Service {SERVICE}"
    assert all(r.ok for r in results), failures(podlab, results, "by its ClusterIP")


def test_by_name(podlab, probes):
    """every pod reaches Service echo by its name ('echo', through the cluster DNS)"""
    results = [r for r in probes if r.via == "name"]
    assert results, f"no pod was probed against Service {SERVICE}"
    assert all(r.ok for r in results), failures(podlab, results, "by its name")


def test_backend_sees_the_client(podlab, probes):
    """the echo backend sees pod client's own address: nothing NATs pod -> Service -> pod"""
    client = str(podlab.target("client").ip)
    results = [r for r in probes if r.src == "client" and r.via in ("address", "name")]
    assert results and any(r.ok for r in results), (
        f"pod client's requests to Service {SERVICE} got no answer, so no backend could say which address it saw")
    for r in results:
        assert r.seen == client if r.ok else True, (
            f"the echo backend saw {r.seen} when pod client ({client}) asked Service {SERVICE} by {r.via}: "
            f"the pod's address was rewritten on the way")


def test_hairpin(podlab, probes):
    """each echo pod reaches its own Service, and lands on itself when picked (hairpin)"""
    results = [r for r in probes if r.via == "hairpin"]
    bad = [f"{where(podlab, r.src)}: {r.error or 'failed'}" for r in results if not r.passed]
    assert results and not bad, "; ".join(bad) or "no echo pod was probed for hairpin"
