"""The path diagnosis (lab.grading.diagnose) on hand-made kernel snapshots: no root needed.

The worlds below are what `podlab up` builds for two nodes (one pod each) in the host-gw,
VPC-router and VXLAN designs, written out as inspect.Snapshot objects; each test breaks one
thing and reads the sentence the diagnosis makes of lab.packets' walk over them. The Grader's
own diagnosis runs over a design's replayed plan (lab.preview) standing in for its kernel.
"""
from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass
from ipaddress import IPv4Network, ip_interface

import pytest

from lab import api, planner, state
from lab.grading import diagnose as dg
from lab.grading import helpers
from lab.inspect import Address, FdbEntry, Link, Neighbour, Route, Snapshot
from lab.packets import nft
from lab.packets.explain import request_packet, walk_both
from lab.packets.view import SnapshotView
from lab.preview import replay

M1, M2 = "0a:00:00:00:00:01", "0a:00:00:00:00:02"
_serial = itertools.count(1)


def link(name, kind="veth", master=None, up=True, mac=None, vxlan=None, mtu=1500) -> Link:
    n = next(_serial)      # every interface its own MAC, as the kernel gives them
    mac = mac or f"02:00:00:00:{n >> 8:02x}:{n & 0xff:02x}"
    return Link(index=0, name=name, kind=kind, state="UP,LOWER_UP" if up else "DOWN,NO-CARRIER", mtu=mtu,
                mac=mac, master=master, vxlan=vxlan)


def route(dst, dev=None, via=None, kind="unicast") -> Route:
    return Route(dst=dst, table="main", type=kind, gateway=via, dev=dev)


@dataclass
class Lab:
    """Kernel state (the tests break it) and the design's words for it."""
    snaps: dict[str, Snapshot]
    world: dg.World

    def view(self) -> SnapshotView:
        holders = {str(ip_interface(a.address).ip): ns for ns, s in self.snaps.items() for a in s.addresses}
        return SnapshotView(self.snaps, dict(self.world.wires), holders=holders)


def world(mode: str = "host") -> Lab:
    """node1 (10.244.0.0/24, pod a) and node2 (10.244.1.0/24, pod b) on one underlay switch."""
    under = Snapshot("u", links=[link("br0", "bridge"), link("node1", master="br0"), link("node2", master="br0")],
                     sysctls={"net.ipv4.ip_forward": "0"})
    nodes = {}
    for i, (name, peer) in enumerate((("node1", "node2"), ("node2", "node1"))):
        me, other = i, 1 - i
        s = Snapshot(name, links=[link("lo", "loopback"), link("eth0"), link("cni0", "bridge"),
                                  link(f"veth{'ab'[me]}", master="cni0")],
                     addresses=[Address("eth0", f"192.168.56.{11 + me}/24"), Address("cni0", f"10.244.{me}.1/24")],
                     routes=[route("192.168.56.0/24", "eth0"), route(f"10.244.{me}.0/24", "cni0")],
                     sysctls={"net.ipv4.ip_forward": "1"})
        if mode == "host":
            s.routes.append(route(f"10.244.{other}.0/24", "eth0", f"192.168.56.{11 + other}"))
        elif mode == "gateway":
            s.routes.append(route("default", "eth0", "192.168.56.1"))
        elif mode == "vxlan":
            mac, peer_mac = (M1, M2) if me == 0 else (M2, M1)
            s.links.append(link("flannel.1", "vxlan", mac=mac, vxlan={"id": 1, "port": 8472}, mtu=1450))
            s.addresses.append(Address("flannel.1", f"10.244.{me}.0/32"))
            s.routes.append(route(f"10.244.{other}.0/24", "flannel.1", f"10.244.{other}.0"))
            s.neighbours.append(Neighbour("flannel.1", f"10.244.{other}.0", peer_mac, "PERMANENT"))
            s.fdb.append(FdbEntry("flannel.1", peer_mac, f"192.168.56.{11 + other}", None, True, True))
        nodes[name] = s
    if mode == "gateway":
        under.addresses.append(Address("br0", "192.168.56.1/24"))
        under.routes += [route("192.168.56.0/24", "br0"), route("10.244.0.0/24", "br0", "192.168.56.11"),
                         route("10.244.1.0/24", "br0", "192.168.56.12")]
        under.sysctls["net.ipv4.ip_forward"] = "1"
    pods = {}
    for me, name in enumerate("ab"):
        pods[name] = Snapshot(name, links=[link("lo", "loopback"), link("eth0")],
                              addresses=[Address("eth0", f"10.244.{me}.2/24")],
                              routes=[route(f"10.244.{me}.0/24", "eth0"), route("default", "eth0", f"10.244.{me}.1")])
    snaps = {"u": under, **nodes, **pods}
    names = {"u": "the VPC router" if mode == "gateway" else "the underlay switch", "node1": "node1",
             "node2": "node2", "a": "pod a", "b": "pod b"}
    w = dg.World(names=names,
                 blocks={"node1": IPv4Network("10.244.0.0/24"), "node2": IPv4Network("10.244.1.0/24")})
    for pod, node, veth in (("a", "node1", "vetha"), ("b", "node2", "vethb")):
        w.wires[(pod, "eth0")], w.wires[(node, veth)] = (node, veth), (pod, "eth0")
        w.cable_of[(node, veth)] = f"pod {pod}'s host end"
        w.bridge_of[(node, veth)] = "cni0"
    for node in ("node1", "node2"):
        w.wires[(node, "eth0")], w.wires[("u", node)] = ("u", node), (node, "eth0")
        w.bridge_of[("u", node)] = "br0"
    return Lab(snaps, w)


