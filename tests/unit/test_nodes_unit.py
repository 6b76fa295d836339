"""Nodes joining and leaving a running lab, and cordoned nodes, without root: what a change means."""
from __future__ import annotations

from ipaddress import IPv4Network

import pytest

from lab import allocation, change, planner, topology
from lab.errors import PodlabError
from lab.ops import (AddFdb, AddNeighbour, AddRoute, CreateNamespace, DelFdb, DelNeighbour, DelRoute, StartDaemon,
                     UpdateDaemon)

DESIGNS = ["bridge-l2", "flannel-host-gw", "vpc-routes", "flannel", "kindnet", "gke-routes", "calico", "calico-vxlan"]


def _doc(design: str, nodes: list[str], extra: str = "", replicas: int = 4) -> str:
    return (f"design: {design}\nnodes: [{', '.join(nodes)}]\ndeployments:\n"
            f"  - {{name: web, replicas: {replicas}, image: nginx}}\n{extra}")


def _running(text: str) -> tuple[planner.Plan, topology.Scheduling]:
    topo = topology.loads(text, default_name="lab")
    return planner.build(topo), topology.scheduling_of(topo.pods)


def _then(plan: planner.Plan, bound: topology.Scheduling, text: str) -> tuple[change.Change, topology.Scheduling]:
    desired = topology.loads(text, default_name="lab", bound=bound)
    return change.plan_change(plan, desired), topology.scheduling_of(desired.pods, bound)


def _objects(ops) -> set:
    """What a plan's ops leave in the kernel that a change must add or delete one by one."""
    out = set()
    for op in ops:
        if isinstance(op, AddRoute):
            out.add(("route", op.ns, op.dst))
        elif isinstance(op, AddNeighbour):
            out.add(("neigh", op.ns, op.dev, op.address))
        elif isinstance(op, AddFdb):
            out.add(("fdb", op.ns, op.dev, op.mac))
    return out


def _deleted(ops) -> set:
    out = set()
    for op in ops:
        if isinstance(op, DelRoute):
            out.add(("route", op.ns, op.dst))
        elif isinstance(op, DelNeighbour):
            out.add(("neigh", op.ns, op.dev, op.address))
        elif isinstance(op, DelFdb):
            out.add(("fdb", op.ns, op.dev, op.mac))
    return out


@pytest.mark.parametrize("design", DESIGNS)
def test_a_joining_node_gets_its_namespace_and_the_others_learn_it_with_no_pod_moved(design):
    plan, bound = _running(_doc(design, ["node1", "node2"]))
    ch, _ = _then(plan, bound, _doc(design, ["node1", "node2", "node3"]))
    assert ch.nodes_added == ("node3",) and not ch.nodes_removed and not ch.added and not ch.removed
    assert [op.ns for op in ch.ops if isinstance(op, CreateNamespace)] == ["lab-node3"]
    new = ch.plan.addresses.node("node3")
    assert new.ip not in {n.ip for n in plan.addresses.nodes}
    assert not set(new.blocks) & {b for n in plan.addresses.nodes for b in n.blocks}
    # Exactly the objects the final plan has and the first had not, in the namespaces already there too.
    assert _objects(ch.ops) == _objects(ch.plan.ops) - _objects(plan.ops)
    assert not _deleted(ch.ops) - _deleted(ch.plan.ops)


