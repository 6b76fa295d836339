"""The nftables rulesets a node holds for Services and hostPorts, as text for `nft -f`. Pure.

`table ip kube-proxy` is what kube-proxy's nftables mode writes (pkg/proxy/nftables, the
version whose NodePort rule is `fib daddr type local`): every Service port's ClusterIP, protocol
and port sit in the `service-ips` verdict map, which jumps to the port's `service-…` chain;
that chain marks traffic from outside the pod CIDR for masquerade and picks an endpoint with
`numgen random mod N vmap`; each `endpoint-…` chain marks hairpin traffic (an endpoint
reaching its own Service) and DNATs. Chain names carry kube-proxy's hash (the first 8 base32
characters of the name's sha256). NodePorts go through an `external-…` chain that masquerades,
since the endpoint may be on another node. A port with no endpoints is rejected by the filter
chains. Every node gets the same table: Services are cluster-wide.

A Service port is rendered from a PortRules (plain data: the running kube-proxy of
lab.services.kube_proxy reads it from JSON), both into the whole table `up` loads and into the
transaction that replaces one port's chains and map elements in a running lab (update).

`table ip cni_hostport` is the CNI portmap plugin's nftables form, per node, for the hostPorts
of the pods there.

Stdlib only at run time: the workload agent imports it.
"""
from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ipaddress import IPv4Address, IPv4Network

    from lab.model import ContainerPort, Pod
    from lab.services.endpoints import Backend, PortPlan, ServiceAddr, ServicePlan

TABLE = "kube-proxy"
HOSTPORT_TABLE = "cni_hostport"
MASQUERADE_MARK = "0x004000"   # kube-proxy's --masquerade-bit 14, printed as it formats it
# nft 1.0 accepts named priorities (dstnat, srcnat) only on some hooks: write the numbers.
DSTNAT, SRCNAT, FILTER_PRE_DNAT = -100, 100, -110
CHAIN_NAME_MAX = 256 - 16      # knftables.NameLengthMax - chainNamePrefixLengthMax


def hash_and_truncate(name: str) -> str:
    """kube-proxy's hashAndTruncate: a hash prefix keeps names unique and tells similar ones apart."""
    encoded = base64.b32encode(hashlib.sha256(name.encode()).digest()).decode()
    name = f"{encoded[:8]}-{name}"
    return name if len(name) <= CHAIN_NAME_MAX else name[:CHAIN_NAME_MAX - 3] + "..."


