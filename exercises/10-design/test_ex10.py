"""Grader of exercise 10: the student's design.yaml, brought up for real, meets the specification."""
from ipaddress import ip_interface, ip_network

import pytest

NODES = 3
PODS_PER_NODE = 2
CLUSTER = ip_network("10.50.0.0/16")
NODE_MASK = 26


@pytest.fixture(scope="module")
def design(podlab_up, podlab_exercise):
    """The design brought up (or why it could not be)."""
    try:
        return podlab_up(podlab_exercise.path("design.yaml"))
    except AssertionError as e:
        return str(e)


def _up(design):
    if isinstance(design, str):
        pytest.fail(f"needs a design that comes up: {design.splitlines()[0]}", pytrace=False)
    return design


def test_design_comes_up(design):
    """design.yaml is a valid topology and comes up as a lab"""
    assert not isinstance(design, str), design


def test_nodes(design):
    """the cluster has 3 nodes"""
    g = _up(design)
    assert len(g.nodes()) == NODES, f"the design has {len(g.nodes())} nodes; the specification asks for {NODES}"


def test_host_gw_routing(design):
    """nodes route to each other's pod blocks directly (host-gw), with no overlay device"""
    g = _up(design)
    for node in g.nodes():
        overlay = [l.name for l in g.links(node) if l.kind == "vxlan"]
        assert not overlay, f"{node} has a VXLAN device ({', '.join(overlay)}): host-gw uses no overlay"
        for peer in g.nodes():
            if peer != node:
                g.expect_route(node, str(g.block_of(peer)), via=peer, dev="eth0")


def test_node_blocks(design):
    """every node's pod block is a /26 of 10.50.0.0/16, held by its bridge"""
    g = _up(design)
    bridge = g.topology.bridge
    for node in g.nodes():
        held = [ip_interface(a) for a in g.addresses_of(node, bridge)]
        assert held, f"{node}'s {bridge} has no address: it is the pods' gateway"
        block = held[0].network
        assert block.prefixlen == NODE_MASK and block.subnet_of(CLUSTER), (
            f"{node}'s pods get {block}; the specification asks for a /{NODE_MASK} of {CLUSTER}")


def test_pods_per_node(design):
    """every node has exactly two nginx pods on its bridge"""
    g = _up(design)
    bridge = g.topology.bridge
    # The cluster's own pods (kube-system's DNS pod) are not the design's: their ports do not count.
    system = {a.veth for a in g.addresses.pods if a.name not in g.workload_pods()}
    for node in g.nodes():
        ports = [l.name for l in g.links(node) if l.master == bridge and l.name not in system]
        assert len(ports) == PODS_PER_NODE, (f"{node} has {len(ports)} pods on its bridge; the specification "
                                             f"asks for {PODS_PER_NODE} on every node")
    for pod in (p for p in g.topology.pods if p.name in g.workload_pods()):
        images = {c.workload for c in pod.containers}
        assert images == {"http"}, f"pod {pod.name} is not an nginx pod: the cluster runs only nginx pods"


def test_pods_reach_each_other(design):
    """every pod reaches every other pod and serves its page (ping and HTTP, no NAT)"""
    g = _up(design)
    assert len(g.workload_pods()) == NODES * PODS_PER_NODE, (
        f"the design has {len(g.workload_pods())} pods; the specification asks for {NODES * PODS_PER_NODE}")
    g.expect_pods_reach_each_other()
