"""How long a 2-node trace takes: a VXLAN lab with one pod per node, traced pod to pod.

    sudo .venv/bin/python bench/trace.py [--runs 20]     # prints JSON timings, in milliseconds

Measured: `podlab trace` as a fresh process (Python start, imports, the trace), the first trace
in a process (imports included), then warm traces and explains in one
process (what the TUI and graders pay), as median and maximum. The lab has a random name and
is taken down at the end, failure or not.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DESIGN = """mode: vxlan
nodes: [node1, node2]
pods:
  - {name: a, node: node1, image: busybox}
  - {name: c, node: node2, image: nginx}
"""


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/trace.py builds a lab: run it as root", file=sys.stderr)
        return 1
    from lab import api
    name = f"bench-{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.yaml"
        path.write_text(DESIGN)
        lab = api.up(api.load_topology(str(path), name))
    try:
        started = time.monotonic()
        cli = subprocess.run([sys.executable, "-m", "lab", "trace", "a", "c", "--lab", name],
                             capture_output=True, text=True, cwd=ROOT)
        cold_process = time.monotonic() - started
        assert cli.returncode == 0, cli.stdout + cli.stderr
        started = time.monotonic()
        from lab.packets.explain import explain
        from lab.packets.trace import trace
        first = trace(lab, "a", "c")
        first_in_process = time.monotonic() - started
        assert first.verdict == "delivered" and first.replied, first.text()
        traces, explains = [], []
        for _ in range(args.runs):
            t0 = time.monotonic()
            t = trace(lab, "a", "c")
            traces.append(time.monotonic() - t0)
            assert t.verdict == "delivered" and t.replied, t.text()
            t0 = time.monotonic()
            explain(lab, "a", "c")
            explains.append(time.monotonic() - t0)
        wire = first.hops[-1].time - first.hops[0].time
        print(json.dumps({
            "lab": "vxlan, 2 nodes, 1 pod each", "hops": len(first.hops), "reply_hops": len(first.reply_hops),
            "cpus": os.cpu_count(), "load_average": os.getloadavg()[0],
            "cli_process_ms": ms(cold_process), "first_trace_in_process_ms": ms(first_in_process),
            "trace_ms": {"median": ms(statistics.median(traces)), "max": ms(max(traces)), "runs": args.runs},
            "explain_ms": {"median": ms(statistics.median(explains)), "max": ms(max(explains))},
            "probe_on_the_wire_ms": round(wire * 1000, 3),
        }, indent=2))
    finally:
        api.down(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
