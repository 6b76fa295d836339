"""The `services:` section of a topology file, checked like the rest of it (every problem at once,
with its YAML path), and what every cluster gets besides, as Kubernetes gives it: the `kubernetes`
Service, the `kube-dns` Service and the DNS pod behind it (unless the file says `dns: false`; then
a cluster has Services only if it has a `services:` key). hostPort checks live here too (portmap,
not Services).

Addresses are allocated here, as the API server does when a Service is created, so a Topology's
Services are complete: the DNS Service takes the service CIDR's .10, `kubernetes` its .1, and
the others .2, .3, ... in file order (skipping .10 and any address a file asks for by name).
NodePorts the file leaves out are given from 30000 upward.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address, IPv4Network, ip_address
from typing import Any

from lab import naming, state
from lab.designs import Design
from lab.model import SERVICE_TYPES, Container, ContainerPort, Pod, Service, ServicePort
from lab.topology.checker import Checker, YamlPath, choice
from lab.topology import placement
from lab.topology.pods import parse_labels
from lab.topology.schema import SERVICE_PORT_SCHEMA, SERVICE_SCHEMA, is_port_name
from lab.topology.wording import show

KUBERNETES = ("default", "kubernetes")     # the API server's Service, always .1
DNS = ("kube-system", "kube-dns")          # the cluster DNS Service, always .10
KUBERNETES_OFFSET = 1
DNS_OFFSET = 10
API_SERVER_PORT = 6443
DNS_POD_LABELS = {"k8s-app": "kube-dns"}
DNS_DEPLOYMENT = "kube-dns"
DNS_CONTAINER = "dnsmasq"
DNS_CONFIG = "dns/dnsmasq.conf"      # in the lab's state directory, written by the plan (lab.services.dns)
DNS_RECORDS = "dns/records"          # its --hostsdir: the A records, read again when they change
NODE_PORT_RANGE = range(30000, 32768)      # kube-apiserver's default --service-node-port-range
SERVICE_PROTOCOLS = ("TCP", "UDP")
DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
# Measured: with the uplink a port of cni0, NodePort traffic is DNATed on the bridge and sent
# straight to the pod (br_netfilter's bridged DNAT), so the masquerade it needs never happens.
L2_NODE_PORT = ("type NodePort is not supported in mode l2: there a node's own address sits on its bridge cni0 "
                "(the uplink is a bridge port), so bridge netfilter DNATs NodePort traffic on the bridge and "
                "kube-proxy's masquerade never runs; use mode vxlan or l3, or type ClusterIP")
UNSUPPORTED_TYPES = {"LoadBalancer": "there is no cloud load balancer in a lab; use NodePort",
                     "ExternalName": "an ExternalName Service is only a CNAME; podlab has no upstream DNS"}


@dataclass
class _Draft:
    name: str
    namespace: str
    type: str
    selector: dict[str, str]
    ports: list[tuple[ServicePort, YamlPath]]
    path: YamlPath
    headless: bool = False
    cluster_ip: IPv4Address | None = None      # asked for in the file


def check(checker: Checker, lab: str, document: dict[str, Any], top: dict[str, Any],
          placed: list[tuple[Pod, YamlPath]], nodes: list[str],
          service_cidr: IPv4Network | None,
          design: Design | None, dns: bool = True, bound: placement.Scheduling | None = None
          ) -> tuple[tuple[Service, ...], list[tuple[Pod, YamlPath]]]:
    """The file's Services (with kubernetes, and kube-dns if `dns`), and the pods with the DNS pod added."""
    _check_host_ports(checker, placed)
    if "services" not in document and not dns:
        return (), placed
    drafts = []
    seen: dict[tuple[str, str], YamlPath] = {}
    for index, item in enumerate(top.get("services", [])):
        draft = _service(checker, ("services", index), item)
        if draft is None:
            continue
        key = (draft.namespace, draft.name)
        if key in (KUBERNETES, DNS):
            checker.add(draft.path + ("name",), f"Service {key[1]} in namespace {key[0]} is made by podlab itself "
                                                "(the API server's and the cluster DNS Service); pick another name")
        elif key in seen:
            checker.add(draft.path + ("name",), f"Service {draft.name!r} in namespace {draft.namespace} is already "
                                                f"defined by {checker.where(seen[key])}; names are unique per namespace")
        else:
            seen[key] = draft.path + ("name",)
            drafts.append(draft)
        if draft.type == "NodePort" and design is not None and not design.backend.node_port:
            checker.add(draft.path + ("type",), L2_NODE_PORT)
    if service_cidr is None or not nodes:
        return (), placed
    if dns and service_cidr.num_addresses < 16:
        checker.add(("network", "serviceCIDR"), f"serviceCIDR {service_cidr} is too small for the cluster DNS: its "
                                                f"Service takes the .{DNS_OFFSET}; use a /28 or larger, e.g. "
                                                "10.96.0.0/12, or turn the cluster DNS off with 'dns: false'")
        return (), placed
    services = _allocate(checker, drafts, service_cidr, dns)
    if not dns:
        return services, placed
    name, node, ordinal, template_hash = placement.replica(lab, DNS_DEPLOYMENT, dns_template_hash(lab), nodes,
                                                           [p for p, _ in placed], bound)
    # Errors about the DNS pod (no node for it, its node's block full) point at the key that asks for it.
    where = ("dns",) if "dns" in top else ()
    if node is None:
        checker.add(where, f"the cluster DNS pod {name}: "
                    + placement.unschedulable(nodes, nodes, set(bound.cordoned if bound else ())))
        return (), placed
    dns_pod = (_dns_pod(name, node, ordinal, template_hash), where)
    if design is not None and design.attachment.runs_plugins:
        # The real plugins give addresses in the order of the ADDs (host-local: the next free one), and
        # a failed ADD moves host-local on too. The cluster DNS, made with the cluster, comes first, so
        # its address is the planned one whatever happens to the user's pods.
        return services, [dns_pod] + placed
    return services, placed + [dns_pod]


