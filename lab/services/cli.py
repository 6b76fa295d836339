"""Services on the command line: `podlab get services|endpoints` (kubectl's view: what the API
holds), `podlab nslookup POD NAME` (a name becoming an address, step by step, from inside the
pod), and the helpers `exec`, `curl` and `ping` use for Service and DNS names.

`get` shows what the lab was built from, as kubectl shows API objects; the kernel's side is
`podlab exec NODE -- nft list table ip kube-proxy`. Comparing the two is the point of the
exercises that break one of them.
"""
from __future__ import annotations

import argparse
import json
import socket
import time
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any, TextIO

from lab import ages
from lab.cliopts import lab_option
from lab.errors import PodlabError

if TYPE_CHECKING:
    from lab.api import Lab, Target
    from lab.listing import Query
    from lab.services.endpoints import ServiceAddr, ServicePlan

NEEDS_ROOT = {"nslookup"}
MAX_SHOWN_ENDPOINTS = 3   # kubectl's "+ N more..."


def register(sub: argparse._SubParsersAction) -> dict[str, Any]:
    sp = sub.add_parser("nslookup", help="resolve a name from inside a pod through the cluster DNS, showing "
                        "every name its resolver tries (search list, ndots:5)")
    sp.add_argument("src", metavar="POD", help="the pod that asks (its /etc/resolv.conf decides how)")
    sp.add_argument("name", help="a Service name (nginx, nginx.default, nginx.default.svc.cluster.local), a pod "
                    "name like 10-244-1-2.default.pod.cluster.local, an SRV name, or an address (reverse lookup)")
    sp.add_argument("-t", "--type", default=None, choices=["A", "SRV", "PTR", "CNAME", "AAAA", "TXT", "ANY"],
                    help="record type (default A; PTR for an address)")
    lab_option(sp)
    return {"nslookup": cmd_nslookup}


def _splan(lab: Lab) -> ServicePlan:
    """The Services as they are now: endpoints are the ready pods (a plan's would be every pod)."""
    from lab.services import endpoints
    return endpoints.now(lab.topology, lab.addresses, lab.name)


def _require_services(lab: Lab) -> ServicePlan:
    if not lab.topology.cluster_services:
        raise PodlabError(f"lab {lab.name} has no Services: its topology says dns: false and has no services: key "
                          "(without 'dns: false' every lab has the cluster DNS and its Service)")
    return _splan(lab)


# ---------------------------------------------------------------------------------------
# podlab get services | endpoints
# ---------------------------------------------------------------------------------------
def service_rows(lab: Lab) -> list[dict[str, Any]]:
    from lab.services.endpoints import port_label
    rows, now, made = [], time.time(), ages.services_added(lab.name)
    for s in sorted(_splan(lab).services, key=lambda s: (s.namespace, s.name)):
        svc = s.service
        rows.append({
            "namespace": s.namespace, "name": s.name, "type": svc.type,
            "clusterIP": str(s.ip) if s.ip else "None", "externalIP": "<none>",
            "ports": [{"name": p.port.name, "port": p.port.port, "targetPort": p.port.target_port,
                       "protocol": p.port.protocol, **({"nodePort": p.port.node_port} if p.port.node_port else {})}
                      for p in s.ports],
            "portsText": ",".join(port_label(p.port) for p in s.ports) or "<none>",
            "selector": dict(svc.selector),
            "fqdn": s.fqdn,
            "age": now - made.get(f"{s.namespace}/{s.name}", lab.created)})
    return rows


def endpoint_rows(lab: Lab) -> list[dict[str, Any]]:
    rows, now, made = [], time.time(), ages.services_added(lab.name)    # an Endpoints is its Service's age
    for s in sorted(_splan(lab).services, key=lambda s: (s.namespace, s.name)):
        addresses = list(dict.fromkeys(f"{b.ip}:{b.port}" for p in s.ports for b in p.backends))
        rows.append({
            "namespace": s.namespace, "name": s.name, "endpoints": addresses,
            "subsets": [{"port": p.port.name, "protocol": p.port.protocol,
                         "addresses": [{"ip": str(b.ip), "port": b.port, "pod": b.pod, "node": b.node}
                                       for b in p.backends]} for p in s.ports],
            "age": now - made.get(f"{s.namespace}/{s.name}", lab.created)})
    return rows