A, B = "10.244.0.2", "10.244.1.2"


def why(w: Lab, src: str = "a", src_ip=A, dst=B) -> str | None:
    return dg.diagnose(w.view(), w.world, src, src_ip, dst)


@pytest.mark.parametrize("mode", ["host", "gateway", "vxlan"])
def test_a_healthy_lab_has_nothing_in_the_way(mode):
    w = world(mode)
    assert why(w) is None
    assert why(w, "b", B, A) is None
    out, back = walk_both(w.view(), "a", request_packet(A, B, "icmp", None, 84))
    assert out.delivered and out.hops[0].netns == "a" and out.ns == "b"
    assert back is not None and back.delivered and back.ns == "a"


def test_missing_host_route_names_the_node_and_the_block():
    w = world("host")
    w.snaps["node2"].routes = [r for r in w.snaps["node2"].routes if r.dst != "10.244.0.0/24"]
    assert why(w, "b", B, A) == "node2 has no route to 10.244.0.0/24, node1's pod block"
    # the other way, the request arrives and the answer is lost
    assert why(w) == "the answer cannot come back: node2 has no route to 10.244.0.0/24, node1's pod block"


def test_forwarding_off():
    w = world("host")
    w.snaps["node1"].sysctls["net.ipv4.ip_forward"] = "0"
    assert why(w).startswith("node1 does not forward packets (net.ipv4.ip_forward = 0)")


def test_a_node_sends_its_own_packets_without_forwarding():
    w = world("host")
    w.snaps["node1"].sysctls["net.ipv4.ip_forward"] = "0"
    assert why(w, "node1", "192.168.56.11", "192.168.56.12") is None


def test_forwarding_off_on_one_interface():
    w = world("host")
    w.snaps["node1"].sysctls["net.ipv4.conf.cni0.forwarding"] = "0"
    assert why(w) == "node1 does not forward packets that arrive on cni0 (net.ipv4.conf.cni0.forwarding = 0)"


def test_detached_veth():
    w = world("host")
    next(l for l in w.snaps["node2"].links if l.name == "vethb").master = None
    assert why(w) == ("on node2, vethb (pod b's host end) is not attached to any bridge: "
                      "it must be a port of bridge cni0")


def test_veth_down_and_missing():
    w = world("host")
    next(l for l in w.snaps["node1"].links if l.name == "vetha").state = "DOWN,NO-CARRIER"
    assert why(w) == "node1's vetha (pod a's host end) is down"
    w.snaps["node1"].links = [l for l in w.snaps["node1"].links if l.name != "vetha"]
    assert why(w) == "node1 has no interface vetha (pod a's host end)"


def test_blackhole_route():
    w = world("host")
    w.snaps["node1"].routes.append(route("10.244.1.0/25", kind="blackhole"))
    assert why(w) == "node1 has a blackhole route for 10.244.1.0/25, so it drops packets to 10.244.1.2"


def test_gateway_model_missing_vpc_route():
    w = world("gateway")
    w.snaps["u"].routes = [r for r in w.snaps["u"].routes if r.dst != "10.244.1.0/24"]
    assert why(w) == "the VPC router has no route to 10.244.1.0/24, node2's pod block"


def test_vxlan_missing_fdb_and_neighbour():
    w = world("vxlan")
    broken = copy.deepcopy(w)
    broken.snaps["node1"].fdb = []
    assert why(broken) == (f"node1's flannel.1 has no FDB entry for {M2} (node2's VTEP): it does not know which "
                           f"node to send that VTEP's frames to")
    broken = copy.deepcopy(w)
    broken.snaps["node1"].neighbours = []
    assert why(broken).startswith("node1 has no neighbour entry for 10.244.1.0 (node2's VTEP) on flannel.1")


def test_vxlan_wrong_vtep_mac():
    w = world("vxlan")
    w.snaps["node1"].neighbours[0].mac = "0a:00:00:00:00:99"
    w.snaps["node1"].fdb[0].mac = "0a:00:00:00:00:99"
    assert "but node2's flannel.1 has MAC 0a:00:00:00:00:02" in why(w)


