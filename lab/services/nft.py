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

`table ip cni_hostport` is the CNI portmap plugin's nftables form, per node, for the hostPorts
of the pods there.
"""
from __future__ import annotations

import base64
import hashlib
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


def port_base(svc: ServiceAddr, pp: PortPlan) -> str:
    return hash_and_truncate(f"{svc.namespace}/{svc.name}/{pp.port.protocol.lower()}/{pp.port.name}")


def endpoint_chain(svc: ServiceAddr, pp: PortPlan, backend: Backend) -> str:
    base = f"{svc.namespace}/{svc.name}/{pp.port.protocol.lower()}/{pp.port.name}__{backend.ip}/{backend.port}"
    return "endpoint-" + hash_and_truncate(base)


def port_name(svc: ServiceAddr, pp: PortPlan) -> str:
    """kube-proxy's ServicePortName string, used in comments: ns/name:port (no ':' for an unnamed port)."""
    return f"{svc.namespace}/{svc.name}" + (f":{pp.port.name}" if pp.port.name else "")


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


def kube_proxy(splan: ServicePlan, pod_cidr: IPv4Network) -> str:
    """The kube-proxy table: the same on every node."""
    service_ips: list[str] = []
    node_ports: list[str] = []
    no_ep_services: list[str] = []
    no_ep_node_ports: list[str] = []
    per_service: list[str] = []
    for svc in splan.services:
        if svc.headless:
            continue  # kube-proxy ignores headless Services: DNS answers with the pods themselves
        for pp in svc.ports:
            per_service += _service_port(svc, pp, pod_cidr, service_ips, node_ports, no_ep_services, no_ep_node_ports)
    nodeport_match = "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport"
    lines = ["table ip kube-proxy {", '\tcomment "rules for kube-proxy"', ""]
    lines += _map("service-ips", "ipv4_addr . inet_proto . inet_service",
                  "ClusterIP, ExternalIP and LoadBalancer IP traffic", service_ips)
    lines += _map("service-nodeports", "inet_proto . inet_service", "NodePort traffic", node_ports)
    lines += _map("no-endpoint-services", "ipv4_addr . inet_proto . inet_service",
                  "vmap to drop or reject packets to services with no endpoints", no_ep_services)
    lines += _map("no-endpoint-nodeports", "inet_proto . inet_service",
                  "vmap to drop or reject packets to service nodeports with no endpoints", no_ep_node_ports)
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


def _service_port(svc: ServiceAddr, pp: PortPlan, pod_cidr: IPv4Network, service_ips: list[str],
                  node_ports: list[str], no_ep_services: list[str], no_ep_node_ports: list[str]) -> list[str]:
    proto = pp.port.protocol.lower()
    base = port_base(svc, pp)
    if not pp.backends:
        comment = f'comment "{port_name(svc, pp)}"'
        no_ep_services.append(f"{svc.ip} . {proto} . {pp.port.port} {comment} : goto reject-chain")
        if pp.port.node_port:
            no_ep_node_ports.append(f"{proto} . {pp.port.node_port} {comment} : goto reject-chain")
        return []
    service_chain = f"service-{base}"
    service_ips.append(f"{svc.ip} . {proto} . {pp.port.port} : goto {service_chain}")
    chains = [endpoint_chain(svc, pp, b) for b in pp.backends]
    spread = ", ".join(f"{i} : goto {c}" for i, c in enumerate(chains))
    lines = _chain(service_chain, [
        # Traffic from outside the pod network (a node, an outside host) is masqueraded, as
        # kube-proxy does with --cluster-cidr: the endpoint may be on another node.
        f"ip daddr {svc.ip} {proto} dport {pp.port.port} ip saddr != {pod_cidr} jump mark-for-masquerade",
        f"numgen random mod {len(chains)} vmap {{ {spread} }}"])
    if pp.port.node_port:
        external = f"external-{base}"
        node_ports.append(f"{proto} . {pp.port.node_port} : goto {external}")
        lines += _chain(external, ["jump mark-for-masquerade", f"goto {service_chain}"])
    for b, chain in zip(pp.backends, chains):
        lines += _chain(chain, [f"ip saddr {b.ip} jump mark-for-masquerade",
                                f"meta l4proto {proto} dnat to {b.ip}:{b.port}"])
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
