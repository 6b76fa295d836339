"""Nodes join and leave a running lab (`podlab apply -f` of the cluster document with another node
list), and `podlab drain`: in every backend family, for real.

A joining node's pods reach the pods of every other node and `check` passes; once a node leaves,
its Deployment's pods live elsewhere under new names, and every namespace holds exactly the kernel
objects of the final plan (a build from scratch of that cluster, with the names and addresses
allocation chose): no route, neighbour, FDB entry or BGP route for the node that left. BIRD is
reconfigured in place: the sessions between the nodes that stay are not reset.
"""
from __future__ import annotations

import io
import socket
import time
from pathlib import Path

import pytest
from labcheck import assert_no_residue
from test_living_property import actual, expected

from lab import api, check, cli, inspect
from lab.bgp import birdc
from lab.designs import bgp as bgp_design
from lab.engine import netns
from lab.netlink import dump, wire
from lab.ops import AddFdb, CreateNamespace

# One design per backend: l2, host-gw, vpc, vxlan, bgp, calico-vxlan (and ptp over vpc).
DESIGNS = ["bridge-l2", "kindnet", "vpc-routes", "gke-routes", "flannel", "calico", "calico-vxlan"]


def podlab(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return cli.main(list(args), out, err), out.getvalue(), err.getvalue()


def cluster(design: str, nodes: list[str], extra: str = "") -> str:
    return (f"design: {design}\nnodes: [{', '.join(nodes)}]\ndeployments:\n  - {{name: web, replicas: 4, image: nginx}}\n"
            + extra)


def apply(name: str, path: Path, text: str) -> str:
    path.write_text(text)
    code, out, err = podlab("apply", "--lab", name, "-f", str(path))
    assert code == 0, err
    return out


def fdb(lab: api.Lab, namespaces: set[str]) -> tuple[set, set]:
    """The VXLAN FDB entries the plan writes, and those the kernel holds."""
    want = {(op.ns, op.dev, op.mac, str(op.dst)) for op in lab.plan.ops if isinstance(op, AddFdb)}
    got = {(ns, e.dev, e.mac, e.dst) for ns in namespaces for e in inspect.snapshot(ns).fdb
           if e.permanent and e.self and e.dst}
    return want, got


def bird_routes(ns: str) -> set[str]:
    sock = netns.socket_in(ns, socket.AF_NETLINK, socket.SOCK_RAW, 0)
    try:
        sock.bind((0, 0))
        return {f"{r.dst}/{r.dst_len}" for r in dump.routes(sock) if r.proto == wire.RTPROT_BIRD
                and r.type == wire.RTN_UNICAST}
    finally:
        sock.close()


def assert_kernel_is_the_plan(lab: api.Lab) -> None:
    want = expected(lab)
    namespaces = {t.netns for t in lab.targets().values()} | set(want)
    got = actual(lab, namespaces)
    for ns in namespaces:   # routes the kernel caches from ICMP redirects (protocol 0) are not objects made
        got[ns] -= {("route", r.dst) for r in inspect.snapshot(ns).routes_in("main") if r.proto == 0}
    if lab.design.backend.bgp:          # BIRD's routes are not the plan's: what it learned is checked below
        learned = {ns: {("route", d) for d in bird_routes(ns)} for ns in namespaces}
        got = {ns: objs - learned[ns] for ns, objs in got.items()}
        for node in lab.addresses.nodes:
            others = {str(b) for n in lab.addresses.nodes if n is not node for b in n.blocks}
            assert bird_routes(node.netns) == others, node.name
    assert got == {ns: want.get(ns, set()) for ns in namespaces}
    assert fdb(lab, namespaces)[0] == fdb(lab, namespaces)[1]


@pytest.mark.parametrize("design", DESIGNS)
def test_a_node_joins_and_another_leaves_in_place(design, tmp_path):
    name = f"nodes{design.replace('-', '')[:8]}"
    path = tmp_path / "cluster.yaml"
    path.write_text(cluster(design, ["node1", "node2"]))
    first = api.up(api.load_topology(str(path), name=name))
    made = [op.ns for op in first.plan.ops if isinstance(op, CreateNamespace)]
    try:
        # node3 joins; a pod put on it reaches a pod on every other node.
        out = apply(name, path, cluster(design, ["node1", "node2", "node3"],
                                         "pods:\n  - {name: probe, node: node3, image: busybox}\n"))
        assert "node/node3 created" in out and "pod/probe created" in out
        lab = api.Lab(name)
        made += [op.ns for op in lab.plan.ops if isinstance(op, CreateNamespace)]
        assert {p.node for p in lab.addresses.pods if p.name != "probe"} == {"node1", "node2"}   # nothing moved
        for node in ("node1", "node2"):
            target = next(p for p in lab.addresses.pods if p.node == node)
            code, out, err = podlab("ping", "--lab", name, "probe", target.name, "-c", "1")
            assert code == 0, out + err
        assert all(r.passed for r in check.run(lab)), [r for r in check.run(lab) if not r.passed][:3]
        assert_kernel_is_the_plan(lab)

        # node1 leaves: its Deployment pods are recreated on the others, under new names.
        gone = {p.name for p in lab.addresses.pods if p.node == "node1"}
        node1 = lab.addresses.node("node1")
        out = apply(name, path, cluster(design, ["node2", "node3"], "pods:\n  - {name: probe, node: node3, image: busybox}\n"))
        assert "node/node1 deleted" in out
        lab = api.Lab(name)
        made += [op.ns for op in lab.plan.ops if isinstance(op, CreateNamespace)]
        web = [p for p in lab.addresses.pods if p.name.startswith("web-")]
        assert len(web) == 4 and not gone & {p.name for p in web} and {p.node for p in web} <= {"node2", "node3"}
        assert not netns.exists(node1.netns)
        assert all(r.passed for r in check.run(lab))
        assert_kernel_is_the_plan(lab)
        for node in lab.addresses.nodes:       # nothing left that names node1's address or block
            snap = inspect.snapshot(node.netns)
            assert not [r for r in snap.routes if r.dst == str(node1.block) or r.gateway == str(node1.ip)]
            assert not [n for n in snap.neighbours if n.address == str(node1.ip) and "PERMANENT" in n.state]
            assert not [e for e in snap.fdb if e.dst == str(node1.ip)]
        code, out, _ = podlab("get", "nodes", "--lab", name)
        assert code == 0 and "node1" not in out and "node3" in out
    finally:
        api.down(name)
    assert_no_residue(name, made)


def sessions(node: str, lab: api.Lab) -> dict[str, birdc.Protocol]:
    sock = str(Path(str(lab.dir)) / "bird" / f"{node}.ctl")
    return {p.name: p for p in birdc.protocols(sock) if p.proto == "BGP"}


def test_bgp_sessions_between_the_nodes_that_stay_are_not_reset(tmp_path):
    name = "nodesbgp"
    path = tmp_path / "cluster.yaml"
    extra = "calico: {blockSize: 29}\n"
    path.write_text(cluster("calico", ["node1", "node2"], extra))
    lab = api.up(api.load_topology(str(path), name=name))
    try:
        mesh = bgp_design.bird.protocol_name("Mesh", str(lab.addresses.node("node2").ip))
        before = sessions("node1", lab)[mesh]
        assert before.bgp_state == "Established"
        time.sleep(1.5)             # BIRD's "since" counts seconds: a reset session would show a later one
        apply(name, path, cluster("calico", ["node1", "node2", "node3"], extra))
        lab = api.Lab(name)
        now = sessions("node1", lab)
        assert now[mesh].bgp_state == "Established" and now[mesh].since == before.since
        assert len(now) == 2 and all(p.bgp_state == "Established" for p in now.values())
        assert all(p.bgp_state == "Established" for p in sessions("node3", lab).values())
        # node1 takes another block (a /29 holds 8 addresses): its BIRD is reconfigured, its peers learn it.
        time.sleep(1.1)
        pods = "pods:\n" + "".join(f"  - {{name: p{i}, node: node1, image: busybox}}\n" for i in range(10))
        apply(name, path, cluster("calico", ["node1", "node2", "node3"], extra + pods))
        lab = api.Lab(name)
        node1 = lab.addresses.node("node1")
        assert len(node1.blocks) >= 2
        assert {str(b) for b in node1.blocks} <= bird_routes(lab.addresses.node("node2").netns)
        again = sessions("node1", lab)
        assert again[mesh].since == before.since and again[mesh].bgp_state == "Established"
        assert all(r.passed for r in check.run(lab))
        # node3 leaves: node1 and node2 drop its session, theirs stays.
        node3_ip = lab.addresses.node("node3").ip
        apply(name, path, cluster("calico", ["node1", "node2"], extra + pods))
        lab = api.Lab(name)
        after = sessions("node1", lab)
        assert set(after) == {mesh} and after[mesh].since == before.since
        # It was the same BIRD all along, told to read its file again: BIRD's status says when it last was.
        status = {ln.text.split(" on ", 1)[0]: ln.text.split(" on ", 1)[1] for ln in birdc.command(
            str(Path(str(lab.dir)) / "bird" / "node1.ctl"), "show status") if " on " in ln.text}
        assert status["Last reconfiguration"] != status["Last reboot"], status
        assert bgp_design.bird.protocol_name("Mesh", str(node3_ip)) not in sessions("node2", lab)
        assert_kernel_is_the_plan(lab)
        assert all(r.passed for r in check.run(lab))
    finally:
        api.down(name)


def test_drain_cordons_the_node_and_moves_its_deployment_pods(tmp_path):
    name = "nodesdrain"
    path = tmp_path / "cluster.yaml"
    path.write_text("design: flannel\nnodes: [node1, node2, node3]\npods:\n  - {name: bare, node: node2, image: busybox}\n"
                    "deployments:\n  - {name: web, replicas: 3, image: nginx}\nservices:\n"
                    "  - {name: web, selector: {app: web}, ports: [{port: 80}]}\n")
    api.up(api.load_topology(str(path), name=name))
    try:
        lab = api.Lab(name)
        on_node2 = [p for p in lab.topology.pods if p.node == "node2"]
        web2 = [p for p in on_node2 if p.deployment == "web"]
        assert web2 and any(p.name == "bare" for p in on_node2)
        code, out, err = podlab("drain", "node2", "--lab", name)
        assert code == 1 and out == "node/node2 cordoned\n"
        assert ('error: unable to drain node "node2" due to error: cannot delete Pods that declare no controller '
                "(use --force to override): default/bare, continuing command...") in err
        assert api.Lab(name).addresses.pods == lab.addresses.pods            # nothing evicted
        code, out, _ = podlab("get", "nodes", "--lab", name)
        assert "node2   Ready,SchedulingDisabled" in out
        code, out, err = podlab("drain", "node2", "--lab", name, "--force", "--ignore-daemonsets")
        assert code == 0, err
        assert "Warning: deleting Pods that declare no controller: default/bare" in err
        lines = out.splitlines()
        assert lines[0] == "node/node2 already cordoned" and lines[-1] == "node/node2 drained"
        for pod in on_node2:
            assert f"evicting pod {pod.namespace}/{pod.name}" in lines and f"pod/{pod.name} evicted" in lines
        lab = api.Lab(name)
        assert not [p for p in lab.topology.pods if p.node == "node2"]
        web = [p for p in lab.topology.pods if p.deployment == "web"]
        assert len(web) == 3 and not {p.name for p in web2} & {p.name for p in web}
        assert "bare" not in {p.name for p in lab.topology.pods}
        assert all(r.passed for r in check.run(lab))
        code, out, _ = podlab("exec", "--lab", name, next(p.name for p in web), "--", "wget", "-qO-", "-T", "3",
                              "http://web.default.svc.cluster.local/")
        assert code == 0 and "Welcome" in out
        # Cordoned, node2 takes none of the pods of a scale-up; uncordoned it does.
        assert podlab("scale", "deployment", "web", "--replicas", "5", "--lab", name)[0] == 0
        assert not [p for p in api.Lab(name).topology.pods if p.node == "node2"]
        assert podlab("uncordon", "node2", "--lab", name)[1] == "node/node2 uncordoned\n"
        assert podlab("uncordon", "node2", "--lab", name)[1] == "node/node2 already uncordoned\n"
        assert podlab("scale", "deployment", "web", "--replicas", "6", "--lab", name)[0] == 0
        assert [p for p in api.Lab(name).topology.pods if p.node == "node2"]
        assert "SchedulingDisabled" not in podlab("get", "nodes", "--lab", name)[1]
    finally:
        api.down(name)
