"""Grader of exercise 05: the VPC route table has one route per node block; the capacity answer."""


def test_router_routes(podlab):
    """the VPC router has a route to every node's pod block, via that node"""
    for node in podlab.nodes():
        podlab.expect_route("router", str(podlab.block_of(node)), via=node)


def test_nodes_use_the_router(podlab):
    """nodes hold no routes to other nodes' pod blocks: they send them to the VPC router"""
    for node in podlab.nodes():
        for peer in podlab.nodes():
            if peer != node:
                podlab.expect_route(node, str(podlab.block_of(peer)), via="router",
                                    what=f"{podlab.block_of(peer)}, {peer}'s pod block")


def test_pods_reach_each_other(podlab):
    """every pod reaches every other pod, across nodes (ping and HTTP, no NAT)"""
    podlab.expect_pods_reach_each_other()


def test_capacity(podlab, podlab_exercise):
    """capacity.txt holds the maximum number of nodes of this design"""
    topo = podlab.topology
    per_node = 2 ** (32 - topo.node_mask)
    expected = topo.pod_cidr.num_addresses // per_node
    words = [line.strip() for line in podlab_exercise.read("capacity.txt").splitlines()
             if line.strip() and not line.strip().startswith("#")]
    assert words, f"{podlab_exercise.path('capacity.txt')} has no answer yet: write the number of nodes in it"
    answer = words[0].replace(",", "").replace("_", "")
    assert answer.isdigit(), f"capacity.txt says {words[0]!r}: write just the number of nodes"
    assert int(answer) == expected, (
        f"capacity.txt says {int(answer)} nodes, which is not what this design allows: count the addresses in "
        f"the container CIDR block {topo.pod_cidr} and in one node's /{topo.node_mask} block")
