"""Grader of exercise 11: every node's kube-proxy table turns Service echo's ClusterIP into its pods again.

Real requests from inside every pod (lab.services.probe, what `podlab check` sends), and each
node's `table ip kube-proxy` read from the kernel (`nft -j`) against what kube-proxy writes for
the lab's Services and endpoints.
"""
import pytest

from lab.grading.kubeproxy import table_problems
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
