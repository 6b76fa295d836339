import pytest
from ipaddress import IPv4Address, IPv4Network

from lab import addressing, allocation, topology


def load(text: str):
    return topology.loads(text, source="test.yaml")


def test_node_blocks_gateways_and_pod_addresses_are_deterministic():
    topo = load("""
name: t
mode: vxlan
nodes: [node1, node2]
deployments: [{name: web, replicas: 3, image: nginx}]
""")
    a = allocation.allocate(topo)
    assert [n.block for n in a.nodes] == [IPv4Network("10.244.0.0/24"), IPv4Network("10.244.1.0/24")]
    assert [n.gateway for n in a.nodes] == [IPv4Address("10.244.0.1"), IPv4Address("10.244.1.1")]
    assert [n.ip for n in a.nodes] == [IPv4Address("192.168.56.11"), IPv4Address("192.168.56.12")]
    # round-robin placement; host-local hands out .2, .3, ... per node; the cluster DNS pod last, on the first node
    assert [(p.node, str(p.ip)) for p in a.pods] == [("node1", "10.244.0.2"), ("node2", "10.244.1.2"),
                                                      ("node1", "10.244.0.3"), ("node1", "10.244.0.4")]
    assert a.pods[-1].name.startswith("kube-dns-")
    assert allocation.allocate(topo) == a
    assert a.pod_mtu == 1450


def test_seed_000_capacity():
    cap = addressing.capacity(IPv4Network("172.16.0.0/16"), 25)
    assert (cap.pod_addresses, cap.block_addresses, cap.max_nodes) == (65536, 128, 512)
    assert "65536 addresses / 128 per node block = at most 512 nodes" in str(cap)


def test_l2_pods_share_the_whole_pod_cidr():
    a = allocation.allocate(load("name: t\nmode: l2\nnodes: 2\npods: [{name: a, image: busybox}]"))
    assert a.pods[0].prefixlen == 16
    assert a.pod_mtu == 1500


def test_host_network_pod_uses_the_node_address_and_namespace():
    a = allocation.allocate(load("name: t\nnodes: [n1]\npods: [{name: mon, node: n1, hostNetwork: true, image: busybox},"
                             " {name: p, node: n1, image: busybox}]"))
    mon, p, dns = a.pods
    assert mon.host_network and mon.ip == a.nodes[0].ip and mon.netns == a.nodes[0].netns and mon.veth is None
    assert str(p.ip) == "10.244.0.2" and str(dns.ip) == "10.244.0.3"    # the hostNetwork pod took no pod address


def test_vtep_macs_are_stable_unicast_and_locally_administered():
    mac = addressing.vtep_mac("lab", "node1")
    first = int(mac.split(":")[0], 16)
    assert mac == addressing.vtep_mac("lab", "node1") != addressing.vtep_mac("lab", "node2")
    assert first & 0x02 and not first & 0x01


def test_outside_hosts_follow_the_nodes_and_router_is_first_address():
    a = allocation.allocate(load("name: t\nmode: l3\nrouting: gateway\nnodes: 3\noutside: [ecs]"))
    assert str(a.outside[0].ip) == "192.168.56.14"
    assert str(a.router_ip) == "192.168.56.1"


def test_two_pods_of_one_node_that_would_share_a_host_veth_name_are_refused(monkeypatch):
    from lab import naming
    from lab.errors import PodlabError
    topo = load("name: t\ndns: false\nnodes: [n1, n2]\npods:\n  - {name: a, node: n1, image: busybox}\n"
                "  - {name: b, node: n1, image: busybox}\n  - {name: c, node: n2, image: busybox}\n")
    monkeypatch.setattr(naming, "veth_name", lambda lab, pod: "veth00000000")
    with pytest.raises(PodlabError, match="pods a and b on node n1 would both get the host veth veth00000000"):
        allocation.allocate(topo)
    # The same name on two different nodes is no clash: each node is its own namespace.
    topo = load("name: t\ndns: false\nnodes: [n1, n2]\npods:\n  - {name: a, node: n1, image: busybox}\n"
                "  - {name: c, node: n2, image: busybox}\n")
    assert {p.veth for p in allocation.allocate(topo).pods} == {"veth00000000"}


def test_a_recorded_allocation_reads_back_as_it_was():
    import json

    from lab import allocation, planner, topology
    from lab.api import TOPOLOGIES
    for name in ("default", "kindnet", "l3-vpc-router", "services"):
        a = planner.build(topology.load(TOPOLOGIES / f"{name}.yaml")).addresses
        back = allocation.from_record(json.loads(json.dumps(allocation.record(a))))
        assert back == a, name


def _lab(pods: list[str], mask: int = 29, design: str = "flannel") -> object:
    from lab import topology
    lines = "".join(f"  - {{name: {p}, node: node1, image: nginx}}\n" for p in pods)
    net = f"network: {{nodeCIDRMaskSize: {mask}}}\n" if design == "flannel" else f"calico: {{blockSize: {mask}}}\n"
    # No cluster DNS: its pod would take an address of the block too.
    return topology.loads(f"design: {design}\ndns: false\n{net}nodes: [node1]\npods:\n{lines}", default_name="lab")


def test_a_running_lab_keeps_addresses_and_hands_out_the_next_after_the_last():
    from lab import allocation
    before = allocation.allocate(_lab(["a", "b", "c"]))
    ip = {p.name: p.ip for p in before.pods}
    after = allocation.allocate(_lab(["a", "c", "d"]), previous=before)    # b deleted, d added
    now = {p.name: p.ip for p in after.pods}
    assert now["a"] == ip["a"] and now["c"] == ip["c"]
    assert now["d"] == ip["c"] + 1 != ip["b"]          # host-local: after the last handed out, not b's
    # /29: .2 to .6 for pods. Fill it, then free the first: the next wraps round to it.
    full = allocation.allocate(_lab(["a", "c", "d", "e", "f"]), previous=after)
    assert sorted(p.ip.packed[-1] for p in full.pods) == [2, 3, 4, 5, 6]
    again = allocation.allocate(_lab(["c", "d", "e", "f", "g"]), previous=full)
    assert {p.name: p.ip for p in again.pods}["g"] == ip["a"]


def test_calico_takes_another_block_when_a_running_node_fills_its_own():
    from lab import allocation
    before = allocation.allocate(_lab(["a", "b", "c", "d"], mask=30, design="calico"))
    assert len(before.nodes[0].blocks) == 1
    after = allocation.allocate(_lab(["a", "b", "c", "d", "e"], mask=30, design="calico"), previous=before)
    assert len(after.nodes[0].blocks) == 2 and {p.name: p.ip for p in after.pods}["e"] == after.nodes[0].blocks[1][0]
    assert all(p.ip == q.ip for p, q in zip(before.pods, after.pods))
