"""`up` returns a ready lab: a probe sent the moment it returns is delivered, every time.

Before `up` waited for readiness, a trace sent right after it could find a veth whose carrier
was on but whose queue the kernel had not started yet (its link watcher runs a moment later),
and the first packet was dropped.
"""
from __future__ import annotations

from lab import api
from lab.packets.trace import trace

REPETITIONS = 20


def test_up_trace_down_twenty_times_every_trace_delivered():
    failures = []
    for i in range(REPETITIONS):
        lab = api.up(api.load_topology("default", name="ready"))
        try:
            pods = [t for t in lab.targets().values() if t.kind == "pod"]
            src = next(p for p in pods if p.name == "busybox")
            far = next(p for p in pods if p.node != src.node)
            near = next(p for p in pods if p.node == src.node and p is not src)
            for dst in (far, near):
                t = trace(lab, src.name, dst.name, timeout=1.0)
                if t.verdict != "delivered":
                    failures.append(f"run {i + 1}: {src.name} -> {dst.name}: {t.verdict} ({t.reason})")
        finally:
            api.down("ready")
    assert not failures, "\n".join(failures)



def test_every_link_is_running_when_up_returns():
    """What up's readiness check infers from the link watcher's order (it asks for a few links, not
    every one) holds: each veth end, bridge and vxlan device in every namespace is running."""
    import socket

    from lab.engine import netns
    from lab.netlink import dump, wire
    lab = api.up(api.load_topology("default", name="ready"))
    try:
        checked = 0
        for ns in {t.netns for t in lab.targets().values()}:
            sock = netns.socket_in(ns, socket.AF_NETLINK, socket.SOCK_RAW, 0)
            try:
                sock.bind((0, 0))
                for link in dump.links(sock):
                    if link.kind in ("veth", "bridge", "vxlan"):
                        assert link.flags & wire.IFF_RUNNING, (ns, link.name)
                        checked += 1
            finally:
                sock.close()
        assert checked > 10
    finally:
        api.down("ready")
