"""The path walk and the trace verdict, reasoned over synthetic snapshots (no root, no kernel).

The snapshots spell out a two-node flannel VXLAN lab the way lab.inspect reads one back:
pods a and b on node1, c on node2, an underlay switch; then one thing is broken at a time.
"""
from __future__ import annotations

import copy
import errno
import json

import pytest
from scapy.layers.inet import ICMP, IP

from lab.inspect import Address, FdbEntry, Link, Neighbour, Route, Snapshot
from lab.packets import frames, nft
from lab.packets.explain import as_trace, walk_both
from lab.packets.endpoints import End
from lab.packets.result import Hop
from lab.packets.verdict import Evidence, judge
from lab.packets.view import SnapshotView
from lab.packets.walk import Packet, Walker

MAC = {"a": "0a:00:00:00:00:0a", "b": "0a:00:00:00:00:0b", "c": "0a:00:00:00:00:0c",
       "cni1": "0a:00:00:00:01:00", "cni2": "0a:00:00:00:02:00", "vtep1": "0a:40:95:36:bb:22",
       "vtep2": "0a:ac:f1:de:54:44", "n1": "0a:00:00:00:01:ee", "n2": "0a:00:00:00:02:ee",
       "va": "0a:00:00:00:01:0a", "vb": "0a:00:00:00:01:0b", "vc": "0a:00:00:00:02:0c",
       "p1": "0a:00:00:00:00:f1", "p2": "0a:00:00:00:00:f2", "br0": "0a:00:00:00:00:f0"}
UP = "UP,LOWER_UP"


def link(i: int, name: str, kind: str, mac: str, mtu: int = 1450, master: str | None = None, **kw) -> Link:
    return Link(i, name, kind, kw.pop("state", UP), mtu, mac, master=master, **kw)


def pod(name: str, ip: str, gw: str, gw_mac: str) -> Snapshot:
    return Snapshot(name, links=[link(1, "lo", "loopback", "00:00:00:00:00:00", 65536),
                                 link(2, "eth0", "veth", MAC[name])],
                    addresses=[Address("eth0", f"{ip}/24")],
                    routes=[Route(ip.rsplit(".", 1)[0] + ".0/24", "main", "unicast", dev="eth0", scope="link"),
                            Route("default", "main", "unicast", gateway=gw, dev="eth0")],
                    neighbours=[Neighbour("eth0", gw, gw_mac, "REACHABLE")],
                    sysctls={"net.ipv4.ip_forward": "0"})


def node(k: int, pods: dict[str, str]) -> Snapshot:
    me, other = (1, 2) if k == 1 else (2, 1)
    block, remote = f"10.244.{me - 1}", f"10.244.{other - 1}"
    links = [link(1, "lo", "loopback", "00:00:00:00:00:00", 65536), link(2, "cni0", "bridge", MAC[f"cni{me}"]),
             link(3, "eth0", "veth", MAC[f"n{me}"], 1500),
             link(4, "flannel.1", "vxlan", MAC[f"vtep{me}"], vxlan={"id": 1, "local": f"192.168.56.1{me}",
                                                                   "port": 8472, "learning": False, "dev": "eth0"})]
    fdb = [FdbEntry("flannel.1", MAC[f"vtep{other}"], f"192.168.56.1{other}", None, True, True)]
    neigh = [Neighbour("flannel.1", f"{remote}.0", MAC[f"vtep{other}"], "PERMANENT"),
             Neighbour("eth0", f"192.168.56.1{other}", MAC[f"n{other}"], "REACHABLE")]
    for i, (p, ip) in enumerate(pods.items()):
        links.append(link(5 + i, f"veth{p}", "veth", MAC[f"v{p}"], master="cni0"))
        fdb += [FdbEntry(f"veth{p}", MAC[p], None, "cni0", False, False),
                FdbEntry(f"veth{p}", MAC[f"v{p}"], None, "cni0", True, False)]
        neigh.append(Neighbour("cni0", ip, MAC[p], "REACHABLE"))
    return Snapshot(f"node{me}", links=links,
                    addresses=[Address("cni0", f"{block}.1/24"), Address("eth0", f"192.168.56.1{me}/24"),
                               Address("flannel.1", f"{block}.0/32")],
                    routes=[Route(f"{block}.0/24", "main", "unicast", dev="cni0", scope="link"),
                            Route(f"{remote}.0/24", "main", "unicast", gateway=f"{remote}.0", dev="flannel.1",
                                  onlink=True),
                            Route("192.168.56.0/24", "main", "unicast", dev="eth0", scope="link")],
                    neighbours=neigh, fdb=fdb, sysctls={"net.ipv4.ip_forward": "1"})


