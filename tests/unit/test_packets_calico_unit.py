"""The walk and check's findings in a Calico lab, over synthetic snapshots (no root, no kernel).

Two nodes n1, n2 on one switch, BIRD's routes as the bgp backend leaves them: pod p1 (n1) and
p2 (n2) hold /32s behind 169.254.1.1, which their cali ends answer by proxy ARP; n1 holds
`blackhole 192.168.0.0/26 proto bird` and `192.168.0.64/26 via 172.18.0.12 dev eth0 proto bird`.
Then one thing is broken at a time.
"""
from __future__ import annotations

import copy
from ipaddress import IPv4Network

from lab import calico_check
from lab.grading import diagnose as dg
from lab.inspect import Address, FdbEntry, Link, Neighbour, Route, Snapshot
from lab.packets.calico import Facts
from lab.packets.explain import walk_both
from lab.packets.view import SnapshotView
from lab.packets.walk import Packet, Walker

UP = "UP,LOWER_UP"
CALI_MAC = "ee:ee:ee:ee:ee:ee"
BIRD = 12
POD = {"p1": ("192.168.0.2", "n1", "cali1", "0a:00:00:00:00:01"),
       "p2": ("192.168.0.66", "n2", "cali2", "0a:00:00:00:00:02")}
NODE = {"n1": ("172.18.0.11", "192.168.0.0/26", "0a:00:00:00:01:ee"),
        "n2": ("172.18.0.12", "192.168.0.64/26", "0a:00:00:00:02:ee")}
FACTS = Facts(bgp=True, blocks=((IPv4Network("192.168.0.0/26"), "n1"), (IPv4Network("192.168.0.64/26"), "n2")),
              nodes={"n1": "n1", "n2": "n2"}, node_ips={"172.18.0.11": "n1", "172.18.0.12": "n2"},
              pod_ends={("n1", "cali1"): "p1", ("n2", "cali2"): "p2"})


def lo() -> Link:
    return Link(1, "lo", "loopback", UP, 65536, "00:00:00:00:00:00")


def pod(name: str) -> Snapshot:
    ip, _, _, mac = POD[name]
    return Snapshot(name, links=[lo(), Link(2, "eth0", "veth", UP, 1500, mac)],
                    addresses=[Address("eth0", f"{ip}/32")],
                    routes=[Route("169.254.1.1/32", "main", "unicast", dev="eth0", scope="link"),
                            Route("default", "main", "unicast", gateway="169.254.1.1", dev="eth0")],
                    sysctls={"net.ipv4.ip_forward": "0"})


def node(name: str) -> Snapshot:
    ip, block, mac = NODE[name]
    other = "n2" if name == "n1" else "n1"
    p = next(k for k, v in POD.items() if v[1] == name)
    pod_ip, _, cali, pod_mac = POD[p]
    return Snapshot(name, links=[lo(), Link(2, "eth0", "veth", UP, 1500, mac), Link(3, cali, "veth", UP, 1500, CALI_MAC)],
                    addresses=[Address("eth0", f"{ip}/24")],
                    routes=[Route("default", "main", "unicast", gateway="172.18.0.1", dev="eth0"),
                            Route("172.18.0.0/24", "main", "unicast", dev="eth0", scope="link", proto=2),
                            Route(f"{pod_ip}/32", "main", "unicast", dev=cali, scope="link", proto=3),
                            Route(block, "main", "blackhole", proto=BIRD),
                            Route(NODE[other][1], "main", "unicast", gateway=NODE[other][0], dev="eth0", proto=BIRD)],
                    neighbours=[Neighbour(cali, pod_ip, pod_mac, "PERMANENT"),
                                Neighbour("eth0", NODE[other][0], NODE[other][2], "REACHABLE")],
                    sysctls={"net.ipv4.ip_forward": "1", f"net.ipv4.conf.{cali}.proxy_arp": "1",
                             f"net.ipv4.conf.{cali}.forwarding": "1", "net.ipv4.conf.all.proxy_arp": "0"})