# ---------------------------------------------------------------------------------------
# One Service
# ---------------------------------------------------------------------------------------
def _service(checker: Checker, path: YamlPath, raw: Any) -> _Draft | None:
    spec = checker.fields(path, raw, SERVICE_SCHEMA, "a Service")
    if spec is None or "name" not in spec:
        return None
    name = spec["name"]
    if not (DNS_1035.fullmatch(name) and len(name) <= 63):
        suggestion = naming.suggest(name, 63)
        hint = f"; try '{suggestion}'" if suggestion and DNS_1035.fullmatch(suggestion) else ""
        checker.add(path + ("name",), f"Service name {show(name)} is not valid: a Service name (DNS-1035 label) "
                                      "uses lowercase letters a-z, digits and '-', starts with a letter, ends with a "
                                      f"letter or digit, at most 63 characters (it becomes a DNS name){hint}")
    namespace = spec.get("namespace", "default")
    problem = naming.dns_label_problem(namespace, "namespace")
    if problem:
        checker.add(path + ("namespace",), problem)
    kind = _type(checker, path + ("type",), spec.get("type", "ClusterIP"))
    draft = _Draft(name, namespace, kind, parse_labels(checker, path + ("selector",), spec.get("selector", {})), [], path)
    if "clusterIP" in spec:
        _cluster_ip(checker, path + ("clusterIP",), spec["clusterIP"], draft)
    if draft.headless and kind == "NodePort":
        checker.add(path + ("clusterIP",), "a headless Service (clusterIP: None) has no address for kube-proxy to "
                                           "forward, so it cannot be type NodePort; remove one of them")
    raw_ports = spec.get("ports", [])
    if not raw_ports and not draft.headless:
        checker.add(path + ("ports",), "a Service needs at least one port, e.g. ports: [{name: http, port: 80, "
                                       "targetPort: 80}] (only a headless Service may have none)")
    _ports(checker, path + ("ports",), raw_ports, draft)
    return draft


def _type(checker: Checker, path: YamlPath, value: str) -> str:
    if value in UNSUPPORTED_TYPES:
        checker.add(path, f"type {value} is not supported: {UNSUPPORTED_TYPES[value]}; "
                          f"known types: {', '.join(SERVICE_TYPES)} (and headless: clusterIP: None)")
        return "ClusterIP"
    return choice(checker, path, value, SERVICE_TYPES, "Service type") or "ClusterIP"


def _cluster_ip(checker: Checker, path: YamlPath, value: str, draft: _Draft) -> None:
    if value == "None":
        draft.headless = True
        return
    try:
        address = ip_address(value)
    except ValueError:
        checker.add(path, f"clusterIP {show(value)} is neither an IPv4 address in the serviceCIDR nor None "
                          "(headless); remove it to have one allocated")
        return
    if address.version != 4:
        checker.add(path, f"clusterIP {value} is IPv6; podlab builds IPv4 clusters")
        return
    draft.cluster_ip = address   # checked against the service CIDR when addresses are allocated