def underlay() -> Snapshot:
    return Snapshot("underlay", links=[link(1, "lo", "loopback", "00:00:00:00:00:00", 65536),
                                       link(2, "br0", "bridge", MAC["br0"], 1500),
                                       link(3, "node1", "veth", MAC["p1"], 1500, master="br0"),
                                       link(4, "node2", "veth", MAC["p2"], 1500, master="br0")],
                    fdb=[FdbEntry("node1", MAC["n1"], None, "br0", False, False),
                         FdbEntry("node2", MAC["n2"], None, "br0", False, False)])


def lab_view(**changes) -> SnapshotView:
    states = {"a": pod("a", "10.244.0.2", "10.244.0.1", MAC["cni1"]),
              "b": pod("b", "10.244.0.3", "10.244.0.1", MAC["cni1"]),
              "c": pod("c", "10.244.1.2", "10.244.1.1", MAC["cni2"]),
              "node1": node(1, {"a": "10.244.0.2", "b": "10.244.0.3"}), "node2": node(2, {"c": "10.244.1.2"}),
              "underlay": underlay()}
    peers = {("a", "eth0"): ("node1", "vetha"), ("b", "eth0"): ("node1", "vethb"), ("c", "eth0"): ("node2", "vethc"),
             ("node1", "eth0"): ("underlay", "node1"), ("node2", "eth0"): ("underlay", "node2")}
    for ns, change in changes.items():
        states[ns] = copy.deepcopy(states[ns])
        change(states[ns])
    return SnapshotView(states, peers)


def path(hops: list[Hop]) -> list[tuple[str, str, str]]:
    return [(h.netns, h.iface, h.direction) for h in hops]


def ping(src: str = "10.244.0.2", dst: str = "10.244.1.2", size: int = 84) -> Packet:
    return Packet(src, dst, "icmp", size)


CROSS = [("a", "eth0", "out"), ("node1", "vetha", "in"), ("node1", "cni0", "in"), ("node1", "flannel.1", "out"),
         ("node1", "eth0", "out"), ("underlay", "node1", "in"), ("underlay", "node2", "out"), ("node2", "eth0", "in"),
         ("node2", "flannel.1", "in"), ("node2", "cni0", "out"), ("node2", "vethc", "out"), ("c", "eth0", "in")]


def test_cross_node_vxlan_walk_matches_flannel():
    out, back = walk_both(lab_view(), "a", ping())
    assert out.delivered and out.ns == "c"
    assert path(out.hops) == CROSS
    by = {(h.netns, h.iface, h.direction): h for h in out.hops}
    assert by[("node1", "flannel.1", "out")].decision == (
        "route 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink (table main); "
        f"neigh 10.244.1.0 lladdr {MAC['vtep2']} PERMANENT; fdb {MAC['vtep2']} dst 192.168.56.12")
    assert by[("node1", "eth0", "out")].summary.endswith("| outer 192.168.56.11 > 192.168.56.12 UDP 8472 VNI 1")
    assert by[("underlay", "node2", "out")].decision == f"bridge br0: fdb {MAC['n2']} dev node2"
    assert by[("c", "eth0", "in")].ttl == 62 and by[("node1", "flannel.1", "out")].ttl == 63
    assert back is not None and back.delivered and back.ns == "a"
    assert path(back.hops)[0] == ("c", "eth0", "out") and path(back.hops)[-1] == ("a", "eth0", "in")


def test_same_node_is_bridged_with_no_routing_hop():
    out, back = walk_both(lab_view(), "a", ping(dst="10.244.0.3"))
    assert out.delivered
    assert path(out.hops) == [("a", "eth0", "out"), ("node1", "vetha", "in"), ("node1", "vethb", "out"),
                              ("b", "eth0", "in")]
    assert all(h.ttl == 64 for h in out.hops)
    assert not any(h.decision and h.decision.startswith("route") for h in out.hops if h.netns == "node1")


