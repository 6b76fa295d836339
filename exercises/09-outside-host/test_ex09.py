"""Grader of exercise 09: an outside host in the VPC reaches pods directly, via the VPC router."""


def test_ecs_routes_via_router(podlab):
    """ecs sends traffic for every node's pod block to the VPC router"""
    for node in podlab.nodes():
        podlab.expect_route("ecs", str(podlab.block_of(node)), via="router")


def test_ecs_reaches_pods(podlab):
    """ecs reaches every pod by its IP (ping and HTTP)"""
    podlab.expect_paths([("ecs", p) for p in podlab.pods()], what="paths from ecs to pods")


def test_pods_see_ecs_address(podlab):
    """the echo pod sees requests come from ecs's own address (no NAT)"""
    seen = podlab.seen_source("ecs", "echo")
    own = str(podlab.target("ecs").ip)
    assert seen == own, f"echo saw the request come from {seen}, not from ecs's own address {own}"
