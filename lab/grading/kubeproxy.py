"""Graders' view of kube-proxy: a node's `table ip kube-proxy` read from the kernel (nft -j) and
compared with what kube-proxy writes for the lab's Services and endpoints (lab.services.nft)."""
import json

from lab.services import endpoints, nft


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
    splan = endpoints.now(podlab.topology, podlab.addresses, podlab.lab.name)   # ready pods, as kube-proxy has them
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