@dataclass(frozen=True)
class PortRules:
    """One Service port as kube-proxy sees it: its address and the endpoints it sends to."""
    namespace: str
    service: str
    name: str                       # the port's name ("" for an unnamed port)
    protocol: str                   # tcp | udp (nft's spelling)
    cluster_ip: str
    port: int
    node_port: int | None
    endpoints: tuple[tuple[str, int], ...]   # (address, port), in the order the vmap numbers them

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What names the port for good (kube-proxy's ServicePortName and protocol)."""
        return (self.namespace, self.service, self.protocol, self.name)

    @property
    def base(self) -> str:
        return hash_and_truncate(f"{self.namespace}/{self.service}/{self.protocol}/{self.name}")

    @property
    def service_chain(self) -> str:
        return f"service-{self.base}"

    @property
    def external_chain(self) -> str:
        return f"external-{self.base}"

    def endpoint_chain(self, ip: str, port: int) -> str:
        return "endpoint-" + hash_and_truncate(f"{self.namespace}/{self.service}/{self.protocol}/{self.name}__{ip}/{port}")

    @property
    def comment(self) -> str:
        """kube-proxy's ServicePortName string, used in comments: ns/name:port (no ':' for an unnamed port)."""
        return f"{self.namespace}/{self.service}" + (f":{self.name}" if self.name else "")

    def with_endpoints(self, endpoints: Iterable[tuple[str, int]]) -> PortRules:
        return PortRules(self.namespace, self.service, self.name, self.protocol, self.cluster_ip, self.port,
                         self.node_port, tuple(endpoints))

    def record(self) -> dict:
        return {"namespace": self.namespace, "service": self.service, "name": self.name, "protocol": self.protocol,
                "clusterIP": self.cluster_ip, "port": self.port, "nodePort": self.node_port,
                "endpoints": [list(e) for e in self.endpoints]}

    @classmethod
    def from_record(cls, r: dict) -> PortRules:
        return cls(str(r["namespace"]), str(r["service"]), str(r["name"]), str(r["protocol"]), str(r["clusterIP"]),
                   int(r["port"]), int(r["nodePort"]) if r.get("nodePort") else None,
                   tuple((str(ip), int(port)) for ip, port in r.get("endpoints", ())))


def port_rules(svc: ServiceAddr, pp: PortPlan, backends: Iterable[Backend] | None = None) -> PortRules:
    """A planned Service port, sending to `backends` (default: all the plan gives it)."""
    chosen = pp.backends if backends is None else backends
    return PortRules(svc.namespace, svc.name, pp.port.name, pp.port.protocol.lower(), str(svc.ip), pp.port.port,
                     pp.port.node_port, tuple((str(b.ip), b.port) for b in chosen))


def port_base(svc: ServiceAddr, pp: PortPlan) -> str:
    return port_rules(svc, pp, ()).base


def endpoint_chain(svc: ServiceAddr, pp: PortPlan, backend: Backend) -> str:
    return port_rules(svc, pp, ()).endpoint_chain(str(backend.ip), backend.port)


def port_name(svc: ServiceAddr, pp: PortPlan) -> str:
    return port_rules(svc, pp, ()).comment


def elements(pr: PortRules) -> dict[str, tuple[str, str]]:
    """The port's element in each verdict map that holds one: map -> (key, element as written)."""
    key, node_key = f"{pr.cluster_ip} . {pr.protocol} . {pr.port}", f"{pr.protocol} . {pr.node_port}"
    if not pr.endpoints:
        comment = f'comment "{pr.comment}"'
        out = {"no-endpoint-services": (key, f"{key} {comment} : goto reject-chain")}
        if pr.node_port:
            out["no-endpoint-nodeports"] = (node_key, f"{node_key} {comment} : goto reject-chain")
        return out
    out = {"service-ips": (key, f"{key} : goto {pr.service_chain}")}
    if pr.node_port:
        out["service-nodeports"] = (node_key, f"{node_key} : goto {pr.external_chain}")
    return out


def chains(pr: PortRules, pod_cidr: IPv4Network | str) -> list[tuple[str, list[str]]]:
    """The port's own chains and their rules (none without endpoints: the filter chains reject it)."""
    if not pr.endpoints:
        return []
    targets = [pr.endpoint_chain(ip, port) for ip, port in pr.endpoints]
    spread = ", ".join(f"{i} : goto {c}" for i, c in enumerate(targets))
    out = [(pr.service_chain, [
        # Traffic from outside the pod network (a node, an outside host) is masqueraded, as
        # kube-proxy does with --cluster-cidr: the endpoint may be on another node.
        f"ip daddr {pr.cluster_ip} {pr.protocol} dport {pr.port} ip saddr != {pod_cidr} jump mark-for-masquerade",
        f"numgen random mod {len(targets)} vmap {{ {spread} }}"])]
    if pr.node_port:
        out.append((pr.external_chain, ["jump mark-for-masquerade", f"goto {pr.service_chain}"]))
    for (ip, port), chain in zip(pr.endpoints, targets):
        out.append((chain, [f"ip saddr {ip} jump mark-for-masquerade", f"meta l4proto {pr.protocol} dnat to {ip}:{port}"]))
    return out


def _map(name: str, key: str, comment: str, elements: list[str]) -> list[str]:
    lines = [f"\tmap {name} {{", f"\t\ttype {key} : verdict", f'\t\tcomment "{comment}"']
    if elements:
        lines.append("\t\telements = { " + ",\n\t\t\t     ".join(elements) + " }")
    return lines + ["\t}", ""]


def _chain(name: str, rules: list[str], hook: str | None = None, comment: str | None = None) -> list[str]:
    lines = [f"\tchain {name} {{"]
    if hook:
        lines.append(f"\t\t{hook}")
    if comment:
        lines.append(f'\t\tcomment "{comment}"')
    return lines + [f"\t\t{r}" for r in rules] + ["\t}", ""]


SERVICE_MAPS = ("service-ips", "service-nodeports", "no-endpoint-services", "no-endpoint-nodeports")


def planned_ports(splan: ServicePlan) -> list[PortRules]:
    """Every Service port kube-proxy handles, with all its planned endpoints. Headless Services are
    not among them: kube-proxy ignores them (DNS answers with the pods themselves)."""
    return [port_rules(svc, pp) for svc in splan.services if not svc.headless for pp in svc.ports]


def kube_proxy(splan: ServicePlan, pod_cidr: IPv4Network) -> str:
    """The kube-proxy table: the same on every node."""
    return table(planned_ports(splan), pod_cidr)


def table(ports: list[PortRules], pod_cidr: IPv4Network | str) -> str:
    """The whole kube-proxy table for these Service ports."""
    in_maps: dict[str, list[str]] = {m: [] for m in SERVICE_MAPS}
    per_service: list[str] = []
    for pr in ports:
        for m, (_key, element) in elements(pr).items():
            in_maps[m].append(element)
        for name, rules in chains(pr, pod_cidr):
            per_service += _chain(name, rules)
    nodeport_match = "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport"
    lines = ["table ip kube-proxy {", '\tcomment "rules for kube-proxy"', ""]
    lines += _map("service-ips", "ipv4_addr . inet_proto . inet_service",
                  "ClusterIP, ExternalIP and LoadBalancer IP traffic", in_maps["service-ips"])
    lines += _map("service-nodeports", "inet_proto . inet_service", "NodePort traffic", in_maps["service-nodeports"])
    lines += _map("no-endpoint-services", "ipv4_addr . inet_proto . inet_service",
                  "vmap to drop or reject packets to services with no endpoints", in_maps["no-endpoint-services"])
    lines += _map("no-endpoint-nodeports", "inet_proto . inet_service",
                  "vmap to drop or reject packets to service nodeports with no endpoints",
                  in_maps["no-endpoint-nodeports"])
    lines += _map("firewall-ips", "ipv4_addr . inet_proto . inet_service",
                  "destinations that are subject to LoadBalancerSourceRanges", [])
    filter_hook = "type filter hook {} priority %d; policy accept;" % FILTER_PRE_DNAT
    lines += _chain("filter-prerouting", ["ct state new jump firewall-check"], filter_hook.format("prerouting"))
    lines += _chain("filter-input", ["ct state new jump endpoints-check"], filter_hook.format("input"))
    lines += _chain("filter-forward", ["ct state new jump endpoints-check"], filter_hook.format("forward"))
    lines += _chain("filter-output", ["ct state new jump endpoints-check", "ct state new jump firewall-check"],
                    filter_hook.format("output"))
    lines += _chain("nat-prerouting", ["jump services"], f"type nat hook prerouting priority {DSTNAT}; policy accept;")
    lines += _chain("nat-output", ["jump services"], f"type nat hook output priority {DSTNAT}; policy accept;")
    lines += _chain("nat-postrouting", ["jump masquerading"],
                    f"type nat hook postrouting priority {SRCNAT}; policy accept;")
    lines += _chain("endpoints-check", ["ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
                                        f"{nodeport_match} vmap @no-endpoint-nodeports"])
    lines += _chain("firewall-check", ["ip daddr . meta l4proto . th dport vmap @firewall-ips"])
    lines += _chain("reject-chain", ["reject"], comment="helper for @no-endpoint-services / @no-endpoint-nodeports")
    lines += _chain("mark-for-masquerade", [f"mark set mark or {MASQUERADE_MARK}"])
    lines += _chain("masquerading", [f"mark and {MASQUERADE_MARK} == 0 return",
                                     f"mark set mark xor {MASQUERADE_MARK}", "masquerade fully-random"])
    lines += _chain("services", ["ip daddr . meta l4proto . th dport vmap @service-ips",
                                 f"{nodeport_match} vmap @service-nodeports"])
    lines += per_service
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines + ["}"]) + "\n"