def test_a_pod_neighbour_missing_is_resolved_as_arp_would():
    def forget(s: Snapshot) -> None:
        s.neighbours = []
    out = Walker(lab_view(a=forget)).run("a", ping())
    assert out.delivered
    assert f"ARP resolves it to {MAC['cni1']} (node1 cni0)" in (out.hops[0].decision or "")


def drop_reason(**changes) -> tuple[str | None, str | None]:
    out = Walker(lab_view(**changes)).run("a", ping())
    assert not out.delivered
    return out.ns, out.reason


def test_a_deleted_route_is_named():
    def no_route(s: Snapshot) -> None:
        s.routes = [r for r in s.routes if r.dst != "10.244.1.0/24"]
    assert drop_reason(node1=no_route) == ("node1", "no route to 10.244.1.2")


def test_a_deleted_vxlan_fdb_entry_is_named():
    def no_fdb(s: Snapshot) -> None:
        s.fdb = [f for f in s.fdb if f.dev != "flannel.1"]
    ns, reason = drop_reason(node1=no_fdb)
    assert ns == "node1" and reason is not None and reason.startswith(f"no FDB entry for {MAC['vtep2']} on flannel.1")


def test_a_deleted_vxlan_neighbour_is_named():
    def no_neigh(s: Snapshot) -> None:
        s.neighbours = [n for n in s.neighbours if n.dev != "flannel.1"]
    ns, reason = drop_reason(node1=no_neigh)
    assert ns == "node1" and reason is not None and reason.startswith("no neighbour entry for 10.244.1.0 on flannel.1")


def test_forwarding_off_is_named_where_it_is_off():
    def off(s: Snapshot) -> None:
        s.sysctls["net.ipv4.ip_forward"] = "0"
    assert drop_reason(node2=off) == ("node2", "forwarding is off (net.ipv4.ip_forward = 0): it does not route packets")


def test_an_interface_down_is_named():
    def down(s: Snapshot) -> None:
        s.link("vethc").state = "DOWN,NO-CARRIER"       # type: ignore[union-attr]
    ns, reason = drop_reason(node2=down)
    assert ns == "node2" and reason == "bridge port vethc is down"

    def underlay_port_down(s: Snapshot) -> None:
        s.link("node1").state = "DOWN,NO-CARRIER"       # type: ignore[union-attr]
    assert drop_reason(underlay=underlay_port_down) == ("underlay", "interface node1 is down")


def test_a_port_gone_down_is_named_though_the_kernel_forgot_what_it_learnt_there():
    def down(s: Snapshot) -> None:      # as the kernel does: learnt FDB and neighbour entries flushed too
        s.link("vethc").state = "DOWN,NO-CARRIER"       # type: ignore[union-attr]
        s.fdb = [f for f in s.fdb if f.dev != "vethc"]
        s.neighbours = [n for n in s.neighbours if n.dev != "cni0"]
    ns, reason = drop_reason(node2=down)
    assert ns == "node2" and reason == "bridge port vethc is down, so ARP for 10.244.1.2 cannot reach c"

    def forgot_fdb_only(s: Snapshot) -> None:
        s.link("vethc").state = "DOWN,NO-CARRIER"       # type: ignore[union-attr]
        s.fdb = [f for f in s.fdb if f.dev != "vethc"]
    assert drop_reason(node2=forgot_fdb_only) == ("node2", "bridge port vethc is down")


def test_a_pod_that_nobody_answers_arp_for():
    # on the pod's own subnet the pod itself asks, and nobody answers
    out = Walker(lab_view()).run("a", ping(dst="10.244.0.99"))
    assert (out.delivered, out.ns) == (False, "a")
    assert out.reason == "no neighbour entry for 10.244.0.99 on eth0, and nothing on that link answers ARP for it"
    # on another node's subnet that node asks, after two routing hops
    out = Walker(lab_view()).run("a", ping(dst="10.244.1.99"))
    assert (out.delivered, out.ns) == (False, "node2")
    assert out.reason == "no neighbour entry for 10.244.1.99 on cni0, and nothing on that link answers ARP for it"