def _ports(checker: Checker, path: YamlPath, raw: list[Any], draft: _Draft) -> None:
    used: dict[tuple[int, str], YamlPath] = {}
    names: dict[str, YamlPath] = {}
    for index, item in enumerate(raw):
        at = path + (index,)
        if _is_int(item):
            spec: dict[str, Any] = {"port": item}
        else:
            if isinstance(item, str) and item.strip().isdigit():
                checker.add(at, f"a port is a number or a mapping; remove the quotes: {item.strip()}")
                continue
            got = checker.fields(at, item, SERVICE_PORT_SCHEMA, "a Service port")
            if got is None or "port" not in got:
                continue
            spec = got
        port = spec["port"]
        if not 1 <= port <= 65535:
            checker.add(at + ("port",) if isinstance(item, dict) else at, f"port {port} is out of range: 1..65535")
            continue
        protocol = spec.get("protocol", "TCP")
        if protocol == "SCTP":
            checker.add(at + ("protocol",), "protocol SCTP is valid in Kubernetes, but podlab's workloads speak "
                                            "TCP and UDP; use one of those")
            protocol = "TCP"
        elif protocol not in SERVICE_PROTOCOLS:
            protocol = choice(checker, at + ("protocol",), protocol, SERVICE_PROTOCOLS, "protocol") or "TCP"
        name = spec.get("name", "")
        if name:
            problem = naming.dns_label_problem(name, "port name")
            if problem:
                checker.add(at + ("name",), problem + " (it becomes the SRV record _<name>._<protocol>)")
            elif name in names:
                checker.add(at + ("name",), f"port name {name!r} is already used by {checker.where(names[name])}; "
                                            "port names are unique within a Service")
            names[name] = at + ("name",)
        elif len(raw) > 1:
            checker.add(at, "a Service with several ports needs a name on each (name: http), as kube-apiserver "
                            "requires; the names become SRV records")
        target = _target_port(checker, at + ("targetPort",), spec.get("targetPort", port))
        node_port = spec.get("nodePort")
        if node_port is not None:
            if draft.type != "NodePort":
                checker.add(at + ("nodePort",), f"nodePort needs type: NodePort (this Service is {draft.type}); "
                                                "add 'type: NodePort' or remove nodePort")
                node_port = None
            elif node_port not in NODE_PORT_RANGE:
                checker.add(at + ("nodePort",), f"nodePort {node_port} is outside the NodePort range "
                                                f"{NODE_PORT_RANGE.start}-{NODE_PORT_RANGE.stop - 1}; pick one in it "
                                                "or remove nodePort to have one allocated")
                node_port = None
        if (port, protocol) in used:
            checker.add(at, f"port {port}/{protocol} is already declared by {checker.where(used[(port, protocol)])}")
            continue
        used[(port, protocol)] = at
        draft.ports.append((ServicePort(port, target, protocol, name, node_port), at))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _target_port(checker: Checker, path: YamlPath, value: int | str) -> int | str:
    if _is_int(value):
        if not 1 <= value <= 65535:
            checker.add(path, f"targetPort {value} is out of range: 1..65535")
        return value
    text = str(value)
    if text.strip().isdigit():
        checker.add(path, f"targetPort {text!r} is a number written as text; remove the quotes: {text.strip()}")
        return int(text.strip())
    if not is_port_name(text):
        checker.add(path, f"targetPort {show(text)} must be a port number or the name of a container port "
                          "(at most 15 lowercase letters, digits and '-', like http-web-svc)")
    return text


# ---------------------------------------------------------------------------------------
# Addresses and NodePorts, as the API server allocates them
# ---------------------------------------------------------------------------------------
def _allocate(checker: Checker, drafts: list[_Draft], cidr: IPv4Network, dns: bool = True) -> tuple[Service, ...]:
    reserved = {cidr[KUBERNETES_OFFSET]: "the kubernetes Service"}
    if dns:
        reserved[cidr[DNS_OFFSET]] = "the kube-dns Service"
    taken: dict[IPv4Address, str] = dict(reserved)
    for d in drafts:
        ip = d.cluster_ip
        if ip is None:
            continue
        at = d.path + ("clusterIP",)
        if ip not in cidr or ip in (cidr.network_address, cidr.broadcast_address):
            checker.add(at, f"clusterIP {ip} is not a usable address of serviceCIDR {cidr}; pick one inside it "
                            "(not its network or broadcast address) or remove clusterIP")
            d.cluster_ip = None
        elif ip in taken:
            checker.add(at, f"clusterIP {ip} is already taken by {taken[ip]}; pick another or remove clusterIP")
            d.cluster_ip = None
        else:
            taken[ip] = f"Service {d.namespace}/{d.name}"
    node_ports = _node_ports(checker, drafts)
    offset = KUBERNETES_OFFSET + 1
    services = [Service("kubernetes", "default", "ClusterIP", (),
                        (ServicePort(443, API_SERVER_PORT, "TCP", "https"),), cidr[KUBERNETES_OFFSET])]
    if dns:
        services.append(Service("kube-dns", "kube-system", "ClusterIP", tuple(DNS_POD_LABELS.items()),
                                (ServicePort(53, 53, "UDP", "dns"), ServicePort(53, 53, "TCP", "dns-tcp")),
                                cidr[DNS_OFFSET]))
    for d in drafts:
        ip = d.cluster_ip
        if ip is None and not d.headless:
            while offset < cidr.num_addresses - 1 and cidr[offset] in taken:
                offset += 1
            if offset >= cidr.num_addresses - 1:
                checker.add(d.path, f"serviceCIDR {cidr} has no address left for Service {d.name}; use a larger "
                                    "serviceCIDR, e.g. 10.96.0.0/12")
                continue
            ip = cidr[offset]
            taken[ip] = f"Service {d.namespace}/{d.name}"
        ports = tuple(node_ports.get(id(p), p) for p, _ in d.ports)
        services.append(Service(d.name, d.namespace, d.type, tuple(sorted(d.selector.items())), ports,
                                None if d.headless else ip))
    return tuple(services)


