"""lab.preview: a plan replayed into the records the kernel would hold, without root."""
from __future__ import annotations

from lab import api, planner
from lab.preview import replay


def replayed(name: str):
    plan = planner.build(api.load_topology(name))
    return plan.addresses, replay(plan)


def test_a_ptp_design_shows_the_routes_the_ptp_plugin_leaves():
    a, snaps = replayed("kindnet")
    node = a.nodes[1]
    pod = next(p for p in a.pods if p.node == node.name)
    main = {r.dst: r for r in snaps[pod.netns].routes_in("main")}
    gw = "10.244.1.1"
    # The connected route is gone; the block is reached via the gateway, which is on-link.
    assert set(main) == {"default", "10.244.1.0/24", f"{gw}/32"}
    assert main["10.244.1.0/24"].gateway == gw and main["10.244.1.0/24"].src == str(pod.ip)
    assert (main[f"{gw}/32"].scope, main[f"{gw}/32"].src) == ("link", str(pod.ip))
    host = {r.dst: r for r in snaps[node.netns].routes_in("main")}
    assert host[f"{pod.ip}/32"].scope == "host"
    assert snaps[pod.netns].sysctls["net.ipv4.conf.all.forwarding"] == "0"


def test_the_plan_is_replayed_into_kernel_like_records():
    a, snaps = replayed("default")
    pod = next(p for p in a.pods if p.node == "node1")
    snap = snaps[pod.netns]
    assert [l.name for l in snap.links] == ["lo", "eth0"]
    assert [x.address for x in snap.addresses if x.dev == "eth0"] == [f"{pod.ip}/24"]
    main = {r.dst: r for r in snap.routes_in("main")}
    assert main["default"].gateway == "10.244.0.1" and main["default"].dev == "eth0"
    assert "10.244.0.0/24" in main
    node = snaps[a.nodes[0].netns]
    vxlan = node.link("flannel.1")
    assert vxlan is not None and vxlan.vxlan["id"] == 1 and vxlan.vxlan["learning"] is False
    assert [f.dst for f in node.fdb if f.dev == "flannel.1"] == [str(a.nodes[1].ip)]


def test_both_ends_of_a_veth_name_each_other():
    a, snaps = replayed("default")
    pod = a.pods[0]
    eth0 = snaps[pod.netns].link("eth0")
    host_end = snaps[a.node(pod.node).netns].link(pod.veth)
    assert eth0 is not None and host_end is not None
    assert (eth0.peer_index, host_end.peer_index) == (host_end.index, eth0.index)
    assert host_end.master == planner.build(api.load_topology("default")).topology.bridge