def _shown(addresses: list[str], wide: bool) -> str:
    if not addresses:
        return "<none>"
    if wide or len(addresses) <= MAX_SHOWN_ENDPOINTS:
        return ",".join(addresses)
    return ",".join(addresses[:MAX_SHOWN_ENDPOINTS]) + f" + {len(addresses) - MAX_SHOWN_ENDPOINTS} more..."


def cmd_get(lab: Lab, query: Query, output: str, out: TextIO, err: TextIO, watching: bool = False,
            seconds: float | None = None) -> int:
    """`podlab get services|endpoints [NAME ...] [-n NS | -A] [-w]` (cli.cmd_get hands these over)."""
    from lab import listing, render
    _require_services(lab)
    wide = output == "wide"
    services = query.resource == "services"

    def rows_of(lab: Lab) -> list[dict[str, Any]]:
        return query.select(service_rows(lab) if services else endpoint_rows(lab))[0]
    rows, missing = query.select(service_rows(lab) if services else endpoint_rows(lab))
    if output == "json":
        print(json.dumps([{k: v for k, v in r.items() if k != "portsText"} for r in rows], indent=2), file=out)
        return listing.report(query, rows, missing, err, table=False)
    cols, table = _listing(query, rows, services, wide)
    if rows or (watching and not query.names):    # -w on nothing yet: the header, then what comes
        print(render.table(cols, table), file=out)
    code = listing.report(query, rows, missing, err, table=not watching)
    if watching and not missing:      # kubectl does not watch what it could not get
        from lab import watch
        return watch.watch(lab.name, cols, table, lambda lab: _listing(query, rows_of(lab), services, wide)[1],
                           query.key_cells, seconds, out)
    return code


def _listing(query: Query, rows: list[dict[str, Any]], services: bool,
             wide: bool) -> tuple[list[str], list[list[str]]]:
    """The columns and cells kubectl prints for these Services or Endpoints (NAMESPACE first with -A)."""
    from lab import render
    ns: list[str] = ["NAMESPACE"] if query.namespace_column else []

    def first(r: dict[str, Any]) -> list[str]:
        return [r["namespace"], r["name"]] if ns else [r["name"]]
    if services:
        cols = [*ns, "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"] + (["SELECTOR"] if wide else [])
        return cols, [[*first(r), r["type"], r["clusterIP"], r["externalIP"], r["portsText"], render.age(r["age"])]
                      + ([",".join(f"{k}={v}" for k, v in r["selector"].items()) or "<none>"] if wide else [])
                      for r in rows]
    return ([*ns, "NAME", "ENDPOINTS", "AGE"],
            [[*first(r), _shown(r["endpoints"], wide), render.age(r["age"])] for r in rows])


# ---------------------------------------------------------------------------------------
# Names for exec, curl and ping
# ---------------------------------------------------------------------------------------
def exec_mounts(lab: Lab, target: Target) -> list[tuple[str, str]]:
    """The kubelet's files a process in this pod sees (none for nodes, hosts, hostNetwork pods)."""
    from lab.services import resolv
    if target.kind != "pod":
        return []
    return resolv.mounts_for(lab, target.name)


def find_service(splan: ServicePlan, name: str, namespace: str = "default") -> ServiceAddr | None:
    """The Service a name means from a pod of `namespace`, the way the search list reads it."""
    name = name.rstrip(".")
    for s in splan.services:
        forms = {f"{s.name}.{s.namespace}", f"{s.name}.{s.namespace}.svc", s.fqdn}
        if name in forms or (name == s.name and s.namespace == namespace):
            return s
    return None


def _namespace_of(lab: Lab, target: Target) -> str:
    return next((p.namespace for p in lab.topology.pods if p.name == target.name), "default")


