"""trace and explain in every mode, on real labs: the hops a packet crosses, in order, with the
decision of each namespace that sends it on, and the reply's way back."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import time

import pytest
from labcheck import in_every_mode
from packetlab import settled

from lab.packets import capture
from lab.packets.explain import explain
from lab.packets.trace import trace

CLUSTER = """
nodes: [node1, node2]
pods:
  - {name: a, node: node1, image: busybox}
  - {name: b, node: node1, image: busybox}
  - {name: c, node: node2, image: nginx}
outside: [ecs]
"""
DESIGNS = in_every_mode(CLUSTER)


@pytest.fixture(scope="module", params=list(DESIGNS))
def lab(request, lab_from_yaml):
    lab = lab_from_yaml(DESIGNS[request.param], prefix="pk" + request.param.replace("-", ""))
    lab.variant = request.param
    settled(lab)
    return lab


def ns(lab, name: str) -> str:
    return lab.target(name).netns


def veth(lab, pod: str) -> str:
    return lab.addresses.pod(pod).veth


def expected_cross(lab) -> list[tuple[str, str, str]]:
    """a (node1) -> c (node2): every interface the request crosses, as the reference describes the mode."""
    a, n1, u, n2, c = ns(lab, "a"), ns(lab, "node1"), lab.addresses.underlay_netns, ns(lab, "node2"), ns(lab, "c")
    start = [(a, "eth0", "out"), (n1, veth(lab, "a"), "in")]
    end = [(n2, veth(lab, "c"), "out"), (c, "eth0", "in")]
    if lab.variant == "l2":       # switched all the way: uplink, underlay switch, uplink
        return start + [(n1, "eth0", "out"), (u, "node1", "in"), (u, "node2", "out"), (n2, "eth0", "in")] + end
    bridged = lab.design.attachment.bridge   # ptp: the host veth is the node's own routed interface
    routed_in = [(n1, "cni0", "in")] if bridged else []
    into_pod = [(n2, "cni0", "out")] if bridged else []
    if lab.variant in ("vxlan", "calico-vxlan"):
        tunnel = "flannel.1" if lab.variant == "vxlan" else "vxlan.calico"
        middle = [(n1, tunnel, "out"), (n1, "eth0", "out"), (u, "node1", "in"), (u, "node2", "out"),
                  (n2, "eth0", "in"), (n2, tunnel, "in")]
    elif lab.variant in ("l3-host", "kindnet", "calico"):
        middle = [(n1, "eth0", "out"), (u, "node1", "in"), (u, "node2", "out"), (n2, "eth0", "in")]
    else:                        # the VPC router routes in the underlay namespace
        middle = [(n1, "eth0", "out"), (u, "node1", "in"), (u, "br0", "in"), (u, "br0", "out"), (u, "node2", "out"),
                  (n2, "eth0", "in")]
    return start + routed_in + middle + into_pod + end


TTL_AT_C = {"l2": 64, "l3-host": 62, "vxlan": 62, "l3-gateway": 61, "kindnet": 62, "gke-routes": 61,
            "calico-vxlan": 62, "calico": 62}


def path(hops) -> list[tuple[str, str, str]]:
    return [(h.netns, h.iface, h.direction) for h in hops]


def test_cross_node_trace_shows_every_hop_in_order(lab):
    started = time.monotonic()
    t = trace(lab, "a", "c")
    took = time.monotonic() - started
    print(f"\n{lab.variant}: 2-node trace in {took * 1000:.0f} ms (trace's own count: {t.elapsed * 1000:.0f} ms)\n"
          + t.text())
    assert t.verdict == "delivered" and t.replied and t.reason is None, t.text()
    assert path(t.hops) == expected_cross(lab)
    assert [h.time for h in t.hops] == sorted(h.time for h in t.hops)
    assert t.hops[-1].ttl == TTL_AT_C[lab.variant]
    a_ip, c_ip = lab.addresses.pod("a").ip, lab.addresses.pod("c").ip
    assert all(h.summary.startswith(f"{a_ip} > {c_ip} ICMP echo-request") for h in t.hops)
    # the reply's way back, from c to a
    assert path(t.reply_hops)[0] == (ns(lab, "c"), "eth0", "out")
    assert path(t.reply_hops)[-1] == (ns(lab, "a"), "eth0", "in")
    assert all("echo-reply" in h.summary for h in t.reply_hops)
    # every namespace that routed the probe shows the route that decided it
    routed = {h.netns: h.decision for h in t.hops if h.decision and h.decision.startswith("route")}
    if lab.variant == "l2":
        assert set(routed) == {ns(lab, "a")}
    else:
        assert ns(lab, "node1") in routed and ns(lab, "node2") in routed
    if lab.variant == "vxlan":
        out = next(h for h in t.hops if h.iface == "flannel.1" and h.direction == "out")
        assert out.decision.startswith("route 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink (table main)")
        assert "PERMANENT" in out.decision and "dst 192.168.56.12" in out.decision
        wire = [h for h in t.hops if h.netns == lab.addresses.underlay_netns]
        assert wire and all(h.summary.endswith("| outer 192.168.56.11 > 192.168.56.12 UDP 8472 VNI 1") for h in wire)
    if lab.variant in ("l3-gateway", "gke-routes"):
        router = next(h for h in t.hops if h.iface == "br0" and h.direction == "out")
        assert router.target == "router" and router.decision.startswith("route 10.244.1.0/24 via 192.168.56.12")


def test_explain_walks_the_same_path_without_sending(lab):
    e = explain(lab, "a", "c")
    assert e.verdict == "delivered" and e.reason is None and not e.sent
    assert path(e.hops) == expected_cross(lab)
    assert e.hops[-1].ttl == TTL_AT_C[lab.variant]
    assert path(e.reply_hops)[-1] == (ns(lab, "a"), "eth0", "in")


def test_same_node_trace_is_bridged_with_no_routing_hop(lab):
    t = trace(lab, "a", "b")
    assert t.verdict == "delivered" and t.replied, t.text()
    n1 = ns(lab, "node1")
    assert path(t.hops) == [(ns(lab, "a"), "eth0", "out"), (n1, veth(lab, "a"), "in"), (n1, veth(lab, "b"), "out"),
                            (ns(lab, "b"), "eth0", "in")]
    node_decisions = [h.decision for h in t.hops if h.netns == n1 and h.decision]
    if lab.design.attachment.bridge:
        assert all(h.ttl == 64 for h in t.hops)
        assert node_decisions and all(d.startswith("bridge cni0: fdb") for d in node_decisions)
    else:   # ptp: the node routes it to the other pod's veth (ttl 63 at b)
        assert t.hops[-1].ttl == 63
        assert node_decisions and all(d.startswith(f"route {lab.addresses.pod('b').ip}/32 dev {veth(lab, 'b')}")
                                      for d in node_decisions)


def test_tcp_and_udp_probes_are_answered(lab):
    web = trace(lab, "a", "c", proto="tcp", port=80)
    assert web.verdict == "delivered" and web.replied, web.text()
    assert "SYN-ACK" in " ".join(web.notes)
    closed = trace(lab, "a", "c", proto="udp", port=9)
    assert closed.verdict == "delivered" and closed.replied, closed.text()
    assert any("port-unreachable" in h.summary for h in closed.reply_hops)


def test_node_and_outside_host_sources(lab):
    t = trace(lab, "node1", "c")
    assert t.verdict == "delivered" and t.replied, t.text()
    ecs = trace(lab, "ecs", "c")
    if lab.design.backend.outside_reaches_pods:   # seed 000: a host in the VPC reaches pods by the VPC routes
        assert ecs.verdict == "delivered" and ecs.replied, ecs.text()
    else:                              # elsewhere the outside host has no route to the pod network
        c_ip = lab.addresses.pod("c").ip
        assert ecs.verdict == "dropped" and ecs.where == "ecs" and ecs.reason == f"no route to {c_ip}"
        assert explain(lab, "ecs", "c").reason == f"no route to {c_ip}"


def open_sockets() -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            out.append(target)
    return sorted(out)


def test_trace_closes_its_capture_sockets_before_it_returns(lab):
    # Closing a packet socket waits for an RCU grace period: trace closes them together, in
    # threads, and waits; none may be left for the process's exit to close one by one.
    before = open_sockets()
    t = trace(lab, "a", "c")
    assert t.verdict == "delivered" and t.replied, t.text()
    assert open_sockets() == before


def test_the_trace_command_needs_neither_scapy_nor_pyroute2(lab):
    code = ("import sys\nfrom lab import cli\n"
            f"codes = [cli.main(['trace', 'a', 'c', '--lab', {lab.name!r}, '--proto', p]) "
            "for p in ('icmp', 'tcp', 'udp')]\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'scapy', 'pyroute2'})\n"
            "print('RESULT', codes, heavy)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "RESULT [0, 0, 0] []", r.stdout + r.stderr


def test_frames_are_stamped_on_delivery_once_kernel_stamps_waited(lab):
    # The kernel switches stamping on a moment after the first socket asks (a work queue): until
    # then frames are stamped when read, and a trace's hops would sort in the order they were read.
    stamps = capture.KernelStamps(ns(lab, "a"))
    try:
        assert stamps.wait()
        stamps.tx.sendto(b"x", stamps.rx.getsockname())
        time.sleep(0.005)
        read_at = time.time_ns()
        _data, anc, _flags, _addr = stamps.rx.recvmsg(64, 64)
        sec, nsec = struct.unpack_from("=qq", anc[0][2])
        assert read_at - (sec * 1_000_000_000 + nsec) >= 4_000_000      # stamped 5 ms before it was read
    finally:
        stamps.close()
