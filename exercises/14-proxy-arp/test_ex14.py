"""Grader of exercise 14: every pod's cali interface answers ARP for 169.254.1.1 by proxy."""


def test_cali_interfaces_answer_arp_by_proxy(podlab):
    """every pod's host end (its cali interface) answers ARP by proxy (proxy_arp = 1)"""
    podlab.expect_proxy_arp()


def test_pods_reach_each_other(podlab):
    """every pod reaches every other pod, on its node and across nodes (ping and HTTP, no NAT)"""
    podlab.expect_pods_reach_each_other()