def destination(lab: Lab, src: Target, name: str) -> tuple[str, ServiceAddr | None, str | None]:
    """What `curl`/`ping` aim at: (host for the command, the Service if it is one, a note).

    podlab's own names (pods, nodes, hosts) become their address, as before; a Service or
    DNS name from a pod that uses the cluster DNS is left as it is, so the pod's own resolver
    looks it up; from a node or host (which use the node's resolver, not the cluster DNS)
    podlab looks up a Service itself and says so.
    """
    if name in lab.targets():
        return str(lab.address_of(name)), None, None
    try:
        IPv4Address(name)
        return name, None, None
    except ValueError:
        pass
    splan = _splan(lab) if lab.topology.cluster_services else None
    service = find_service(splan, name, _namespace_of(lab, src)) if splan else None
    dns_name = service is not None or "." in name
    if dns_name and exec_mounts(lab, src):
        return name, service, None
    if service is not None:
        if service.ip is None:
            raise PodlabError(f"{name} is a headless Service: it has no address of its own; ask from a pod, "
                              f"whose cluster DNS answers with the pods' addresses")
        if src.kind == "outside":
            node_ports = [p.port.node_port for p in service.ports if p.port.node_port]
            hint = (f"; from outside, use a NodePort: {lab.addresses.nodes[0].ip}:{node_ports[0]}" if node_ports
                    else "; from outside, only a NodePort Service is reachable (on any node's address)")
            return str(service.ip), service, (f"({src.name} is outside the cluster: it has no route to the "
                                              f"ClusterIP {service.ip} of {service.key}{hint})")
        return str(service.ip), service, (f"({src.name} uses its node's resolver, not the cluster DNS: "
                                          f"podlab looked up Service {service.key} = {service.ip})")
    if dns_name and splan is None and not any(t.startswith(name) for t in lab.targets()):
        raise PodlabError(f"{name!r} looks like a DNS name, but lab {lab.name} has no cluster DNS (its topology says "
                          "dns: false); aim at a pod, node or host by name or address")
    return str(lab.address_of(name)), None, None


def ping_hint(service: ServiceAddr | None) -> str | None:
    if service is None:
        return None
    return (f"(a ClusterIP is not a machine: kube-proxy's rules DNAT only the Service's ports "
            f"({', '.join(f'{p.port.port}/{p.port.protocol}' for p in service.ports) or 'none'}), so nothing "
            f"answers a ping; try 'podlab curl' instead)")


# ---------------------------------------------------------------------------------------
# podlab nslookup
# ---------------------------------------------------------------------------------------
def _resolv_settings(lab: Lab, pod: str) -> tuple[str, list[str], int]:
    """nameserver, search list and ndots, read from the pod's own resolv.conf (as its resolver does)."""
    from lab.services import resolv
    nameserver, search, ndots = None, [], 1
    for line in resolv.resolv_conf_of(lab, pod).splitlines():
        words = line.split()
        if not words or words[0].startswith(("#", ";")):
            continue
        if words[0] == "nameserver" and len(words) > 1 and nameserver is None:
            nameserver = words[1]
        elif words[0] in ("search", "domain"):
            search = words[1:]
        elif words[0] == "options":
            for option in words[1:]:
                if option.startswith("ndots:") and option[6:].isdigit():
                    ndots = min(int(option[6:]), 15)
    if nameserver is None:
        raise PodlabError(f"pod {pod}'s /etc/resolv.conf ({resolv.pod_dir(lab.name, pod)}) names no nameserver")
    return nameserver, search, ndots


def _reverse_name(address: str) -> str:
    return ".".join(reversed(address.split("."))) + ".in-addr.arpa."


