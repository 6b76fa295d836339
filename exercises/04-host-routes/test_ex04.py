"""Grader of exercise 04: every node routes the other node's pod block via that node (host-gw)."""


def test_node_routes(podlab):
    """every node has a route to the other node's pod block, via that node's IP on eth0"""
    for node in podlab.nodes():
        for peer in podlab.nodes():
            if peer != node:
                podlab.expect_route(node, str(podlab.block_of(peer)), via=peer, dev="eth0")


def test_node2_pods_reach_node1_pods(podlab):
    """the pods on node2 reach the pods on node1 (ping and HTTP, no NAT)"""
    podlab.expect_paths([(a, b) for a in podlab.pods("node2") for b in podlab.pods("node1")])


def test_node1_pods_reach_node2_pods(podlab):
    """the pods on node1 reach the pods on node2 (ping and HTTP, no NAT)"""
    podlab.expect_paths([(a, b) for a in podlab.pods("node1") for b in podlab.pods("node2")])