def test_mtu_mismatch_names_the_link_and_what_it_lets_through():
    def big_pod(s: Snapshot) -> None:
        s.link("eth0").mtu = 1500        # type: ignore[union-attr]

    def big_bridge(s: Snapshot) -> None:
        for name in ("cni0", "vetha"):
            s.link(name).mtu = 1500      # type: ignore[union-attr]
    out = Walker(lab_view(a=big_pod, node1=big_bridge)).run("a", ping(size=1500))
    assert not out.delivered and (out.ns, out.iface, out.mtu) == ("node1", "flannel.1", 1450)
    assert out.reason == "packet larger than the MTU: 1500 bytes, flannel.1 has MTU 1450 (DF set)"
    # the pod side alone raised: the node's veth drops what exceeds its MTU (+4 for a VLAN tag)
    out = Walker(lab_view(a=big_pod)).run("a", ping(size=1500))
    assert (out.ns, out.iface, out.mtu) == ("node1", "vetha", 1454)
    assert Walker(lab_view(a=big_pod)).run("a", ping(size=1450)).delivered


def test_vxlan_overhead_over_a_small_underlay():
    def small_underlay(s: Snapshot) -> None:
        s.link("eth0").mtu = 1400        # type: ignore[union-attr]
    out = Walker(lab_view(node1=small_underlay)).run("a", ping(size=1400))
    assert (out.ns, out.iface, out.mtu) == ("node1", "flannel.1", 1350)
    assert "adds 50 bytes of VXLAN headers" in (out.reason or "")


def test_an_nft_drop_rule_on_the_path():
    ruleset = {"nftables": [
        {"chain": {"family": "inet", "table": "f", "name": "fwd", "hook": "forward", "prio": 0, "type": "filter"}},
        {"rule": {"family": "inet", "table": "f", "chain": "fwd", "handle": 2, "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.244.1.2"}},
            {"drop": None}]}}]}
    view = lab_view()
    view.rules = {"node2": nft.parse(json.dumps(ruleset))}
    out = Walker(view).run("a", ping())
    assert out.ns == "node2"
    assert out.reason == "an nft rule 'ip daddr 10.244.1.2 drop' in table inet f chain fwd drops it"


def test_a_blackhole_route_is_named_with_its_entry():
    def hole(s: Snapshot) -> None:
        s.routes.append(Route("10.244.1.2/32", "main", "blackhole"))
    ns, reason = drop_reason(node1=hole)
    assert ns == "node1"
    assert reason == "the route to 10.244.1.2 is a blackhole route (route blackhole 10.244.1.2/32 (table main))"


def test_explain_result_reads_as_a_trace():
    view = lab_view()
    out, back = walk_both(view, "a", ping())
    a, c = End("a", "10.244.0.2", "a", None), End("c", "10.244.1.2", "c", None)
    t = as_trace(view, a, c, ping(), out, back, 0.01)
    assert t.verdict == "delivered" and t.replied and not t.sent and t.reason is None
    d = t.to_dict()
    assert d["hops"][0]["iface"] == "eth0" and d["hops"][0]["time"] == 0.0 and len(d["reply_hops"]) == len(CROSS)
    text = t.text()
    assert text.splitlines()[0].startswith("explain icmp a (10.244.0.2) -> c (10.244.1.2), 84 bytes")
    assert "↳ route 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink" in text


# ---------------------------------------------------------------- verdicts from captures + walk

def hops_until(ns_iface_dir: list[tuple[str, str, str]]) -> list[Hop]:
    return [Hop(ns, ns, i, d, "10.244.0.2 > 10.244.1.2 ICMP echo-request", 64, None, 1.0 + k / 1000)
            for k, (ns, i, d) in enumerate(ns_iface_dir)]


def evidence(view: SnapshotView, seen: list[tuple[str, str, str]], reply: list[tuple[str, str, str]] = (),
             send_error: OSError | None = None, errors: list[frames.IPv4] | None = None, size: int = 84) -> Evidence:
    out, back = walk_both(view, "a", ping(size=size))
    return Evidence("a", "c", hops_until(seen), hops_until(list(reply)), errors or [], send_error, out, back, size)


def test_verdict_delivered_and_replied():
    v = judge(lab_view(), evidence(lab_view(), CROSS, [("c", "eth0", "out"), ("a", "eth0", "in")]))
    assert (v.verdict, v.ns, v.reason, v.replied) == ("delivered", None, None, True)


def test_verdict_stops_where_the_capture_stops_with_the_walks_reason():
    def no_route(s: Snapshot) -> None:
        s.routes = [r for r in s.routes if r.dst != "10.244.1.0/24"]
    view = lab_view(node1=no_route)
    v = judge(view, evidence(view, CROSS[:3]))
    assert (v.verdict, v.ns, v.reason) == ("dropped", "node1", "no route to 10.244.1.2")