def cmd_nslookup(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from lab import api
    from lab.engine import netns
    from lab.services import dnsclient
    lab = api.pick(args.lab)
    splan = _require_services(lab)
    src = lab.target(args.src)
    if not exec_mounts(lab, src):
        raise PodlabError(f"{src.name} is a {'hostNetwork pod' if src.kind == 'pod' else src.kind}: it uses its "
                          "node's resolver, not the cluster DNS (dnsPolicy Default); ask from a pod, e.g. "
                          f"podlab nslookup {next((p.name for p in lab.addresses.pods if not p.host_network), 'POD')} "
                          f"{args.name}")
    nameserver, search, ndots = _resolv_settings(lab, src.name)
    name, qtype = args.name, args.type
    try:
        IPv4Address(name)
        name, qtype = _reverse_name(name), qtype or "PTR"   # absolute: the search list does not apply
    except ValueError:
        qtype = qtype or "A"
    dns_service = next((s for s in splan.services if s.ip is not None and str(s.ip) == nameserver), None)
    print(f"Server:    {nameserver}" + (f" ({dns_service.fqdn})" if dns_service else ""), file=out)
    print(f"Asked by:  {src.name}, whose /etc/resolv.conf says: search {' '.join(search) or '(none)'}; "
          f"ndots:{ndots}\n", file=out)
    sock = netns.socket_in(src.netns, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        result = dnsclient.lookup(sock, nameserver, name, search, ndots, qtype)
    finally:
        sock.close()
    width = max((len(a.name) for a in result.tries), default=0)
    for a in result.tries:
        values = ", ".join(a.values()) if a.ok else ""
        print(f"  asked {a.name:<{width}}  {qtype:<4} {a.rcode:<8} {values}".rstrip(), file=out)
    if result.error:
        print(f";; connection timed out; no servers could be reached ({result.error})", file=out)
        return 1
    answer = result.answer
    if answer is None:
        last = result.tries[-1].rcode if result.tries else "no answer"
        print(f"\n** server can't find {args.name}: {last}", file=out)
        return 1
    print("", file=out)
    for r in answer.records:
        if r.type == "A":
            print(f"Name:      {r.name.rstrip('.')}\nAddress:   {r.data}", file=out)
        elif r.type == "SRV":
            priority, weight, port, target = r.srv()
            print(f"{r.name.rstrip('.')}  service = {priority} {weight} {port} {target.rstrip('.')}", file=out)
        elif r.type == "PTR":
            print(f"{r.name.rstrip('.')}  name = {r.data.rstrip('.')}", file=out)
        else:
            print(f"{r.name.rstrip('.')}  {r.type} {r.data}", file=out)
    return 0


# ---------------------------------------------------------------------------------------
# podlab plan: the Services part
# ---------------------------------------------------------------------------------------
def plan_text(plan: Any) -> str:
    """Services, endpoints, the DNS server and hostPorts of a plan ('' if it has none). No root needed."""
    from lab import render
    from lab.services import endpoints
    topo, addrs = plan.topology, plan.addresses
    lines: list[str] = []
    if topo.cluster_services:
        splan = endpoints.plan(topo, addrs)
        rows = [[s.key, s.service.type, str(s.ip) if s.ip else "None",
                 ",".join(endpoints.port_label(p.port) for p in s.ports) or "<none>",
                 _shown(list(dict.fromkeys(f"{b.ip}:{b.port}" for p in s.ports for b in p.backends)), True)]
                for s in splan.services]
        lines += ["", render.table(["SERVICE", "TYPE", "CLUSTER-IP", "PORT(S)", "ENDPOINTS"], rows)]
        dns_pod = next((p for p in addrs.pods if p.name == splan.dns_pod), None)
        if dns_pod is not None:
            lines += ["", f"cluster DNS: dnsmasq in pod {dns_pod.name} ({dns_pod.ip}, {dns_pod.node}) behind the "
                          f"kube-dns Service {splan.dns_ip}, every pod's nameserver; kube-proxy's table "
                          f"'ip kube-proxy' on every node"]
    ips = {p.name: p for p in addrs.pods}
    nodes = {n.name: n for n in addrs.nodes}
    host_ports = [f"{nodes[pod.node].ip}:{p.host_port}/{p.protocol} ({pod.node}) -> {pod.name} {ips[pod.name].ip}:{p.port}"
                  for pod in topo.pods if not pod.host_network
                  for c in pod.containers for p in c.port_specs if p.host_port is not None]
    if host_ports:
        from lab import designs
        where = ("the portmap plugin's iptables rules, if the conflist lists it with capabilities.portMappings"
                 if designs.of(topo).attachment.runs_plugins else "portmap, table 'ip cni_hostport' on the pod's node")
        lines += ["", f"hostPorts ({where}):"] + [f"  {h}" for h in host_ports]
    return "\n".join(lines)
