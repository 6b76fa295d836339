"""Grader of exercise 08: every node forwards, so pods reach pods across nodes."""


def test_nodes_forward(podlab):
    """every node forwards packets (net.ipv4.ip_forward = 1)"""
    off = [n for n in podlab.nodes() if podlab.sysctl(n, "net.ipv4.ip_forward") != "1"]
    assert not off, (f"{', '.join(off)} {'does' if len(off) == 1 else 'do'} not forward packets "
                     f"(net.ipv4.ip_forward = 0): packets from pods to other nodes, and answers to them, stop there")


def test_pods_reach_each_other(podlab):
    """every pod reaches every other pod, on its node and across nodes (ping and HTTP, no NAT)"""
    podlab.expect_pods_reach_each_other()