def _node_ports(checker: Checker, drafts: list[_Draft]) -> dict[int, ServicePort]:
    """NodePorts for the ports of NodePort Services that name none, keyed by id() of the port."""
    taken: dict[tuple[int, str], str] = {}
    for d in drafts:
        for p, at in d.ports:
            if p.node_port is None:
                continue
            key = (p.node_port, p.protocol)
            if key in taken:
                checker.add(at + ("nodePort",), f"nodePort {p.node_port}/{p.protocol} is already used by {taken[key]}; "
                                                "every node listens on it for one Service only")
            taken[key] = checker.where(at)
    numbers = {n for n, _ in taken}
    out: dict[int, ServicePort] = {}
    candidate = NODE_PORT_RANGE.start
    for d in drafts:
        if d.type != "NodePort":
            continue
        for p, at in d.ports:
            if p.node_port is not None:
                continue
            while candidate in numbers:
                candidate += 1
            if candidate not in NODE_PORT_RANGE:
                checker.add(at, "no NodePort left in 30000-32767")
                continue
            numbers.add(candidate)
            out[id(p)] = ServicePort(p.port, p.target_port, p.protocol, p.name, candidate)
    return out


# ---------------------------------------------------------------------------------------
# The DNS pod, and hostPorts
# ---------------------------------------------------------------------------------------
def _dns_container() -> Container:
    ports = (ContainerPort(53, "UDP", "dns"), ContainerPort(53, "TCP", "dns-tcp"))
    argv = ("dnsmasq", "--keep-in-foreground", f"--conf-file={state.in_lab_dir(DNS_CONFIG)}",
            f"--hostsdir={state.in_lab_dir(DNS_RECORDS)}")
    return Container(DNS_CONTAINER, "dnsmasq", (53,), argv, ports)


def dns_template_hash(lab: str) -> str:
    """The DNS pod's pod-template-hash, from its template (podlab's own: one per podlab version)."""
    canonical = json.dumps({"labels": DNS_POD_LABELS, "containers": [asdict(_dns_container())]}, sort_keys=True)
    return naming.pod_template_hash(lab, canonical)


def _dns_pod(name: str, node: str, ordinal: int, template_hash: str) -> Pod:
    """kube-system's DNS pod, as kubeadm and GKE run it (labels k8s-app=kube-dns): on the first node,
    and when that node is drained or leaves, replaced by a new one elsewhere (lab.topology.placement.replica).

    Its container runs dnsmasq on the configuration the plan writes (lab.services.dns).
    """
    labels = {**DNS_POD_LABELS, "pod-template-hash": template_hash}
    return Pod(name, node, (_dns_container(),), "kube-system", False, tuple(sorted(labels.items())), DNS_DEPLOYMENT,
               ordinal)


def is_dns_pod(pod: Pod) -> bool:
    return pod.namespace == DNS[0] and pod.deployment == DNS_DEPLOYMENT and \
        dict(pod.labels).get("k8s-app") == DNS_POD_LABELS["k8s-app"]


def _check_host_ports(checker: Checker, placed: list[tuple[Pod, YamlPath]]) -> None:
    """A hostPort is one node's address and port: two pods on a node cannot both have it (the
    scheduler would leave the second Pending); a hostNetwork pod listens there itself."""
    owners: dict[tuple[str, int, str], str] = {}
    for pod, path in placed:
        for c in pod.containers:
            for p in c.port_specs:
                if p.host_port is None:
                    continue
                if pod.host_network and p.host_port != p.port:
                    checker.add(path, f"pod {pod.name} uses hostNetwork, so its container listens on the node "
                                      f"itself: hostPort {p.host_port} must equal containerPort {p.port}")
                    continue
                key = (pod.node, p.host_port, p.protocol)
                if key in owners:
                    checker.add(path, f"hostPort {p.host_port}/{p.protocol} on {pod.node} is already taken by pod "
                                      f"{owners[key]}: a node has one such port, so the scheduler would not place "
                                      f"pod {pod.name} there; use another hostPort, fewer replicas, or nodes: [...]")
                    continue
                owners[key] = pod.name