def test_vxlan_remote_device_down():
    w = world("vxlan")
    next(l for l in w.snaps["node2"].links if l.name == "flannel.1").state = "DOWN,NO-CARRIER"
    assert why(w) == "node2's flannel.1 is down"


def test_an_address_nobody_holds():
    w = world("host")
    assert why(w, dst="10.244.1.77") == ("node2 sends to 10.244.1.77 on cni0, but no machine in the "
                                                      "lab has that address")


def test_a_routing_loop_is_reported():
    w = world("host")
    w.snaps["node2"].routes = [r for r in w.snaps["node2"].routes if r.dst != "10.244.1.0/24"]
    w.snaps["node2"].routes.append(route("10.244.1.0/24", "eth0", "192.168.56.11"))
    w.snaps["node2"].addresses = [a for a in w.snaps["node2"].addresses if a.dev != "cni0"]
    assert "loops" in why(w)


def test_a_neighbour_entry_that_outlived_the_cable_still_names_it():
    # pod b still knows its gateway's MAC, so the frame leaves; vethb, off the bridge, takes it nowhere
    w = world("host")
    cni0 = w.snaps["node2"].link("cni0")
    w.snaps["b"].neighbours.append(Neighbour("eth0", "10.244.1.1", cni0.mac, "STALE"))
    next(l for l in w.snaps["node2"].links if l.name == "vethb").master = None
    assert why(w, "b", B, A) == ("on node2, vethb (pod b's host end) is not attached to any bridge: "
                                 "it must be a port of bridge cni0")


def test_what_the_course_has_no_words_for_keeps_the_walks_reason():
    # the walk also knows nft rules (and the MTU, rp_filter, TTL) that the course does not word itself
    w = world("host")
    view = w.view()
    view.rules = {"node2": nft.parse(json.dumps({"nftables": [
        {"chain": {"family": "inet", "table": "f", "name": "fwd", "hook": "forward", "prio": 0, "type": "filter"}},
        {"rule": {"family": "inet", "table": "f", "chain": "fwd", "handle": 2, "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": B}},
            {"drop": None}]}}]}))}
    assert dg.diagnose(view, w.world, "a", A, B) == (
        "dropped at node2: an nft rule 'ip daddr 10.244.1.2 drop' in table inet f chain fwd drops it")


# ---------------------------------------------------------------- the Grader's diagnosis, without root

class ReplayView(SnapshotView):
    """A design's plan replayed (lab.preview) as the kernel the walk reads."""

    def __init__(self, plan):
        from lab.ops import CreateVeth
        snaps = replay(plan)
        peers = {(op.ns, op.name): (op.peer_ns, op.peer) for op in plan.ops if isinstance(op, CreateVeth)}
        holders = {str(ip_interface(a.address).ip): ns for ns, s in snaps.items() for a in s.addresses}
        super().__init__(snaps, peers, holders=holders)

    def close(self) -> None:
        pass


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """A Grader of the default design, its lab's kernel stood in for by the plan's replay."""
    monkeypatch.setattr(state, "ROOT", tmp_path)
    plan = planner.build(api.load_topology("default"))
    state.lab_dir(plan.topology.name).mkdir()
    (state.lab_dir(plan.topology.name) / "lab.json").write_text("{}")
    view = ReplayView(plan)
    monkeypatch.setattr(helpers, "LiveView", lambda lab: view)
    return helpers.Grader(api.Lab(plan.topology.name, plan)), view


def test_the_grader_words_the_walk_over_its_lab(offline):
    g, view = offline
    a, b = g.pods("node1")[0], g.pods("node2")[0]
    assert g.diagnose(a, b) is None
    node1 = g.target("node1").netns
    view.states[node1].routes = [r for r in view.states[node1].routes if r.dev != "flannel.1"]
    # The node's default route (kube-proxy's need: every cluster has Services) takes it to a gateway no one holds.
    assert g.diagnose(a, b) == "node1 sends to 192.168.56.1 on eth0, but no machine in the lab has that address"
    view.states[node1].routes = [r for r in view.states[node1].routes if r.dst != "default"]
    assert g.diagnose(a, b) == f"node1 has no route to {g.block_of('node2')}, node2's pod block"


def test_a_lab_in_a_state_the_walk_cannot_read_is_said_not_raised(offline, monkeypatch):
    g, view = offline

    def gone(ns):
        raise FileNotFoundError(2, "No such file or directory", f"/run/netns/{ns}")
    monkeypatch.setattr(view, "state", gone)
    assert g.diagnose(g.pods("node1")[0], g.pods("node2")[0]).startswith("(could not work out why: ")


def test_a_bug_in_podlab_is_raised_not_turned_into_a_diagnosis(offline, monkeypatch):
    g, view = offline
    monkeypatch.setattr(view, "route", lambda *args, **kw: None)     # a broken lookup: a programming error
    with pytest.raises(AttributeError):
        g.diagnose(g.pods("node1")[0], g.pods("node2")[0])