def test_verdict_when_the_kernel_would_forward_but_the_packet_vanished():
    view = lab_view()
    v = judge(view, evidence(view, CROSS[:8]))     # last seen: node2 eth0 in
    assert v.verdict == "dropped" and v.ns == "node2"
    assert "went no further" in (v.reason or "") and "filter" in (v.reason or "")


def test_verdict_for_a_packet_lost_on_a_link_blames_the_far_end():
    def down(s: Snapshot) -> None:
        s.link("vethc").state = "DOWN,NO-CARRIER"       # type: ignore[union-attr]
    view = lab_view(node2=down)
    v = judge(view, evidence(view, CROSS[:10]))    # last seen: node2 cni0 out
    assert (v.ns, v.reason) == ("node2", "bridge port vethc is down")


def test_verdict_for_a_probe_the_source_kernel_refused():
    view = lab_view()
    v = judge(view, evidence(view, [], send_error=OSError(errno.EMSGSIZE, "Message too long"), size=1500))
    assert v.ns == "a" and v.reason == "packet larger than the MTU: 1500 bytes, eth0 has MTU 1450 (DF set)"
    v = judge(view, evidence(view, [], send_error=OSError(errno.ENOBUFS, "No buffer space available")))
    assert "neighbour (ARP) table is full" in (v.reason or "")


def test_verdict_uses_an_icmp_error_about_the_probe():
    quoted = frames.build(frames.Mark.new("icmp"), "10.244.0.2", "10.244.1.2", 1500)[:28]
    err = frames.IPv4(bytes(IP(src="10.244.0.1", dst="10.244.0.2") / ICMP(type=3, code=4, nexthopmtu=1450) / quoted))
    view = lab_view()
    ev = evidence(view, CROSS[:3], errors=[err])
    ev.reply_hops = [Hop("node1", "node1", "cni0", "out", "10.244.0.1 > 10.244.0.2 ICMP dest-unreach "
                         "fragmentation-needed mtu 1450", 64, None, 2.0)]
    v = judge(view, ev)
    # the snapshots would let 84 bytes through: the ICMP error is the evidence that names node1
    assert (v.verdict, v.ns, v.reason) == ("dropped", "node1", "fragmentation needed (mtu 1450) (ICMP from 10.244.0.1)")
    assert v.notes == ["node1 answered: fragmentation needed (mtu 1450) (ICMP from 10.244.0.1)"]


def test_verdict_reply_lost_on_its_way_back():
    def no_return(s: Snapshot) -> None:
        s.routes = [r for r in s.routes if r.dst != "10.244.0.0/24"]
    view = lab_view(node2=no_return)
    v = judge(view, evidence(view, CROSS, [("c", "eth0", "out"), ("node2", "vethc", "in"), ("node2", "cni0", "in")]))
    assert (v.verdict, v.ns, v.reason, v.replied) == ("delivered", "node2", "no route to 10.244.0.2", False)


@pytest.mark.parametrize("proto,words", [("icmp", "no echo reply"), ("udp", "nothing answered on UDP port 8081")])
def test_verdict_delivered_without_any_answer(proto, words):
    view = lab_view()
    port = 8081 if proto == "udp" else None
    out, back = walk_both(view, "a", Packet("10.244.0.2", "10.244.1.2", proto, 84, dport=port))
    ev = Evidence("a", "c", hops_until(CROSS), [], [], None, out, back, 84, proto, port)
    v = judge(view, ev)
    assert v.verdict == "delivered" and not v.replied and words in (v.reason or "")


def test_verdict_names_a_reject_rule_by_its_icmp_answer():
    quoted = frames.build(frames.Mark.new("tcp", 80), "10.244.0.2", "10.96.0.4")[:28]
    err = frames.IPv4(bytes(IP(src="10.244.0.1", dst="10.244.0.2") / ICMP(type=3, code=3) / quoted))
    view = lab_view()
    ev = evidence(view, CROSS[:3], errors=[err])
    ev.reply_hops = [Hop("node1", "node1", "cni0", "out", "10.244.0.1 > 10.244.0.2 ICMP dest-unreach "
                         "port-unreachable", 64, None, 2.0)]
    v = judge(view, ev)
    assert (v.verdict, v.ns) == ("dropped", "node1")
    assert v.reason == "a filter rule rejected it: port unreachable (ICMP from 10.244.0.1)"
