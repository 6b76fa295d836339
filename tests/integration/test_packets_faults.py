"""Break one thing by hand inside a node, as a trainee would, and see trace and explain name the
namespace and the cause; then the MTU mismatch of a pod MTU 1500 over VXLAN; then capture to
a pcap file that tcpdump reads back. Everything broken is restored in a `finally`, and a last
trace proves the lab healthy again."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import threading
import time
from contextlib import contextmanager

import pytest
from packetlab import settled

from lab import cli
from lab.packets.explain import explain
from lab.packets.mtu import path_mtu
from lab.packets.trace import trace

DESIGN = """
mode: vxlan
nodes: [node1, node2]
pods:
  - {name: a, node: node1, image: busybox}
  - {name: b, node: node1, image: busybox}
  - {name: c, node: node2, image: nginx}
"""


@pytest.fixture(scope="module")
def lab(lab_from_yaml):
    lab = lab_from_yaml(DESIGN, prefix="pkfault")
    settled(lab)
    return lab


def ip(lab, target: str, *argv: str) -> str:
    r = subprocess.run(["ip", "-n", lab.target(target).netns, *argv], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def bridge(lab, target: str, *argv: str) -> str:
    r = subprocess.run(["bridge", "-n", lab.target(target).netns, *argv], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def sysctl(lab, target: str, key: str, value: str) -> None:
    subprocess.run(["ip", "netns", "exec", lab.target(target).netns, "sysctl", "-qw", f"{key}={value}"], check=True)


@contextmanager
def healthy_after(lab):
    yield       # the body breaks something and restores it in its own `finally`
    settled(lab)    # a link set up again carries traffic only once the kernel's link watch has run
    t = trace(lab, "a", "c")
    assert t.verdict == "delivered" and t.replied, "the lab was not restored:\n" + t.text()


def both(lab, **kw):
    t = trace(lab, "a", "c", **kw)
    e = explain(lab, "a", "c", **kw)
    print("\n" + t.text() + "\n" + e.text())
    return t, e


def test_a_deleted_route_is_named_by_trace_and_explain(lab):
    with healthy_after(lab):
        ip(lab, "node1", "route", "del", "10.244.1.0/24")
        try:
            # The node's default route (every cluster has Services, and kube-proxy needs one) takes
            # the packet to the node subnet's gateway, which no machine of the lab holds.
            for r in both(lab):
                assert r.verdict == "dropped" and r.where == "node1"
                assert r.reason.startswith("the neighbour entry for 192.168.56.1 on eth0 is") and \
                    r.reason.endswith("nothing on that link answers ARP for it"), r.reason
            ip(lab, "node1", "route", "del", "default")
            try:
                t, e = both(lab)
            finally:
                ip(lab, "node1", "route", "add", "default", "via", "192.168.56.1")
        finally:
            ip(lab, "node1", "route", "add", "10.244.1.0/24", "via", "10.244.1.0", "dev", "flannel.1", "onlink")
    for r in (t, e):
        assert r.verdict == "dropped" and r.where == "node1" and r.where_netns == lab.target("node1").netns
        assert r.reason == "no route to 10.244.1.2"
    # the probe got as far as node1's bridge, and node1 said so itself
    assert t.hops[-1].netns == lab.target("node1").netns and t.hops[-1].direction == "in"
    assert any("network unreachable" in n for n in t.notes)


def test_a_deleted_vxlan_fdb_entry_is_named(lab):
    entry = bridge(lab, "node1", "fdb", "show", "dev", "flannel.1").split()
    mac, remote = entry[0], entry[entry.index("dst") + 1]
    assert remote == "192.168.56.12"
    with healthy_after(lab):
        bridge(lab, "node1", "fdb", "del", mac, "dev", "flannel.1", "dst", remote)
        try:
            t, e = both(lab)
        finally:
            bridge(lab, "node1", "fdb", "append", mac, "dev", "flannel.1", "dst", remote, "self", "permanent")
    for r in (t, e):
        assert r.verdict == "dropped" and r.where == "node1"
        assert r.reason.startswith(f"no FDB entry for {mac} on flannel.1")


def test_forwarding_off_is_named(lab):
    with healthy_after(lab):
        sysctl(lab, "node2", "net.ipv4.ip_forward", "0")
        try:
            t, e = both(lab)
        finally:
            sysctl(lab, "node2", "net.ipv4.ip_forward", "1")
    for r in (t, e):
        assert r.verdict == "dropped" and r.where == "node2"
        assert r.reason == "forwarding is off (net.ipv4.ip_forward = 0): it does not route packets"
    # the probe crossed the overlay and was decapsulated on node2 before it stopped
    assert (t.hops[-1].netns, t.hops[-1].iface) == (lab.target("node2").netns, "flannel.1")


def test_a_source_whose_lo_is_down_still_traces_and_says_the_order_is_unconfirmed(lab):
    # trace checks over lo in the source that the kernel stamps frames on delivery (hop order)
    with healthy_after(lab):
        ip(lab, "a", "link", "set", "lo", "down")
        try:
            t = trace(lab, "a", "c")
        finally:
            ip(lab, "a", "link", "set", "lo", "up")
    assert t.verdict == "delivered" and t.replied, t.text()
    assert any("could not confirm that the kernel stamps frames" in n for n in t.notes)
    healthy = trace(lab, "a", "c")
    assert not any("stamps" in n for n in healthy.notes), healthy.text()


def test_an_interface_down_and_an_nft_rule_are_named(lab):
    veth = lab.addresses.pod("c").veth
    with healthy_after(lab):
        ip(lab, "node2", "link", "set", veth, "down")
        try:
            t, e = both(lab)
        finally:
            ip(lab, "node2", "link", "set", veth, "up")
    for r in (t, e):
        # the kernel flushes what it learnt through a port that goes down, so it may also be ARP that fails
        assert r.verdict == "dropped" and r.where == "node2" and r.reason.startswith(f"bridge port {veth} is down")
    rules = ("table inet podlab_test {\n chain podfwd {\n  type filter hook forward priority 0;\n"
             "  ip daddr 10.244.1.2 icmp type echo-request drop\n  ip daddr 10.244.1.2 tcp dport 80 drop\n }\n}\n")
    node = lab.target("node1").netns
    with healthy_after(lab):
        subprocess.run(["ip", "netns", "exec", node, "nft", "-f", "-"], input=rules, text=True, check=True)
        try:
            t, e = both(lab, proto="tcp", port=80)
        finally:
            subprocess.run(["ip", "netns", "exec", node, "nft", "delete", "table", "inet", "podlab_test"], check=True)
    for r in (t, e):
        assert r.verdict == "dropped" and r.where == "node1"
        assert r.reason == ("an nft rule 'ip daddr 10.244.1.2 tcp dport 80 drop' in table inet podlab_test "
                            "chain podfwd drops it")


def test_mtu_mismatch_pod_1500_over_vxlan_is_found_and_named(lab):
    baseline = path_mtu(lab, "a", "c")
    print("\n" + baseline.text())
    assert baseline.largest == 1450 and baseline.limit_where == "a" and baseline.limit_iface == "eth0"
    veth = lab.addresses.pod("a").veth
    # the classic mistake: the pod network configured with MTU 1500 over a 1500 underlay
    with healthy_after(lab):
        ip(lab, "a", "link", "set", "eth0", "mtu", "1500")
        ip(lab, "node1", "link", "set", veth, "mtu", "1500")
        ip(lab, "node1", "link", "set", "cni0", "mtu", "1500")
        try:
            found = path_mtu(lab, "a", "c")
            t, e = both(lab, size=1500)
            small = trace(lab, "a", "c", size=1450)
            cache = ip(lab, "a", "route", "get", "10.244.1.2")
        finally:
            ip(lab, "node1", "link", "set", "cni0", "mtu", "1450")
            ip(lab, "node1", "link", "set", veth, "mtu", "1450")
            ip(lab, "a", "link", "set", "eth0", "mtu", "1450")
    print(found.text())
    assert found.largest == 1450 and found.source_mtu == 1500
    assert (found.limit_where, found.limit_iface, found.limit_mtu) == ("node1", "flannel.1", 1450)
    assert any("fragmentation needed (mtu 1450)" in a for a in found.icmp)
    assert "mtu 1450" not in cache, "the probes' path MTU was left in the pod's route cache"
    for r in (t, e):
        assert r.verdict == "dropped" and r.where == "node1"
        assert r.reason.startswith("packet larger than the MTU: 1500 bytes, flannel.1 has MTU 1450")
    assert small.verdict == "delivered" and small.replied


def test_capture_writes_a_pcap_tcpdump_reads_back(lab, tmp_path):
    path = tmp_path / "c.pcap"
    out, err = io.StringIO(), io.StringIO()
    result: list[int] = []
    argv = ["capture", "c:eth0", "-f", "icmp", "-c", "4", "-w", str(path), "--timeout", "20", "--lab", lab.name]
    worker = threading.Thread(target=lambda: result.append(cli.main(argv, out, err)))
    worker.start()
    deadline = time.monotonic() + 20
    while "capturing on" not in err.getvalue() and time.monotonic() < deadline:
        time.sleep(0.02)
    subprocess.run(["ip", "netns", "exec", lab.target("a").netns, "ping", "-c", "2", "-i", "0.2", "-W", "2",
                    "10.244.1.2"], check=True, capture_output=True)
    worker.join(25)
    assert result == [0], err.getvalue()
    assert "4 packets captured, written to" in err.getvalue()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    assert sum(" in  10.244.0.2 > 10.244.1.2 ICMP echo-request" in line for line in lines) == 2
    assert sum(" out 10.244.1.2 > 10.244.0.2 ICMP echo-reply" in line for line in lines) == 2
    assert shutil.which("tcpdump"), "tcpdump is installed by scripts/install.sh"
    read = subprocess.run(["tcpdump", "-n", "-r", str(path)], capture_output=True, text=True)
    assert read.returncode == 0, read.stderr
    assert read.stdout.count("ICMP echo request") == 2 and read.stdout.count("ICMP echo reply") == 2
    assert len(read.stdout.splitlines()) == 4


def test_capture_on_the_underlay_decodes_vxlan(lab):
    from lab.packets.capture import stream
    stop = threading.Event()
    lines = stream(lab, "underlay:node1", bpf="udp port 8472", stop=stop)
    got = []
    try:
        subprocess.run(["ip", "netns", "exec", lab.target("a").netns, "ping", "-c", "1", "-W", "2", "10.244.1.2"],
                       check=True, capture_output=True)
        timer = threading.Timer(3, stop.set)
        timer.start()
        for line in lines:
            got.append(line)
            if len(got) == 2:
                break
        timer.cancel()
    finally:
        lines.close()
    assert [g.direction for g in got] == ["in", "out"]
    assert got[0].text.startswith("10.244.0.2 > 10.244.1.2 ICMP echo-request")
    assert got[0].text.endswith("| outer 192.168.56.11 > 192.168.56.12 UDP 8472 VNI 1")
    assert got[1].text.endswith("| outer 192.168.56.12 > 192.168.56.11 UDP 8472 VNI 1")


def test_cli_trace_json_and_exit_codes(lab):
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["trace", "a", "c", "-o", "json", "--lab", lab.name], out, err) == 0, err.getvalue()
    data = json.loads(out.getvalue())
    assert data["verdict"] == "delivered" and data["replied"] and data["hops"][0]["iface"] == "eth0"
    assert {"netns", "target", "iface", "direction", "summary", "ttl", "decision", "time"} <= set(data["hops"][0])
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["explain", "a", "10.244.1.99", "--lab", lab.name], out, err) == 1
    assert "dropped at node2" in out.getvalue() and "nothing on that link answers ARP" in out.getvalue()
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["trace", "a", "8.8.8.8", "--lab", lab.name], out, err) == 1
    assert err.getvalue().count("\n") == 1 and "outside lab" in err.getvalue() and "Traceback" not in err.getvalue()
