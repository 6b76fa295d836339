"""The path diagnosis (lab.grading.diagnose) on hand-made kernel snapshots: no root needed.

The worlds below are what `podlab up` builds for two nodes (one pod each) in the host-gw,
VPC-router and VXLAN designs, written out as inspect.Snapshot objects; each test breaks one
thing and reads the sentence the walk produces.
"""
from __future__ import annotations

import copy
from ipaddress import IPv4Address, IPv4Network

import pytest

from lab.grading import diagnose as dg
from lab.inspect import Address, FdbEntry, Link, Neighbour, Route, Snapshot

M1, M2 = "0a:00:00:00:00:01", "0a:00:00:00:00:02"


def link(name, kind="veth", master=None, up=True, mac="02:00:00:00:00:00", vxlan=None, mtu=1500) -> Link:
    return Link(index=0, name=name, kind=kind, state="UP,LOWER_UP" if up else "DOWN,NO-CARRIER", mtu=mtu,
                mac=mac, master=master, vxlan=vxlan)


def route(dst, dev=None, via=None, kind="unicast") -> Route:
    return Route(dst=dst, table="main", type=kind, gateway=via, dev=dev)


def world(mode: str = "host") -> dg.World:
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
    w = dg.World(snaps=snaps, names=names,
                 blocks={"node1": IPv4Network("10.244.0.0/24"), "node2": IPv4Network("10.244.1.0/24")})
    for pod, node, veth in (("a", "node1", "vetha"), ("b", "node2", "vethb")):
        w.wires[(pod, "eth0")], w.wires[(node, veth)] = (node, veth), (pod, "eth0")
        w.cable_of[(node, veth)] = f"pod {pod}'s host end"
        w.bridge_of[(node, veth)] = "cni0"
    for node in ("node1", "node2"):
        w.wires[(node, "eth0")], w.wires[("u", node)] = ("u", node), (node, "eth0")
        w.bridge_of[("u", node)] = "br0"
    return w


A, B = IPv4Address("10.244.0.2"), IPv4Address("10.244.1.2")


def why(w: dg.World, src: str = "a", src_ip=A, dst=B) -> str | None:
    return dg.diagnose(w, src, src_ip, dst)


@pytest.mark.parametrize("mode", ["host", "gateway", "vxlan"])
def test_a_healthy_lab_has_nothing_in_the_way(mode):
    w = world(mode)
    assert why(w) is None
    assert why(w, "b", B, A) is None
    walk = dg.walk(w, "a", B)
    assert walk.ok and walk.hops[0] == "pod a" and walk.hops[-1] == "pod b"


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
    assert dg.walk(w, "node1", IPv4Address("192.168.56.12")).ok


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
    assert why(w).startswith("node1's flannel.1 is down") or "node2's flannel.1 is down" in why(w)


def test_lookup_prefers_the_longest_prefix_and_skips_other_types():
    s = Snapshot("x", routes=[route("default", "eth0", "1.1.1.1"), route("10.0.0.0/8", "eth0", "2.2.2.2"),
                              route("10.1.0.0/16", "eth0", "3.3.3.3"),
                              Route(dst="10.1.2.3/32", table="local", type="local", dev="lo")])
    assert dg.lookup(s, IPv4Address("10.1.2.3")).gateway == "3.3.3.3"
    assert dg.lookup(s, IPv4Address("10.9.0.1")).gateway == "2.2.2.2"
    assert dg.lookup(s, IPv4Address("8.8.8.8")).gateway == "1.1.1.1"
    assert dg.lookup(Snapshot("y"), IPv4Address("8.8.8.8")) is None


def test_an_address_nobody_holds():
    w = world("host")
    assert why(w, dst=IPv4Address("10.244.1.77")) == ("node2 sends to 10.244.1.77 on cni0, but no machine in the "
                                                      "lab has that address")


def test_a_routing_loop_is_reported():
    w = world("host")
    w.snaps["node2"].routes = [r for r in w.snaps["node2"].routes if r.dst != "10.244.1.0/24"]
    w.snaps["node2"].routes.append(route("10.244.1.0/24", "eth0", "192.168.56.11"))
    w.snaps["node2"].addresses = [a for a in w.snaps["node2"].addresses if a.dev != "cni0"]
    assert "loops" in why(w)
