"""`podlab check`: the Kubernetes network model, tested with real packets.

Every pod to every pod (same node and across nodes), every node to the pods, and outside
hosts to pods where the design allows it (the VPC route model), over ICMP and HTTP; the
receiver must see the sender's own pod IP (no NAT between pods).
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

from lab import probe
from lab.api import Lab
from lab.model import Pod


def _http(pod: Pod) -> tuple[int | None, str | None, int | None]:
    """(page port, text the page must contain, /clientip port) of the pod's built-in servers."""
    http_port = expect = clientip = None
    for c in pod.containers:
        if c.workload == "http" and http_port is None:
            http_port = c.ports[0] if c.ports else 80
            expect = f"Welcome to the home page of host {pod.name}!"
        elif c.workload == "echo" and clientip is None:
            clientip = c.ports[0] if c.ports else 8080
    return http_port, expect, clientip


def endpoints(lab: Lab) -> tuple[list[probe.Endpoint], list[probe.Endpoint], list[probe.Endpoint]]:
    a = lab.addresses
    pods = []
    for pod, addr in zip(lab.topology.pods, a.pods):
        port, expect, clientip = _http(pod)
        pods.append(probe.Endpoint(pod.name, "pod", pod.node, addr.netns, addr.ip, port, expect, clientip))
    nodes = [probe.Endpoint(n.name, "node", n.name, n.netns, n.ip) for n in a.nodes]
    outside = [probe.Endpoint(h.name, "outside", None, h.netns, h.ip) for h in a.outside]
    return pods, nodes, outside


def outside_reaches_pods(lab: Lab) -> bool:
    # Only the VPC route model puts pod routes where a machine outside the cluster can use them.
    return lab.topology.routing == "gateway"


def run(lab: Lab, timeout: float = 1.0) -> list[probe.PathResult]:
    pods, nodes, outside = endpoints(lab)
    pairs = probe.expected_pairs(pods, nodes, outside, outside_reaches_pods(lab))
    return probe.probe(pairs, timeout=timeout)


def report(lab: Lab, results: list[probe.PathResult], seconds: float) -> dict[str, Any]:
    pods, nodes, outside = endpoints(lab)
    names = [e.name for e in (*nodes, *pods, *outside)]
    summary = probe.summary(results)
    passed = all(r.passed for r in results)
    verdict = "PASS" if passed else "FAIL"
    tail = (f"{verdict}: {summary['passed']}/{summary['total']} paths passed"
            f"{', ' + str(summary['failed']) + ' failed' if summary['failed'] else ''}"
            f"{', NAT seen on ' + str(summary['nat']) if summary['nat'] else ''} in {seconds:.2f} s")
    if not outside_reaches_pods(lab) and outside:
        tail += f"\n(outside hosts are not expected to reach pods in {lab.topology.mode} mode, so they were not probed)"
    text = f"lab {lab.name}: the Kubernetes network model\n\n{probe.matrix(results, names)}\n\n{tail}"
    return {"passed": passed, "text": text,
            "json": {"lab": lab.name, "passed": passed, "seconds": round(seconds, 3), "summary": summary,
                     "results": [asdict(r) | {"passed": r.passed, "nat": r.nat} for r in results]}}