@pytest.mark.parametrize("design", DESIGNS)
def test_a_leaving_node_takes_its_pods_and_what_the_others_held_for_it_is_deleted(design):
    plan, bound = _running(_doc(design, ["node1", "node2", "node3"], replicas=6))
    on_node1 = {p.name for p in plan.addresses.pods if p.node == "node1"}
    ch, _ = _then(plan, bound, _doc(design, ["node2", "node3"], replicas=6))
    assert ch.nodes_removed == ("node1",) and "lab-node1" in ch.remove_namespaces
    assert set(ch.removed) == on_node1 and len(ch.added) == len(on_node1)
    after = {p.name: p for p in ch.plan.addresses.pods}
    assert not on_node1 & set(after) and all(after[n].node in ("node2", "node3") for n in ch.added)
    assert not [op for op in ch.ops if getattr(op, "ns", None) == "lab-node1"]
    gone = _objects(plan.ops) - _objects(ch.plan.ops)
    kept_ns = {op.ns for op in ch.plan.ops if isinstance(op, CreateNamespace)}
    # (the ptp plugin's own deletion of a new pod's connected route is the plan's, not an undo)
    assert _deleted(ch.ops) - _deleted(ch.plan.ops) == {g for g in gone if g[1] in kept_ns}
    assert _objects(ch.ops) == _objects(ch.plan.ops) - _objects(plan.ops)


def test_a_joining_node_gets_the_block_after_the_last_handed_out_not_the_one_just_freed():
    """Kubernetes' node IPAM (cidrset.AllocateNext) goes on from nextCandidate, wrapping."""
    plan, bound = _running(_doc("kindnet", ["node1", "node2", "node3"]))
    ch, bound = _then(plan, bound, _doc("kindnet", ["node1", "node3"]))
    ch2, _ = _then(ch.plan, bound, _doc("kindnet", ["node1", "node3", "node4"]))
    node4 = ch2.plan.addresses.node("node4")
    assert node4.block == IPv4Network("10.244.3.0/24") and str(node4.ip) == "192.168.56.14"
    record = allocation.from_record(allocation.record(ch2.plan.addresses))
    assert record == ch2.plan.addresses and record.last_node == (node4.ip, node4.block)


def test_bgp_peers_are_reconfigured_in_place_and_a_joining_nodes_bird_started():
    plan, bound = _running(_doc("calico", ["node1", "node2"]))
    ch, bound = _then(plan, bound, _doc("calico", ["node1", "node2", "node3"]))
    started = [op for op in ch.ops if isinstance(op, StartDaemon) and op.kind == "process"]
    assert [op.ns for op in started] == ["lab-node3"]
    updated = {u.daemon.ns: u.reconfigure for u in ch.ops if isinstance(u, UpdateDaemon)}
    assert updated == {"lab-node1": True, "lab-node2": True}
    ch, _ = _then(ch.plan, bound, _doc("calico", ["node2", "node3"]))
    assert {u.daemon.ns for u in ch.ops if isinstance(u, UpdateDaemon) and u.reconfigure} == {"lab-node2", "lab-node3"}
    assert not [op for op in ch.ops if isinstance(op, StartDaemon) and op.kind == "process"]   # node1's DNS pod moves


def test_a_calico_node_taking_another_block_reconfigures_its_bird_and_the_peers_wait_for_it():
    calico = "calico: {blockSize: 29}\n"
    pods = lambda n: "pods:\n" + "".join(f"  - {{name: p{i}, node: node1, image: nginx}}\n" for i in range(n))
    plan, bound = _running("design: calico\nnodes: [node1, node2]\n" + calico + pods(4))
    ch, _ = _then(plan, bound, "design: calico\nnodes: [node1, node2]\n" + calico + pods(12))
    node1 = ch.plan.addresses.node("node1")
    assert len(node1.blocks) == 2
    updates = {u.daemon.ns: u.reconfigure for u in ch.ops if isinstance(u, UpdateDaemon)}
    assert updates == {"lab-node1": True, "lab-node2": False}     # node2 learns the block, its file is the same