def switch() -> Snapshot:
    return Snapshot("underlay", links=[lo(), Link(2, "br0", "bridge", UP, 1500, "0a:00:00:00:00:f0"),
                                       Link(3, "n1", "veth", UP, 1500, "0a:00:00:00:00:f1", master="br0"),
                                       Link(4, "n2", "veth", UP, 1500, "0a:00:00:00:00:f2", master="br0")],
                    fdb=[FdbEntry("n1", NODE["n1"][2], None, "br0", False, False),
                         FdbEntry("n2", NODE["n2"][2], None, "br0", False, False)])


def view(facts: Facts | None = FACTS, **changes) -> SnapshotView:
    states = {"p1": pod("p1"), "p2": pod("p2"), "n1": node("n1"), "n2": node("n2"), "underlay": switch()}
    for ns, change in changes.items():
        states[ns] = copy.deepcopy(states[ns])
        change(states[ns])
    peers = {("p1", "eth0"): ("n1", "cali1"), ("p2", "eth0"): ("n2", "cali2"),
             ("n1", "eth0"): ("underlay", "n1"), ("n2", "eth0"): ("underlay", "n2")}
    holders = {"192.168.0.2": "p1", "192.168.0.66": "p2", "172.18.0.11": "n1", "172.18.0.12": "n2"}
    return SnapshotView(states, peers, holders=holders, calico_facts=facts)


def ping(dst: str = "192.168.0.66", src: str = "192.168.0.2") -> Packet:
    return Packet(src, dst, "icmp", 84)


def world() -> dg.World:
    return dg.World(names={"p1": "pod p1", "p2": "pod p2", "n1": "n1", "n2": "n2", "underlay": "the underlay switch"},
                    blocks={"n1": IPv4Network("192.168.0.0/26"), "n2": IPv4Network("192.168.0.64/26")})


def proxy_off(s: Snapshot) -> None:
    s.sysctls["net.ipv4.conf.cali1.proxy_arp"] = "0"


def learned(s: Snapshot) -> None:
    s.neighbours.append(Neighbour("eth0", "169.254.1.1", CALI_MAC, "REACHABLE"))


# ---------------------------------------------------------------- the healthy path, in words

def test_the_pods_gateway_is_answered_by_proxy_arp_and_the_block_was_learned_by_bgp():
    out, back = walk_both(view(), "p1", ping())
    assert out.delivered and out.ns == "p2" and back is not None and back.delivered
    first = out.hops[0].decision or ""
    assert first == ("route default via 169.254.1.1 dev eth0 (table main); neigh 169.254.1.1: no entry yet, "
                     "169.254.1.1 answered by proxy ARP on cali1 of node n1 (ee:ee:ee:ee:ee:ee)")
    by = {(h.netns, h.iface, h.direction): h.decision for h in out.hops}
    assert by[("n1", "eth0", "out")] == ("route 192.168.0.64/26 via 172.18.0.12 dev eth0 (table main), learned by "
                                         "BGP from n2 (172.18.0.12); neigh 172.18.0.12 lladdr 0a:00:00:00:02:ee "
                                         "REACHABLE")
    assert "answered by proxy ARP on cali2 of node n2" in (back.hops[0].decision or "")
    assert [h.ttl for h in out.hops if h.netns == "p2"] == [62]


def test_a_learned_gateway_entry_still_says_who_answered_it():
    out = Walker(view(p1=learned)).run("p1", ping())
    assert out.delivered
    assert out.hops[0].decision == ("route default via 169.254.1.1 dev eth0 (table main); neigh 169.254.1.1 lladdr "
                                    "ee:ee:ee:ee:ee:ee REACHABLE, 169.254.1.1 answered by proxy ARP on cali1 of node n1")


def test_without_calico_facts_the_kernel_still_answers_by_proxy_and_bird_routes_still_say_bgp():
    out = Walker(view(facts=None)).run("p1", ping())
    assert out.delivered
    assert "169.254.1.1 answered by proxy ARP on cali1 of n1" in (out.hops[0].decision or "")
    assert any("learned by BGP from 172.18.0.12" in (h.decision or "") for h in out.hops)


