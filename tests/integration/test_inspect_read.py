"""lab.inspect reads namespaces with lab.netlink.dump (struct); pyroute2 decoded them before. Both must
give the same Snapshot for every namespace of every mode, and for the odd state a trainee can
make by hand: blackhole/unreachable/prohibit routes, another table, multipath, a link down, an
alias, neighbours in other states, a veth with both ends in one namespace, an nft table."""
from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from pyroute2_snapshot import snapshot as pyroute2_snapshot

from lab import inspect
from lab.engine import netns as nsmod
from lab.netlink import dump, wire
from lab.packets.view import LiveView

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"
MODES = ["vxlan", "l2", "l3-host-routes", "l3-vpc-router", "services"]


def namespaces(lab) -> list[str]:
    return sorted({t.netns for t in lab.targets().values()})


def differences(ns: str) -> list[str]:
    # The kernel may change a neighbour's state between the two reads: a real difference stays.
    for _ in range(3):
        ours, theirs = inspect.snapshot(ns), pyroute2_snapshot(ns)
        out = []
        for part in ("links", "addresses", "routes", "neighbours", "fdb", "sysctls"):
            a, b = getattr(ours, part), getattr(theirs, part)
            if a != b:
                out.append(f"{ns} {part}: ours has {[x for x in a if x not in b]}, pyroute2 has "
                           f"{[x for x in b if x not in a]}")
        if not out:
            return []
    return out


@pytest.mark.parametrize("mode", MODES)
def test_every_namespace_reads_as_pyroute2_reads_it(lab_from_yaml, mode):
    lab = lab_from_yaml((TOPOLOGIES / f"{mode}.yaml").read_text(), prefix="insp")
    found = [d for ns in namespaces(lab) for d in differences(ns)]
    assert not found, "\n".join(found)
    snap = inspect.snapshot(lab.target("node1").netns)
    assert snap.links and snap.routes and snap.addresses      # not two empty answers


def run(ns: str, *argv: str) -> None:
    subprocess.run(["ip", "-n", ns, *argv], check=True, capture_output=True)


def test_odd_state_made_by_hand_reads_as_pyroute2_reads_it(lab_from_yaml):
    # No cluster DNS, so no kube-proxy table: the node starts with none.
    lab = lab_from_yaml((TOPOLOGIES / "vxlan.yaml").read_text() + "\ndns: false\n", prefix="insp")
    node = lab.target("node1").netns
    run(node, "route", "add", "blackhole", "10.99.1.0/24")
    run(node, "route", "add", "unreachable", "10.99.2.0/24")
    run(node, "route", "add", "prohibit", "10.99.3.0/24")
    run(node, "route", "add", "10.99.4.0/24", "dev", "eth0", "table", "100")
    run(node, "route", "add", "10.99.5.0/24", "nexthop", "dev", "eth0", "nexthop", "dev", "cni0")
    run(node, "link", "add", "probe0", "type", "veth", "peer", "name", "probe1")   # both ends here
    run(node, "link", "set", "probe0", "alias", "made by a test")
    run(node, "neigh", "add", "192.168.56.200", "lladdr", "0a:00:00:00:00:c8", "dev", "eth0", "nud", "stale")
    run(node, "neigh", "add", "192.168.56.201", "lladdr", "0a:00:00:00:00:c9", "dev", "eth0", "nud", "noarp")
    run(node, "neigh", "add", "192.168.56.202", "lladdr", "0a:00:00:00:00:ca", "dev", "eth0", "nud", "reachable")
    # A datagram to an address nobody has: an INCOMPLETE entry without a MAC, FAILED later.
    nsmod.run_in(node, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("192.168.56.250", 9)))
    pod = lab.addresses.pods[0].netns
    run(pod, "link", "set", "eth0", "down")
    try:
        found = differences(node) + differences(pod)
        assert not found, "\n".join(found)
        snap = inspect.snapshot(node)
        assert {r.type for r in snap.routes} >= {"blackhole", "unreachable", "prohibit"}
        assert any(r.table == "100" for r in snap.routes)
        probe0 = next(l for l in snap.links if l.name == "probe0")
        assert probe0.alias == "made by a test" and probe0.peer_netnsid is None and probe0.peer_index
        assert {n.state for n in snap.neighbours} >= {"STALE", "NOARP", "REACHABLE"}
        assert any(n.address == "192.168.56.250" and n.mac is None for n in snap.neighbours)
    finally:
        run(pod, "link", "set", "eth0", "up")


def test_nf_tables_are_seen_where_they_are(lab_from_yaml):
    # No cluster DNS, so no kube-proxy table: the node starts with none.
    lab = lab_from_yaml((TOPOLOGIES / "vxlan.yaml").read_text() + "\ndns: false\n", prefix="insp")
    ns = lab.target("node2").netns

    def tables_here() -> bool:
        sock = wire.open_socket(wire.NETLINK_NETFILTER)
        try:
            return dump.nft_has_tables(sock)
        finally:
            sock.close()
    assert nsmod.run_in(ns, tables_here) is False
    subprocess.run(["ip", "netns", "exec", ns, "nft", "add table inet podlabtest"], check=True)
    assert nsmod.run_in(ns, tables_here) is True
    subprocess.run(["ip", "netns", "exec", ns, "nft", "add chain inet podlabtest in "
                    "{ type filter hook input priority 0; policy accept; }"], check=True)
    view = LiveView(lab)
    try:
        assert [c.table for c in view.nft_rules(ns)] == ["podlabtest"]
        assert view.nft_rules(lab.target("node1").netns) == []
    finally:
        view.close()
        subprocess.run(["ip", "netns", "exec", ns, "nft", "delete table inet podlabtest"], check=True)
