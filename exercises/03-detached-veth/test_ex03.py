"""Grader of exercise 03: every pod's host-side veth is a port of the node's bridge."""


def test_veths_on_bridge(podlab):
    """the node end of every pod's veth is an up port of bridge cni0"""
    bridge = podlab.topology.bridge
    for pod in podlab.addresses.pods:
        link = podlab.link(pod.node, pod.veth)
        assert link is not None, f"{pod.node} has no interface {pod.veth} (pod {pod.name}'s host end)"
        assert link.master == bridge, (
            f"on {pod.node}, {pod.veth} (pod {pod.name}'s host end) is "
            + (f"attached to {link.master}" if link.master else "not attached to any bridge")
            + f": it must be a port of {bridge}")
        assert link.state.startswith("UP"), f"on {pod.node}, {pod.veth} (pod {pod.name}'s host end) is down"


def test_pods_reach_each_other(podlab):
    """every pod reaches every other pod (ping and HTTP, no NAT)"""
    podlab.expect_pods_reach_each_other()


def test_node_reaches_pods(podlab):
    """the node reaches every pod on it"""
    podlab.expect_paths([("node1", p) for p in podlab.pods("node1")], protos=("icmp",), what="paths from node1")