# ---------------------------------------------------------------- proxy ARP off

def test_proxy_arp_off_leaves_the_pods_arp_unanswered():
    out, back = walk_both(view(n1=proxy_off), "p1", ping())
    assert (out.delivered, out.ns) == (False, "p1")
    assert out.reason == ("proxy_arp is off on cali1 (pod p1's host end on n1): the pod's ARP for 169.254.1.1 "
                          "gets no answer")
    assert out.cause is not None and (out.cause.kind, out.cause.dev, out.cause.ns) == ("no-proxy-arp", "cali1", "n1")
    assert dg.words(view(n1=proxy_off), world(), out, back, "192.168.0.2", "192.168.0.66") == out.reason


def test_proxy_arp_off_is_the_answers_problem_when_the_pod_is_the_destination():
    out, back = walk_both(view(n1=proxy_off), "p2", ping(dst="192.168.0.2", src="192.168.0.66"))
    assert out.delivered and back is not None and not back.delivered and back.ns == "p1"
    assert dg.words(view(n1=proxy_off), world(), out, back, "192.168.0.66", "192.168.0.2") == (
        "the answer cannot come back: proxy_arp is off on cali1 (pod p1's host end on n1): the pod's ARP for "
        "169.254.1.1 gets no answer")


def test_proxy_arp_off_under_a_learned_entry_warns_that_it_will_not_be_renewed():
    out = Walker(view(n1=proxy_off, p1=learned)).run("p1", ping())
    assert out.delivered     # the kernel uses the entry it has until it expires
    assert out.hops[0].decision is not None and out.hops[0].decision.endswith(
        "answered by proxy ARP on cali1 of node n1; but now proxy_arp is off on cali1: once this entry expires, "
        "the pod's ARP for 169.254.1.1 gets no answer")


def test_proxy_arp_needs_forwarding_on_the_cali_end_too():
    def no_forwarding(s: Snapshot) -> None:
        s.sysctls["net.ipv4.conf.cali1.forwarding"] = "0"
    out = Walker(view(n1=no_forwarding)).run("p1", ping())
    assert not out.delivered and out.cause is not None and out.cause.kind == "no-proxy-arp"
    assert out.reason == ("the ARP for 169.254.1.1 gets no answer from cali1 on n1: forwarding is off on cali1 "
                          "(net.ipv4.conf.cali1.forwarding = 0): proxy ARP answers only on an interface that forwards")


# ---------------------------------------------------------------- BGP and blackholes

def test_a_block_bgp_did_not_bring_is_named_with_its_owner():
    def unlearned(s: Snapshot) -> None:
        s.routes = [r for r in s.routes if r.dst != "192.168.0.64/26"]
    v = view(n1=unlearned)
    out, back = walk_both(v, "p1", ping())
    assert (out.delivered, out.ns) == (False, "n1")
    assert out.reason == ("no route to 192.168.0.64/26 on n1 (only its default route via 172.18.0.1 covers it): "
                          "n2's block is not learned — is BIRD on n2 running? see 'podlab bgp n2'")
    assert out.cause is not None and (out.cause.kind, out.cause.ns) == ("not-learned", "n2")
    assert dg.words(v, world(), out, back, "192.168.0.2", "192.168.0.66") == out.reason


def test_an_unallocated_address_meets_birds_blackhole_of_its_block():
    out = Walker(view()).run("p1", ping(dst="192.168.0.70"))
    assert (out.delivered, out.ns) == (False, "n2")
    assert out.reason == ("the route to 192.168.0.70 is a blackhole route (route blackhole 192.168.0.64/26 (table "
                          "main)): BIRD's blackhole for n2's own block: no pod on n2 holds 192.168.0.70")


def test_a_pod_without_its_route_is_told_apart_from_an_unallocated_address():
    def no_pod_route(s: Snapshot) -> None:
        s.routes = [r for r in s.routes if r.dst != "192.168.0.66/32"]
    out = Walker(view(n2=no_pod_route)).run("p1", ping())
    assert out.ns == "n2" and out.reason is not None and out.reason.endswith(
        "BIRD's blackhole for n2's own block; pod p2 holds 192.168.0.66, but n2 has no route "
        "`192.168.0.66 dev cali...` for it")


