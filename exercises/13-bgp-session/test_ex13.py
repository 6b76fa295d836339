"""Grader of exercise 13: BGP is up again between every pair of nodes, and brings every block."""


def test_bgp_sessions_established(podlab):
    """every node's BIRD has every BGP session Established, in the cluster's AS (sudo podlab bgp)"""
    podlab.expect_bgp_established()


def test_blocks_learned_by_bgp(podlab):
    """every node holds each other node's block as BIRD learned it (<block> via <node IP> proto bird)"""
    podlab.expect_blocks_learned()


def test_pods_reach_each_other(podlab):
    """every pod reaches every other pod, on its node and across nodes (ping and HTTP, no NAT)"""
    podlab.expect_pods_reach_each_other()
