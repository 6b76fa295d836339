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