def test_a_deleted_blackhole_is_not_fatal_but_says_what_changes():
    def no_blackhole(s: Snapshot) -> None:
        s.routes = [r for r in s.routes if r.type != "blackhole"]
    assert Walker(view(n2=no_blackhole)).run("p1", ping()).delivered      # pods keep their own routes
    out = Walker(view(n2=no_blackhole)).run("p1", ping(dst="192.168.0.70"))
    assert (out.delivered, out.ns) == (False, "n2") and out.cause is not None and out.cause.kind == "no-blackhole"
    assert out.reason == ("n2 has no blackhole route for its own block 192.168.0.64/26 (`blackhole 192.168.0.64/26 "
                          "proto bird` is gone): not fatal, its pods keep their own routes, but n2 then forwards "
                          "addresses of the block that no pod holds out of its default route instead of dropping "
                          "them")


# ---------------------------------------------------------------- podlab check's findings

ESTABLISHED = {"node": "n1", "error": None, "peers": [{"address": "172.18.0.12", "state": "up",
                                                       "info": "Established"}]}


def test_a_healthy_calico_lab_has_no_findings():
    assert calico_check.findings(view(), FACTS, [ESTABLISHED], {"n1": 64512, "n2": 64512}, 64512) == []


def test_findings_name_each_broken_thing():
    def unlearned(s: Snapshot) -> None:
        s.routes = [r for r in s.routes if r.dst != "192.168.0.64/26"]

    def no_blackhole_no_proxy_arp(s: Snapshot) -> None:
        s.routes = [r for r in s.routes if r.type != "blackhole"]
        s.sysctls["net.ipv4.conf.cali2.proxy_arp"] = "0"
    found = calico_check.findings(view(n1=unlearned, n2=no_blackhole_no_proxy_arp), FACTS)
    assert found == [
        "no route to 192.168.0.64/26 on n1: n2's block is not learned — is BIRD on n2 running? see 'podlab bgp n2'",
        "n2 has no blackhole route for its own block 192.168.0.64/26 (`blackhole 192.168.0.64/26 proto bird` is "
        "gone): not fatal, its pods keep their own routes, but n2 then forwards addresses of the block that no pod "
        "holds out of its default route instead of dropping them",
        "proxy_arp is off on cali2 (pod p2's host end on n2): the pod's ARP for 169.254.1.1 gets no answer"]


def test_a_hand_made_route_for_a_block_is_not_taken_for_a_learned_one():
    def by_hand(s: Snapshot) -> None:
        for r in s.routes:
            if r.dst == "192.168.0.64/26":
                r.proto = 3
    assert calico_check.findings(view(n1=by_hand), FACTS) == [
        "n1 routes 192.168.0.64/26 (n2's block) by a route BIRD did not install (proto 3): BGP should bring it, "
        "and a hand-made route hides whether it does"]


def test_bgp_findings_name_a_stopped_bird_and_a_wrong_as():
    reports = [{"node": "n1", "error": None, "peers": [{"address": "172.18.0.12", "state": "start",
                                                        "info": "Idle BGP Error: Bad peer AS"}]},
               {"node": "n2", "error": "BIRD is not running on n2 (its control socket /x/n2.ctl: gone)", "peers": []}]
    assert calico_check.findings(view(), FACTS, reports, {"n1": 64512, "n2": 64513}, 64512) == [
        "n2's BIRD runs with local as 64513, but the cluster's AS is 64512 (calico: asNumber): its peers "
        "refuse its sessions with 'Bad peer AS'",
        "n1's BGP session with n2 (172.18.0.12) is not Established: Idle BGP Error: Bad peer AS (the two ends "
        "disagree on an AS number)",
        "BIRD is not running on n2 (its control socket /x/n2.ctl: gone): it announces none of its blocks and learns "
        "no other node's"]