def test_a_cordoned_node_keeps_its_pods_and_takes_no_new_one():
    plan, bound = _running(_doc("kindnet", ["node1", "node2"], replicas=2))
    bound = bound.with_cordon("node2", True)
    topo = topology.loads(_doc("kindnet", ["node1", "node2"], replicas=6), default_name="lab", bound=bound)
    before = {p.name: p.node for p in plan.topology.pods}
    assert all(p.node == before[p.name] for p in topo.pods if p.name in before)
    assert {p.node for p in topo.pods if p.name not in before} == {"node1"}
    recorded = topology.scheduling_of(topo.pods, bound, ["node1", "node2"])
    assert recorded.cordoned == ["node2"] and topology.Scheduling.from_record(recorded.record()) == recorded
    both = bound.with_cordon("node1", True)
    with pytest.raises(PodlabError, match=r"0/2 nodes are available: 2 node\(s\) were unschedulable"):
        topology.loads(_doc("kindnet", ["node1", "node2"], replicas=3), default_name="lab", bound=both)


def test_evicted_pods_of_a_drained_node_are_replaced_elsewhere_and_the_dns_pod_too():
    text = _doc("kindnet", ["node1", "node2"], "services: []\n", replicas=2)
    topo = topology.loads(text, default_name="lab")
    bound = topology.scheduling_of(topo.pods).with_cordon("node1", True)
    evict = {p.name for p in topo.pods if p.node == "node1"}
    assert any(p.deployment == "kube-dns" for p in topo.pods if p.name in evict)
    again = topology.loads(text, default_name="lab", bound=topology.without(bound, evict, topo.pods))
    assert not evict & {p.name for p in again.pods} and {p.node for p in again.pods} == {"node2"}
    assert len(again.pods) == len(topo.pods)


def test_a_bare_pod_of_a_leaving_node_is_made_again_elsewhere_under_its_name():
    text = lambda nodes: _doc("flannel", nodes, "pods:\n  - {name: solo, image: nginx}\n", replicas=0)
    plan, bound = _running(text(["node1", "node2"]))
    assert plan.addresses.pod("solo").node == "node1"
    ch, _ = _then(plan, bound, text(["node2"]))
    dns = lambda names: {n for n in names if n.startswith("kube-dns-")}     # node1's DNS pod is replaced too
    assert set(ch.added) - dns(ch.added) == set(ch.removed) - dns(ch.removed) == {"solo"}
    assert ch.plan.addresses.pod("solo").node == "node2"


def test_the_design_and_outside_hosts_still_cannot_change_in_place():
    plan, bound = _running(_doc("kindnet", ["node1", "node2"]) + "outside: [ext]\n")
    with pytest.raises(PodlabError, match="the outside hosts"):
        _then(plan, bound, _doc("kindnet", ["node1", "node2"]))
    ch, _ = _then(plan, bound, _doc("kindnet", ["node1", "node2", "node3"]) + "outside: [ext]\n")
    assert ch.plan.addresses.outside == plan.addresses.outside     # the outside host keeps its address


@pytest.mark.parametrize("design", ["vpc-routes", "flannel", "calico"])
def test_a_large_lab_forgets_a_leaving_nodes_static_neighbours_and_writes_a_joining_ones(design):
    nodes = ["node1", "node2", "node3"]
    plan, bound = _running(_doc(design, nodes, replicas=420))
    assert plan.addresses.static_neighbours
    ch, bound = _then(plan, bound, _doc(design, ["node1", "node2", "node4"], replicas=420))
    node3 = plan.addresses.node("node3")
    dels = [op for op in ch.ops if isinstance(op, DelNeighbour)]
    assert {op.address for op in dels if not op.ns.startswith("lab-web")} >= {node3.ip}
    kept_ns = {op.ns for op in ch.plan.ops if isinstance(op, CreateNamespace)}
    gone = _objects(plan.ops) - _objects(ch.plan.ops)
    assert _deleted(ch.ops) - _deleted(ch.plan.ops) == {g for g in gone if g[1] in kept_ns}
    assert _objects(ch.ops) == _objects(ch.plan.ops) - _objects(plan.ops)
    node4 = ch.plan.addresses.node("node4")
    assert any(isinstance(op, AddNeighbour) and op.address == node4.ip and op.ns == "lab-node1" for op in ch.ops)
