"""Golden plans: every shipped topology renders to the ip/bridge/sysctl commands on file.

Regenerate after an intended change with PODLAB_UPDATE_GOLDEN=1 and review the diff.
"""
import os
from collections import Counter
from pathlib import Path

import pytest

from lab import commands, designs, planner, topology
from lab.errors import PodlabError
from lab.ops import AddFdb, AddNeighbour, AddRoute, CreateNamespace, CreateVxlan

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"
GOLDEN = Path(__file__).resolve().parent / "golden"
SMALL = sorted(p for p in TOPOLOGIES.glob("*.yaml") if p.stem != "scale")


@pytest.mark.parametrize("path", SMALL, ids=[p.stem for p in SMALL])
def test_golden_commands(path):
    text = "\n".join(commands.render(planner.build(topology.load(path)).ops)) + "\n"
    golden = GOLDEN / f"{path.stem}.txt"
    if os.environ.get("PODLAB_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_every_shipped_topology_plans():
    for path in TOPOLOGIES.glob("*.yaml"):
        plan = planner.build(topology.load(path))
        assert plan.ops


def test_vxlan_has_one_neighbour_fdb_and_route_per_remote_node_never_per_pod():
    plan = planner.build(topology.load(TOPOLOGIES / "scale.yaml"))
    nodes = plan.addresses.nodes
    assert len(nodes) == 50 and len(plan.addresses.pods) == 1000 + 1     # and the cluster DNS pod
    for kind in (AddNeighbour, AddFdb):
        per_ns = Counter(op.ns for op in plan.ops if isinstance(op, kind) and op.dev == "flannel.1")
        assert set(per_ns.values()) == {49} and len(per_ns) == 50
    overlay_routes = Counter(op.ns for op in plan.ops if isinstance(op, AddRoute) and op.dev == "flannel.1")
    assert set(overlay_routes.values()) == {49}
    vx = [op for op in plan.ops if isinstance(op, CreateVxlan)]
    assert {(op.vni, op.port, op.mtu, op.learning) for op in vx} == {(1, 8472, 1450, False)}


def test_vpc_router_holds_one_route_per_node_and_nodes_have_none_for_remote_blocks():
    plan = planner.build(topology.load(TOPOLOGIES / "l3-vpc-router.yaml"))
    a = plan.addresses
    routes = [op for op in plan.ops if isinstance(op, AddRoute)]
    router = [r for r in routes if r.ns == a.underlay_netns]
    assert sorted((str(r.dst), str(r.via)) for r in router) == sorted((str(n.block), str(n.ip)) for n in a.nodes)
    for n in a.nodes:
        node_routes = [r for r in routes if r.ns == n.netns]
        assert [str(r.dst) for r in node_routes] == ["0.0.0.0/0"]


def test_names_in_plan_never_collide():
    plan = planner.build(topology.load(TOPOLOGIES / "scale.yaml"))
    names = [op.ns for op in plan.ops if isinstance(op, CreateNamespace)]
    assert len(names) == len(set(names))


def test_unknown_design_parts_list_the_known_ones():
    with pytest.raises(PodlabError, match="flannel, flannel-host-gw, bridge-l2, vpc-routes, kindnet, gke-routes"):
        designs.preset("calico-typo")
    with pytest.raises(PodlabError, match="known attachments are bridge, ptp"):
        designs.combine("macvlan", "vxlan")
    with pytest.raises(PodlabError, match="known backends are l2, host-gw, vpc, vxlan"):
        designs.combine("bridge", "ipip")
    with pytest.raises(PodlabError, match="has no bridge"):
        designs.combine("ptp", "l2")


def test_large_labs_write_permanent_neighbours_small_labs_let_arp_learn():
    """The kernel's ARP table is shared by all namespaces (1024 dynamic entries): large labs must not rely on it."""
    big = planner.build(topology.load(TOPOLOGIES / "scale.yaml"))
    assert big.addresses.static_neighbours
    a = big.addresses
    pod = a.pods[0]
    node = a.node(pod.node)
    neigh = {(op.ns, op.dev, str(op.address)) for op in big.ops if isinstance(op, AddNeighbour)}
    assert (pod.netns, "eth0", str(node.gateway)) in neigh
    assert (node.netns, "cni0", str(pod.ip)) in neigh
    assert (node.netns, "eth0", str(a.nodes[1].ip if node is a.nodes[0] else a.nodes[0].ip)) in neigh
    small = planner.build(topology.load(TOPOLOGIES / "default.yaml"))
    assert not small.addresses.static_neighbours
    assert all(op.dev == "flannel.1" for op in small.ops if isinstance(op, AddNeighbour))


def test_check_samples_large_labs_but_covers_every_pair_of_nodes():
    from ipaddress import IPv4Address

    from lab import check, probe
    plan = planner.build(topology.load(TOPOLOGIES / "scale.yaml"))
    pods, nodes, outside = probe.endpoints_from_plan(plan.topology, plan.addresses)
    pairs = check.sampled_pairs(pods, nodes, outside, False)
    assert len(pairs) < 10_000
    crossed = {(a.node, b.node) for a, b, _ in pairs if a.kind == "pod"}
    names = [n.name for n in plan.addresses.nodes]
    assert crossed == {(x, y) for x in names for y in names}
    assert all(a.name != b.name for a, b, _ in pairs)
    assert {b.name for _, b, _ in pairs} == {p.name for p in pods}


def test_neighbour_budget_counts_pods_sharing_a_bridge():
    """All pairs of 100 pods on one bridge would teach ARP 9,900 entries: they are written as permanent
    ones. 1000 pods on one bridge would need 999,000 (most of `up`'s time and ~300 MB of kernel memory),
    so only the entries that grow linearly are written and pods of that node ARP for each other."""
    def one_bridge(pods: int, mask: int):
        text = (f"mode: l2\nnetwork: {{nodeCIDRMaskSize: {mask}}}\nnodes: [node1]\n"
                f"deployments: [{{name: web, replicas: {pods}, image: pause}}]\n")
        return planner.build(topology.loads(text, default_name="budget"))
    hundred = one_bridge(100, 24)     # 101 pods on the bridge: the cluster DNS pod is one too
    assert hundred.addresses.static_neighbours and hundred.addresses.static_pod_pairs
    assert sum(isinstance(op, AddNeighbour) for op in hundred.ops) == 101 * 100 + 2 * 101
    thousand = one_bridge(1000, 22)
    assert thousand.addresses.static_neighbours and not thousand.addresses.static_pod_pairs
    assert sum(isinstance(op, AddNeighbour) for op in thousand.ops) == 2 * 1001


def test_check_report_builds_its_json_view_only_when_asked(monkeypatch):
    from types import SimpleNamespace

    from lab import check, probe
    plan = planner.build(topology.load(TOPOLOGIES / "default.yaml"))
    lab = SimpleNamespace(name="t", topology=plan.topology, addresses=plan.addresses,
                          design=designs.of(plan.topology))
    pods, nodes, outside = probe.endpoints_from_plan(plan.topology, plan.addresses)
    pairs = probe.expected_pairs(pods, nodes, outside, False)
    results = [probe.PathResult(s.name, d.name, "icmp", True, True, str(s.ip), str(s.ip), 0.1, None, str(d.ip),
                                s.kind, s.node, d.kind, d.node) for s, d, _ in pairs]
    calls = []
    original = probe.PathResult.to_json
    monkeypatch.setattr(probe.PathResult, "to_json", lambda self: calls.append(self) or original(self))
    report = check.report(lab, results, 1.5)
    assert report.passed and f"PASS: {len(results)}/{len(results)} paths passed in 1.50 s" in report.text
    assert calls == []                                    # text output costs no JSON
    view = report.json()
    assert view["passed"] and view["summary"]["total"] == len(results) and view["seconds"] == 1.5
    assert view["results"][0] == original(results[0]) and len(calls) == len(results)
    assert report.json() is view and len(calls) == len(results)   # built once
