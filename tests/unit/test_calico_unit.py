"""Calico designs without root: the topology's calico: section, Calico IPAM, names and MACs as Calico makes them."""
from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from lab import calico_ipam, planner, topology
from lab.designs import calico, calico_vxlan
from lab.errors import TopologyError

BASE = "nodes: [node1, node2]\npods:\n  - {name: a, node: node1, image: nginx}\n  - {name: b, node: node2, image: nginx}\n"


def problems(text: str) -> list[str]:
    with pytest.raises(TopologyError) as e:
        topology.loads(text)
    return [f"{p.path}: {p.message}" for p in e.value.problems]


def test_names_and_macs_are_calicos():
    assert calico.veth_name("default", "nginx") == "calic440f455693"      # calico.md A1's golden
    assert calico_vxlan.vtep_mac("node1") == "66:f9:37:c3:7e:94"          # A5's goldens
    assert calico_vxlan.vtep_mac("node2") == "66:2d:bf:44:a6:8b"
    assert calico_ipam.fnv1_32(b"") == 0x811C9DC5 and calico_ipam.fnv1_32(b"a") == 0x050C5D7E   # FNV-1 vectors


def test_calico_defaults_the_pool_and_a_node_subnet_outside_it():
    topo = topology.loads("design: calico-vxlan\n" + BASE)
    assert topo.pod_cidr == IPv4Network("192.168.0.0/16") and topo.node_subnet == IPv4Network("172.18.0.0/24")
    assert topo.node_mask == 26 and topo.calico is not None


def test_ipam_hands_out_a_block_in_order_and_takes_another_when_full():
    text = ("design: calico-vxlan\ncalico: {blockSize: 30}\nnodes: [node1]\n"
            "deployments:\n  - {name: web, replicas: 4, image: nginx}\n")     # and the cluster DNS pod, last
    a = planner.build(topology.loads(text)).addresses
    node = a.nodes[0]
    assert len(node.blocks) == 2 and node.blocks[1] == IPv4Network((int(node.block.network_address) + 4, 30))
    # The VTEP takes the first block's first address; the pods the next ones, in file order.
    ips = [p.ip for p in a.pods]
    assert ips == [node.block[1], node.block[2], node.block[3], node.blocks[1][0], node.blocks[1][1]]
    assert all(p.prefixlen == 32 for p in a.pods) and node.gateway == IPv4Address("169.254.1.1")


def test_calico_section_under_another_design_is_an_error():
    msgs = problems("design: flannel\ncalico: {blockSize: 26}\n" + BASE)
    assert any(m.startswith("calico:") and "applies to the calico designs" in m for m in msgs), msgs


@pytest.mark.parametrize("section, path, words", [
    ("calico: {blockSize: 19}", "calico.blockSize", "20..32"),
    ("calico: {blockSize: 33}", "calico.blockSize", "20..32"),
    ("calico: {asNumber: 64512}", "calico.asNumber", "has no BGP"),
    ("network: {nodeCIDRMaskSize: 24}", "network.nodeCIDRMaskSize", "calico.blockSize"),
    ("network: {nodeSubnet: 192.168.56.0/24}", "network.nodeSubnet", "overlaps podCIDR"),
])
def test_bad_calico_input_names_the_field(section, path, words):
    msgs = problems(f"design: calico-vxlan\n{section}\n" + BASE)
    assert any(m.startswith(path) and words in m for m in msgs), msgs


def test_plan_shows_the_pool_and_the_blocks():
    from lab import render
    text = render.plan_text(planner.build(topology.load(topology.resolve("calico-vxlan", _topologies()))))
    assert "IP pool 192.168.0.0/16 (Calico IPAM), blocks of /26" in text and "BLOCKS (CALICO IPAM)" in text
    assert "1024 blocks" in text


def _topologies():
    from lab.api import TOPOLOGIES
    return TOPOLOGIES


def test_a_host_without_bird_is_told_the_install_command(monkeypatch):
    from lab.engine import features
    plan = planner.build(topology.load(topology.resolve("calico", _topologies())))
    monkeypatch.setattr(features.shutil, "which", lambda program: None if "bird" in program else "/usr/bin/x")
    assert features.host_problems(plan.ops) == ["the /usr/sbin/bird command: apt-get install bird2"]


def test_bgp_options_and_route_reflectors_are_checked():
    msgs = problems("design: calico\ncalico: {nodeToNodeMesh: false, routeReflectors: [node9]}\n" + BASE)
    assert any(m.startswith("calico.routeReflectors[0]") and "not a node" in m for m in msgs), msgs
    msgs = problems("design: calico\ncalico: {asNumber: 0}\n" + BASE)
    assert any(m.startswith("calico.asNumber") and "out of range" in m for m in msgs), msgs
    msgs = problems("design: calico\ncalico: {nodeToNodeMesh: false}\n" + BASE)
    assert any("routeReflectors" in m for m in msgs), msgs
    topo = topology.loads("design: calico\ncalico: {nodeToNodeMesh: false, routeReflectors: [node1], asNumber: 65001}\n"
                          + BASE)
    conf = next(op for op in planner.build(topo).ops if getattr(op, "path", "").endswith("node2.conf"))
    assert "local as 65001" in conf.content and "Node_172_18_0_11" in conf.content and "Mesh_" not in conf.content
