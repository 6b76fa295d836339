"""Which pod addresses stand behind each Service port: what the EndpointSlice controller computes.

A Service selects the ready pods of its namespace whose labels include its selector; each of its
ports is served by those pods on the target port (a number, or the container port of that name:
pods without such a port are not endpoints of that port). hostNetwork pods are endpoints with
their node's address. The `kubernetes` Service's endpoint is the API server's address, the first
node's on port 6443, as kubeadm puts it; nothing listens there in a lab.

Pure: the same topology and address plan (and set of ready pods) always give the same endpoints,
in file order. A plan assumes every pod ready (it is about to start); a running lab's endpoints are
its ready pods only (now(): the workload agent's view, which its kube-proxy follows).
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from ipaddress import IPv4Address

from lab.addressing import AddressPlan
from lab.model import Pod, Service, ServicePort, Topology
from lab.services import schema

CLUSTER_DOMAIN = "cluster.local"


@dataclass(frozen=True)
class Backend:
    pod: str | None              # None: the API server (the first node itself)
    node: str | None
    ip: IPv4Address
    port: int


@dataclass(frozen=True)
class PortPlan:
    port: ServicePort
    backends: tuple[Backend, ...]


@dataclass(frozen=True)
class ServiceAddr:
    service: Service
    ports: tuple[PortPlan, ...]
    pods: tuple[str, ...]        # the pods the selector picks (a headless Service's A records)

    @property
    def name(self) -> str:
        return self.service.name

    @property
    def namespace(self) -> str:
        return self.service.namespace

    @property
    def ip(self) -> IPv4Address | None:
        return self.service.cluster_ip

    @property
    def headless(self) -> bool:
        return self.service.cluster_ip is None

    @property
    def fqdn(self) -> str:
        return f"{self.service.name}.{self.service.namespace}.svc.{CLUSTER_DOMAIN}"

    @property
    def key(self) -> str:
        return f"{self.service.namespace}/{self.service.name}"


@dataclass(frozen=True)
class ServicePlan:
    services: tuple[ServiceAddr, ...]
    dns_ip: IPv4Address | None           # the DNS Service's ClusterIP: every pod's nameserver
    dns_pod: str | None                  # the pod running the DNS server

    def find(self, namespace: str, name: str) -> ServiceAddr | None:
        return next((s for s in self.services if s.namespace == namespace and s.name == name), None)


def selects(service: Service, pod: Pod) -> bool:
    """A selector picks pods of the Service's namespace carrying all its labels; no selector picks none."""
    if not service.selector or pod.namespace != service.namespace:
        return False
    labels = dict(pod.labels)
    return all(labels.get(k) == v for k, v in service.selector)


def target_port(port: ServicePort, pod: Pod) -> int | None:
    """The pod's port for a Service port: the number, or the container port of that name and protocol."""
    if isinstance(port.target_port, int):
        return port.target_port
    for c in pod.containers:
        for p in c.port_specs:
            if p.name == port.target_port and p.protocol == port.protocol:
                return p.port
    return None


def plan(topo: Topology, addrs: AddressPlan, ready: Collection[str] | None = None) -> ServicePlan:
    """The Services' endpoints: the selected pods in `ready` (None: every selected pod)."""
    if not topo.cluster_services:
        return ServicePlan((), None, None)
    ips = {p.name: p for p in addrs.pods}
    first_node = addrs.nodes[0] if addrs.nodes else None
    out = []
    for svc in topo.services:
        chosen = [p for p in topo.pods if selects(svc, p)]
        ports = []
        for sp in svc.ports:
            if (svc.namespace, svc.name) == schema.KUBERNETES and first_node is not None:
                backends = (Backend(None, first_node.name, first_node.ip, schema.API_SERVER_PORT),)
            else:
                backends = tuple(Backend(p.name, p.node, ips[p.name].ip, number) for p in chosen
                                 if (ready is None or p.name in ready) and (number := target_port(sp, p)) is not None)
            ports.append(PortPlan(sp, backends))
        out.append(ServiceAddr(svc, tuple(ports), tuple(p.name for p in chosen)))
    dns = next((s for s in out if (s.namespace, s.name) == schema.DNS), None)
    dns_pod = next((p.name for p in topo.pods if schema.is_dns_pod(p)), None)
    return ServicePlan(tuple(out), dns.ip if dns else None, dns_pod)


def now(topo: Topology, addrs: AddressPlan, lab: str) -> ServicePlan:
    """A running lab's endpoints: the pods its workload agent reports ready (agent.json), as its
    kube-proxy has them."""
    from lab import workloads
    return plan(topo, addrs, workloads.ready_pods(workloads.read_status(lab)))


def port_label(port: ServicePort) -> str:
    """As kubectl prints a port: 80/TCP, or 80:30080/TCP for a NodePort."""
    node = f":{port.node_port}" if port.node_port else ""
    return f"{port.port}{node}/{port.protocol}"
