"""The `cni` section of `make bench`: 100 pods attached by the real plugins (bridge + host-local +
portmap) two ways, in one run.

- podlab: `podlab up` of a two-node cni lab (design {attach: cni, backend: host-gw}), the plugins
  run as containerd runs them, the two nodes' ADDs in parallel as two kubelets would.
- naive: what people do to try plugins by hand (a shell loop around the plugins, as the CNI
  docs' examples and cnitool do): `ip netns add` for each node and pod, then for each pod each
  plugin of the list one after another (`ip netns exec NODE plugin < conf`), the previous
  result pasted in as prevResult. host-local's store goes to a temporary dataDir (never the
  host's /var/lib/cni); everything it made is removed after.

Both sides run the same binaries with the same list; the plugins' own time (the sum of each
run's wall time) is reported beside the totals.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

CNI = "/usr/lib/cni"


def conflist(data_dir: str | None = None, subnet: str = "{{.PodCIDR}}") -> dict[str, Any]:
    ipam: dict[str, Any] = {"type": "host-local", "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}]}
    if data_dir:
        ipam["dataDir"] = data_dir
    return {"cniVersion": "1.0.0", "name": "bench", "plugins": [
        {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipam": ipam},
        {"type": "portmap", "capabilities": {"portMappings": True}}]}


def podlab_yaml(pods: int) -> str:
    half = pods // 2
    return (f"design: {{attach: cni, backend: host-gw}}\ncni:\n  conflist: {json.dumps(json.dumps(conflist()))}\n"
            # dns: false: the harness makes the same pods and no cluster DNS
            f"dns: false\nnodes: [node1, node2]\ndeployments:\n  - {{name: a, replicas: {half}, image: pause, nodes: [node1]}}\n"
            f"  - {{name: b, replicas: {pods - half}, image: pause, nodes: [node2]}}\n")


def podlab_run(pods: int, work: Any) -> dict[str, Any]:
    from lab import api
    from lab.cni import log
    path, name = work.topology(podlab_yaml(pods))
    topo = api.load_topology(str(path), name)
    work.labs.append(name)
    t = time.monotonic()
    lab = api.up(topo)
    up = time.monotonic() - t
    entries = log.entries(name, None)
    adds = [e for e in entries if e["command"] == "ADD"]
    ok = sum(1 for p in lab.addresses.pods if p.veth)
    t = time.monotonic()
    api.down(name)
    down = time.monotonic() - t
    work.labs.remove(name)
    return {"up": up, "down": down, "plugins_add": sum(e["seconds"] for e in adds), "invocations": len(adds),
            "attached": ok}


def _run(argv: list[str], env: dict[str, str], stdin: str) -> tuple[float, str]:
    t = time.monotonic()
    r = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"{argv[-1]} failed: {r.stdout.strip() or r.stderr.strip()}")
    return time.monotonic() - t, r.stdout


def naive_run(pods: int) -> dict[str, Any]:
    """The hand-made harness: every namespace with `ip netns add`, every plugin one after another."""
    tag = f"nv{secrets.token_hex(3)}"
    nodes = [f"{tag}-n1", f"{tag}-n2"]
    pod_ns = [f"{tag}-p{i}" for i in range(pods)]
    data = tempfile.mkdtemp(prefix="podlab-bench-naive-")
    made: list[str] = []
    plugin_time = 0.0
    lists = [conflist(f"{data}/node{i + 1}", f"10.{77 + i}.0.0/24") for i in range(2)]
    t0 = time.monotonic()
    try:
        for ns in nodes + pod_ns:
            subprocess.run(["ip", "netns", "add", ns], check=True)
            made.append(ns)
        for ns in nodes:
            subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        for i, ns in enumerate(pod_ns):
            node = i * 2 // pods
            prev = None
            for plugin in lists[node]["plugins"]:
                conf = {**plugin, "name": "bench", "cniVersion": "1.0.0"}
                if prev is not None:
                    conf["prevResult"] = prev
                env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CNI_COMMAND": "ADD",
                       "CNI_CONTAINERID": f"naive{i}", "CNI_NETNS": f"/run/netns/{ns}", "CNI_IFNAME": "eth0",
                       "CNI_PATH": CNI, "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAME=p{i}"}
                seconds, out = _run(["ip", "netns", "exec", nodes[node], f"{CNI}/{plugin['type']}"], env, json.dumps(conf))
                plugin_time += seconds
                prev = json.loads(out)
        up = time.monotonic() - t0
    finally:
        for ns in reversed(made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)
    return {"up": up, "plugins_add": plugin_time, "invocations": pods * 2}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def section_cni(opts: Any, work: Any, results: dict) -> dict:
    pods = opts.cni_pods
    if not os.path.exists(f"{CNI}/bridge"):
        return {"skipped": f"no plugins in {CNI} (apt-get install containernetworking-plugins)"}
    runs: dict[str, list[dict]] = {"podlab": [], "naive": []}
    for r in range(opts.repeat):
        order = [("podlab", lambda: podlab_run(pods, work)), ("naive", lambda: naive_run(pods))]
        for key, run in order[r % 2:] + order[:r % 2]:
            x = run()
            runs[key].append(x)
            log(f"cni {pods} pods #{r + 1}: {key:7} up {x['up']:6.2f} s, plugins' own time {x['plugins_add']:6.2f} s "
                f"({x['invocations']} ADDs)")
    med = {k: {m: sorted(x[m] for x in v)[len(v) // 2] for m in ("up", "plugins_add")} for k, v in runs.items()}
    speedup = med["naive"]["up"] / med["podlab"]["up"] if med["podlab"]["up"] else None
    log(f"cni: podlab {med['podlab']['up']:.2f} s vs naive {med['naive']['up']:.2f} s: {speedup:.2f}x")
    return {"pods": pods, "runs": runs, "median": med, "speedup": speedup, "target": 1.5}


def report(c: dict, s: Any, table: Any) -> tuple[list[str], list[str]]:
    """RESULTS.md's lines for this section, and its row in the targets."""
    p, n = c["median"]["podlab"], c["median"]["naive"]
    speed = c.get("speedup")
    lines = [f"## 8. {c['pods']} pods through the real bridge + host-local + portmap ({c.get('date')})", "",
             "podlab: `api.up` of a two-node cni lab (the plugins run as containerd runs them, the nodes' ADDs in "
             "parallel). Naive: `ip netns add` for every namespace, then every plugin of every pod one after another "
             "(`ip netns exec NODE PLUGIN`), as people try plugins by hand (`bench/cni_bench.py`). \"plugins' own "
             "time\": the sum of every plugin run's wall time.", "",
             table(["", "up (s)", "plugins' own time (s)", "plugin runs"],
                   [["podlab", s(p["up"]), s(p["plugins_add"]), str(c["runs"]["podlab"][-1]["invocations"])],
                    ["naive harness", s(n["up"]), s(n["plugins_add"]), str(c["runs"]["naive"][-1]["invocations"])],
                    ["naive / podlab", f"{s(speed)}x", "", ""]]), ""]
    ok = None if speed is None else speed >= c.get("target", 1.5)
    return lines, [f"{c['pods']} pods through real plugins at least {c.get('target', 1.5)}x faster than the naive "
                   "harness", f"{s(speed)}x", "met" if ok else "missed" if ok is not None else "—"]