def replace_table(ports: list[PortRules], pod_cidr: IPv4Network | str) -> str:
    """The whole table made again in one transaction (made empty if missing, deleted, defined again):
    nothing ever sees half a table, and conntrack keeps the flows already NATed."""
    return f"table ip {TABLE} {{}}\ndelete table ip {TABLE}\n" + table(ports, pod_cidr)


def update(old: PortRules | None, new: PortRules | None, pod_cidr: IPv4Network | str) -> list[str]:
    """The commands that turn one Service port's chains and map elements from `old` (as the kernel
    has them; None: absent) into `new` (None: the port goes), touching nothing else: what
    kube-proxy's partial sync writes for a Service whose endpoints changed. Part of one `nft -f`
    transaction, so no packet sees the port half-changed.

    Chains that stay are flushed and filled again; chains that go are flushed first (so no rule
    refers to them any more) and deleted at the end, after the map elements that name them.
    `old` must be what the kernel holds: deleting an element or chain that is not there fails the
    transaction (nft 1.0.6 has no `destroy`), and the caller then loads the whole table again."""
    t = f"ip {TABLE}"
    new_chains = chains(new, pod_cidr) if new else []
    kept = {name for name, _ in new_chains}
    old_chains = [name for name, _ in chains(old, pod_cidr)] if old else []
    # Every chain exists before any rule names it (the service chain's vmap names the endpoints').
    lines = [f"add chain {t} {name}" for name, _ in new_chains]
    for name, rules in new_chains:
        lines += [f"flush chain {t} {name}"] + [f"add rule {t} {name} {r}" for r in rules]
    gone = [name for name in old_chains if name not in kept]
    lines += [f"flush chain {t} {name}" for name in gone]
    before, after = (elements(old) if old else {}), (elements(new) if new else {})
    for m, (key, element) in before.items():
        if after.get(m) != (key, element):
            lines.append(f"delete element {t} {m} {{ {key} }}")
    for m, (key, element) in after.items():
        if before.get(m) != (key, element):
            lines.append(f"add element {t} {m} {{ {element} }}")
    lines += [f"delete chain {t} {name}" for name in gone]
    return lines


