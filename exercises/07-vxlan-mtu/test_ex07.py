"""Grader of exercise 07: pod MTUs fit the VXLAN overlay, so large answers cross it."""

LARGE = 1_000_000


def test_small_packets_pass(podlab):
    """small packets cross the overlay: client pings web"""
    podlab.expect_reach("client", "web", "icmp")


def test_large_answer_arrives(podlab):
    """a 1 MB answer from web arrives whole at client"""
    r = podlab.http("client", "web", f"/large?bytes={LARGE}", timeout=4)
    if not r.ok:
        # podlab explain's walk, when installed, says where a full-size packet from web stops.
        where = podlab.explain("web", "client", proto="tcp", port=80, size=podlab.mtu("web", "eth0"))
        raise AssertionError(f"client asked web for {LARGE} bytes and {r.error or 'it failed'}: large packets "
                             f"do not cross the overlay" + (f" (a full-size packet from web: {where})" if where else ""))
    assert len(r.body) == LARGE, f"client got {len(r.body)} of {LARGE} bytes"


def test_mtus_fit_the_overlay(podlab):
    """on every node, the pods' eth0, their host veths and cni0 fit in flannel.1's MTU"""
    bridge = podlab.topology.bridge
    for node in podlab.nodes():
        overlay = podlab.mtu(node, "flannel.1")
        assert overlay, f"{node} has no flannel.1"
        why = (f"but {node}'s flannel.1 carries at most {overlay} bytes (VXLAN adds 50 to every packet): "
               f"bigger packets are dropped there, and the ICMP error that would say so never arrives")
        for pod in podlab.addresses.pods:
            if pod.node != node or pod.host_network:
                continue
            assert podlab.mtu(pod.name, "eth0") <= overlay, \
                f"pod {pod.name}'s eth0 has MTU {podlab.mtu(pod.name, 'eth0')}, {why}"
            assert podlab.mtu(node, pod.veth) <= overlay, \
                f"{pod.veth} on {node} (pod {pod.name}'s host end) has MTU {podlab.mtu(node, pod.veth)}, {why}"
        assert podlab.mtu(node, bridge) <= overlay, f"{bridge} on {node} has MTU {podlab.mtu(node, bridge)}, {why}"
