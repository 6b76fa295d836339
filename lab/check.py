"""`podlab check`: the Kubernetes network model, tested with real packets.

Every pod to every pod (same node and across nodes), every node to the pods, and outside
hosts to pods where the design allows it (the VPC route model), over ICMP and HTTP; the
receiver must see the sender's own pod IP (no NAT between pods).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lab import probe
from lab.api import Lab


def endpoints(lab: Lab) -> tuple[list[probe.Endpoint], list[probe.Endpoint], list[probe.Endpoint]]:
    pods, nodes, outside = probe.endpoints_from_plan(lab.topology, lab.addresses)
    down = without_network(lab)
    if down:   # pods whose CNI ADD failed have no network to probe: they are reported, and fail the check
        pods = [p for p in pods if p.name not in down]
    return pods, nodes, outside


def without_network(lab: Lab) -> dict[str, str]:
    """Pods of a cni lab whose sandbox has no network (their ADD failed), and why (kubelet's event)."""
    if not lab.design.attachment.runs_plugins:
        return {}
    from lab.cni import status
    sandboxes = status.read(lab.name)
    out = {}
    for pod in lab.topology.pods:
        if not pod.host_network:
            _, message = status.sandbox_state(sandboxes, pod.name)
            if message is not None:
                out[pod.name] = message
    return out


def outside_reaches_pods(lab: Lab) -> bool:
    # Only a backend that puts pod routes in the underlay (the VPC route model) lets a machine
    # outside the cluster reach pods.
    return lab.design.backend.outside_reaches_pods


# Above this many pairs a lab is checked on a sample that still crosses every node pair.
ALL_PAIRS_LIMIT = 20_000


def sampled_pairs(pods: list[probe.Endpoint], nodes: list[probe.Endpoint], outside: list[probe.Endpoint],
                  outside_reaches: bool, remote_per_pod: int = 3) -> list[probe.Pair]:
    """A sample that still crosses every pair of nodes: each pod reaches a pod on its own node
    and pods on `remote_per_pod` other nodes, chosen so that a node's pods together cover every
    other node; every node reaches its own pods and one pod on each other node."""
    by_node: dict[str | None, list[probe.Endpoint]] = {}
    for p in pods:
        by_node.setdefault(p.node, []).append(p)
    order = list(by_node)
    pairs: list[probe.Pair] = []
    for node, members in by_node.items():
        others = [n for n in order if n != node]
        for j, src in enumerate(members):
            if len(members) > 1:
                pairs.append((src, members[(j + 1) % len(members)], True))
            for k in range(min(remote_per_pod, len(others))):
                target_node = by_node[others[(j * remote_per_pod + k) % len(others)]]
                pairs.append((src, target_node[j % len(target_node)], True))
    for n in nodes:
        for node, members in by_node.items():
            pairs += [(n, p, True) for p in (members if node == n.node else members[:1])]
    if outside_reaches:
        pairs += [(h, members[0], True) for h in outside for members in by_node.values()]
    return pairs


def plan_pairs(lab: Lab) -> tuple[list[probe.Pair], bool]:
    """The pairs to probe and whether they are a sample."""
    pods, nodes, outside = endpoints(lab)
    pairs = probe.expected_pairs(pods, nodes, outside, outside_reaches_pods(lab))
    if len(pairs) <= ALL_PAIRS_LIMIT:
        return pairs, False
    return sampled_pairs(pods, nodes, outside, outside_reaches_pods(lab)), True


def run(lab: Lab, timeout: float = 1.0) -> list[probe.PathResult]:
    pairs, _ = plan_pairs(lab)
    return probe.probe(pairs, timeout=timeout)


def run_services(lab: Lab) -> tuple[list[Any], list[str], float] | None:
    """The Service rows (lab.services.probe): (results, notes, seconds); None if the lab has no Services."""
    if not lab.topology.cluster_services:
        return None
    import time

    from lab.services import probe as service_probe
    started = time.monotonic()
    results, notes = service_probe.run(lab)
    return results, notes, time.monotonic() - started


@dataclass
class Report:
    """What `check` found: passed, the text a person reads, and json(): every path as a dict
    (20,000 of them for 100 pods), built only when asked for, as `-o json` does."""
    passed: bool
    text: str
    json_view: Callable[[], dict[str, Any]] = field(repr=False)
    _json: dict[str, Any] | None = field(default=None, repr=False)

    def json(self) -> dict[str, Any]:
        if self._json is None:
            self._json = self.json_view()
        return self._json


def report(lab: Lab, results: list[probe.PathResult], seconds: float, sampled: bool = False,
           services: tuple[list[Any], list[str], float] | None = None,
           findings: list[str] | None = None) -> Report:
    """The matrix and its verdict, the Service rows, and in a Calico lab what is wrong with its
    dataplane (`findings`; read from the lab when not given)."""
    pods, nodes, outside = endpoints(lab)
    names = [e.name for e in (*nodes, *pods, *outside)]
    summary = probe.summary(results)
    down = without_network(lab)
    passed = all(r.passed for r in results) and not down
    verdict = "PASS" if passed else "FAIL"
    tail = (f"{verdict}: {summary['passed']}/{summary['total']} paths passed"
            f"{', ' + str(summary['failed']) + ' failed' if summary['failed'] else ''}"
            f"{', NAT seen on ' + str(summary['nat']) if summary['nat'] else ''} in {seconds:.2f} s")
    if sampled:
        tail += (f"\n(a sample: {len(pods)} pods are too many for all pairs, so each pod reached a pod on its own "
                 f"node and on 3 other nodes, covering every pair of nodes; each node reached its own pods and "
                 f"one pod on every other node)")
    if not outside_reaches_pods(lab) and outside:
        tail += f"\n(outside hosts are not expected to reach pods in the {lab.design.name} design, so they were not probed)"
    text = f"lab {lab.name}: the Kubernetes network model\n\n{probe.matrix(results, names)}\n\n{tail}"
    extra: dict[str, Any] = {}
    if findings is None:
        from lab import calico_check
        findings = calico_check.read(lab)        # None: not a Calico lab
    if findings is not None:
        extra["calico"] = findings
    if findings:
        text += "\n\nCalico:\n" + "\n".join(f"  {line}" for line in findings)
    if down:
        extra["cni"] = down
        text += "\n\nCNI: pods without a network (ContainerCreating, not probed):\n" + "\n".join(
            f"  {pod}: {why}" for pod, why in down.items())
    if services is not None:
        from lab.services import probe as service_probe
        service_results, notes, service_seconds = services
        text += "\n\n" + service_probe.report_text(service_results, notes, service_seconds)
        passed = passed and all(r.passed for r in service_results)
        extra["services"] = {"passed": all(r.passed for r in service_results), "seconds": round(service_seconds, 3),
                             "notes": notes, "results": service_probe.to_json(service_results)}
    return Report(passed, text, lambda: {"lab": lab.name, "passed": passed, "seconds": round(seconds, 3),
                                         "summary": summary, "results": [r.to_json() for r in results], **extra})
