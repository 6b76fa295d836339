"""Which paths to probe: the endpoints of a lab and the pairs the Kubernetes network model requires."""
from __future__ import annotations

from collections.abc import Sequence

from lab.addressing import AddressPlan
from lab.model import Topology
from lab.probe.model import Endpoint, Pair


def expected_pairs(pods: Sequence[Endpoint], nodes: Sequence[Endpoint], outside: Sequence[Endpoint],
                   outside_reaches_pods: bool) -> list[Pair]:
    """The paths the Kubernetes network model requires.

    Every pod reaches every other pod, on its node and across nodes, without NAT; every node
    reaches every pod (the model requires its own node's pods; every podlab mode routes the
    others too). Outside hosts appear only when the design says they reach pods (seed 000's
    VPC routes); otherwise they are left out rather than expected to fail.
    """
    pairs: list[Pair] = [(a, b, True) for a in pods for b in pods if a.name != b.name]
    pairs += [(n, p, True) for n in nodes for p in pods]
    if outside_reaches_pods:
        pairs += [(h, p, True) for h in outside for p in pods]
    return pairs


def endpoints_from_plan(topo: Topology, plan: AddressPlan) -> tuple[list[Endpoint], list[Endpoint], list[Endpoint]]:
    """(pods, nodes, outside) Endpoints of a lab, with the built-in workloads' HTTP ports.

    Ports follow the workloads' conventions: nginx-like "http" on its first port (80), the
    echo workload (agnhost netexec) on its first port (8080), answering /clientip.
    """
    nodes = [Endpoint(n.name, "node", n.name, n.netns, n.ip) for n in plan.nodes]
    by_name = {p.name: p for p in topo.pods}
    pods = []
    for addr in plan.pods:
        http_port = http_expect = clientip_port = None
        for c in by_name[addr.name].containers:
            if c.workload == "http" and http_port is None:
                http_port = c.ports[0] if c.ports else 80
                http_expect = f"Welcome to the home page of host {addr.name}!"
            elif c.workload == "echo" and clientip_port is None:
                clientip_port = c.ports[0] if c.ports else 8080
        pods.append(Endpoint(addr.name, "pod", addr.node, addr.netns, addr.ip,
                             http_port, http_expect, clientip_port))
    outside = [Endpoint(h.name, "outside", None, h.netns, h.ip) for h in plan.outside]
    return pods, nodes, outside