def host_ports(pods: list[tuple[Pod, IPv4Address]]) -> str | None:
    """The portmap plugin's table for the hostPorts of one node's pods (not hostNetwork ones), or None."""
    mappings: list[tuple[Pod, IPv4Address, ContainerPort]] = [
        (pod, ip, p) for pod, ip in pods if not pod.host_network
        for c in pod.containers for p in c.port_specs if p.host_port is not None]
    if not mappings:
        return None
    dnat = [f"{p.protocol.lower()} dport {p.host_port} dnat to {ip}:{p.port} comment \"{pod.namespace}/{pod.name}\""
            for pod, ip, p in mappings]
    masq = []
    for pod, ip in dict.fromkeys((pod, ip) for pod, ip, _ in mappings):
        masq += [f'ip saddr {ip} ip daddr {ip} masquerade comment "{pod.namespace}/{pod.name}"',
                 f'ip saddr 127.0.0.1 ip daddr {ip} masquerade comment "{pod.namespace}/{pod.name}"']
    lines = ["table ip cni_hostport {", '\tcomment "CNI portmap plugin"', ""]
    lines += _chain("hostports", dnat)
    lines += _chain("hostip_hostports", [])
    lines += _chain("prerouting", ["jump hostip_hostports", "fib daddr type local jump hostports"],
                    f"type nat hook prerouting priority {DSTNAT}; policy accept;")
    lines += _chain("output", ["jump hostip_hostports", "fib daddr type local jump hostports"],
                    f"type nat hook output priority {DSTNAT}; policy accept;")
    lines += _chain("masquerading", masq, f"type nat hook postrouting priority {SRCNAT}; policy accept;")
    lines.pop()
    return "\n".join(lines + ["}"]) + "\n"
