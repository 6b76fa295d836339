"""`make bench`: podlab side by side with Mininet and with the kernel's own floor, in one run.

Sections (each can be run alone with --only; results accumulate in bench/results.json and
bench/RESULTS.md is rendered from all of them):
  bringup       N endpoints on one bridge: podlab (an l2 lab, N pods on one node) vs Mininet
                (N hosts on one LinuxBridge switch, no controller) vs the floor (bench/floor.py)
  cluster       a 50-node x 20-pod VXLAN cluster and a 200-node VPC-router cluster: up, check, down
  reachability  all pairs of 100 pods with `podlab check` vs Mininet's pingall on 100 hosts
  memory        RSS of everything podlab runs for 1000 pods with workloads vs Mininet's 1000 hosts
  dataplane     iperf3 pod -> pod: one node, across nodes with host routes, across VXLAN
  interaction   `podlab trace`, `podlab get pods`, the TUI's first screen on a 1000-pod lab
  endpoints     a pod becoming ready -> in every node's kube-proxy rules (bench/endpoint_latency.py)
  cni           100 pods through the real bridge + host-local + portmap: podlab up vs a hand-made
                harness running the same plugins one after another (bench/cni_bench.py)

    python bench/run.py                       # everything (Mininet at 1000 hosts takes minutes)
    python bench/run.py --quick               # small sizes, one repeat: for trying
    python bench/run.py --only bringup --sizes 100,500,1000

Nothing here changes the root network namespace except Mininet (the peer), whose runs undo
exactly what they made (see mininet_peer.py); the root namespace's links, addresses, routes and
the sysctls Mininet touches are compared before and after the whole run.
"""
from __future__ import annotations

import argparse
import compileall
import datetime
import json
import math
import os
import platform
import re
import secrets
import signal
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import cni_bench  # noqa: E402
import floor  # noqa: E402
import settle  # noqa: E402
from procmem import rss_pss_kb  # noqa: E402
from lab import api, state  # noqa: E402

SECTIONS = ("bringup", "cluster", "reachability", "memory", "dataplane", "interaction", "endpoints", "cni")
MININET_PYTHON = "/usr/bin/python3"
MININET_ROOT_NETNS = False   # --mininet-root-netns: Mininet as shipped, in the root namespace (see mininet_peer.py)
PODLAB = [sys.executable, "-m", "lab"]

Log = Callable[[str], None]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def median(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def report_s(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def cpu_now() -> float:
    t = os.times()
    return t.user + t.system


# --- topologies ---------------------------------------------------------------------------

def l2_yaml(n: int, image: str = "nginx", dns: bool = True) -> str:
    """N pods on one node's bridge: the `l2` lab the bring-up section compares (`dns`: with the
    cluster DNS, as every cluster has by default)."""
    mask = 32 - math.ceil(math.log2(n + 4))          # the block holds gateway, pods, the DNS pod, broadcast
    return (f"description: {n} pods on one bridge (bench)\nmode: l2\n{'' if dns else 'dns: false' + chr(10)}"
            f"network: {{podCIDR: 10.244.0.0/16, nodeCIDRMaskSize: {mask}}}\n"
            f"nodes: [node1]\ndeployments:\n  - {{name: web, replicas: {n}, image: {image}}}\n")


def kindnet_one_node_yaml(n: int) -> str:
    """The same N pods on one node, attached by ptp (kindnet): a veth, two addresses and four
    routes per pod instead of a bridge port."""
    return l2_yaml(n, "nginx").replace("mode: l2", "design: kindnet").replace("on one bridge", "by ptp on one node")


def kindnet_yaml(nodes: int, pods_per_node: int) -> str:
    return vxlan_yaml(nodes, pods_per_node).replace("mode: vxlan", "design: kindnet").replace(
        "flannel VXLAN", "kindnet (ptp + host routes)")


def calico_yaml(nodes: int, pods_per_node: int) -> str:
    """The same cluster in Calico's BGP mode: a BIRD per node, a full iBGP mesh (n(n-1)/2 sessions)."""
    return (f"description: {nodes} nodes x {pods_per_node} pods, Calico BGP (bench)\ndesign: calico\n"
            f"nodes: {nodes}\ndeployments:\n  - {{name: web, replicas: {nodes * pods_per_node}, image: nginx}}\n")


def vpc_yaml(nodes: int, pods_per_node: int) -> str:
    """Seed 000's VPC route model at scale: nodes only default via the router, which routes each block."""
    return (f"description: {nodes}-node VPC-router cluster (bench)\nmode: l3\nrouting: gateway\n"
            f"network: {{podCIDR: 172.16.0.0/16, nodeCIDRMaskSize: 25, nodeSubnet: 192.168.0.0/24, "
            f"serviceCIDR: 10.247.0.0/16}}\n"
            f"nodes: {nodes}\ndeployments:\n  - {{name: web, replicas: {nodes * pods_per_node}, image: nginx}}\n"
            f"outside:\n  - name: ecs\n")


def vxlan_yaml(nodes: int, pods_per_node: int) -> str:
    return (f"description: {nodes} nodes x {pods_per_node} pods, flannel VXLAN (bench)\nmode: vxlan\n"
            f"network: {{podCIDR: 10.244.0.0/16, nodeCIDRMaskSize: 24}}\n"
            f"nodes: {nodes}\ndeployments:\n  - {{name: web, replicas: {nodes * pods_per_node}, image: nginx}}\n")


DATAPLANE_YAML = {
    "l3": ("mode: l3\nrouting: host\nnodes: [node1, node2]\npods:\n"
           "  - {name: a, node: node1, image: busybox}\n  - {name: b, node: node1, image: busybox}\n"
           "  - {name: c, node: node2, image: busybox}\n"),
    "vxlan": ("mode: vxlan\nnodes: [node1, node2]\npods:\n"
              "  - {name: a, node: node1, image: busybox}\n  - {name: c, node: node2, image: busybox}\n"),
}


class Workdir:
    """Topology files of this run, and the names of the labs it made (all taken down at the end)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="podlab-bench-"))
        self.labs: list[str] = []

    def topology(self, text: str) -> tuple[Path, str]:
        name = f"bn-{secrets.token_hex(3)}"
        path = self.dir / f"{name}.yaml"
        path.write_text(text)
        return path, name

    def close(self) -> None:
        for lab in self.labs:
            if state.lab_dir(lab).exists():
                try:
                    api.down(lab)
                except Exception as e:  # noqa: BLE001  (report, keep cleaning)
                    log(f"!! could not take down lab {lab}: {e}")
        shutil.rmtree(self.dir, ignore_errors=True)


# --- the three contenders -----------------------------------------------------------------

def podlab_cycle(work: Workdir, text: str, between: Callable[[api.Lab], dict] | None = None) -> dict:
    """up, (something on the running lab), down; times in seconds, CPU of this process and the agent."""
    path, name = work.topology(text)
    topo = api.load_topology(str(path), name)
    work.labs.append(name)
    out: dict[str, Any] = {"load": load()}
    said: list[str] = []
    t, c = time.monotonic(), cpu_now()
    lab = api.up(topo, said.append)
    out["up"] = time.monotonic() - t
    converged = next((float(m[1]) for line in said if (m := re.search(r"BGP: .* converged ([0-9.]+) s", line))), None)
    if converged is not None:   # of `up`: how long the BIRDs took, from their start to every route in place
        out["bgp_converge"] = converged
    out["up_cpu"] = cpu_now() - c + _agent_cpu(name)
    try:
        if between:
            out.update(between(lab))
    finally:
        sentinel = settle.Sentinel()
        t = time.monotonic()
        api.down(name)
        out["down"] = time.monotonic() - t
        out["settle"] = sentinel.wait()
        work.labs.remove(name)
    return out


def _agent_cpu(lab: str) -> float:
    from lab import workloads
    pid = workloads.agent_pid(lab)
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def agent_memory(lab: str) -> dict:
    """RSS and PSS of every process the lab runs: its agent and any command containers (its children)."""
    from lab import workloads
    pid = workloads.agent_pid(lab)
    pids = [pid] + _descendants(pid) if pid else []
    rss = pss = 0
    for p in pids:
        r, s = rss_pss_kb(p)
        rss, pss = rss + r, pss + s
    return {"processes": len(pids), "rss_mb": rss / 1024, "pss_mb": pss / 1024}


def _descendants(pid: int) -> list[int]:
    children = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                children.append(int(d.name))
    return children + [g for c in children for g in _descendants(c)]


def floor_cycle(n: int) -> dict:
    f = floor.Floor(n)
    out: dict[str, Any] = {"load": load()}
    c = cpu_now()
    try:
        out["up"] = f.up()
        out["up_cpu"] = cpu_now() - c
        out["phases"] = {k: round(v, 3) for k, v in f.phases.items()}
    finally:
        sentinel = settle.Sentinel()
        out["down"] = f.down()
        out["settle"] = sentinel.wait()
    return out


def tmpfs_cycles(who: str, n: int, repeat: int) -> list[dict]:
    """Bring-up cycles with /run on a tmpfs, as on a stock Debian, in a private mount namespace.

    On this machine /run (so /run/netns and podlab's state directory) is on ext4, where
    creating the 2 mount-point files of each namespace can cost ~1 ms each after many recent
    deletions (ext4 scans past recently deleted inodes). bench/tmpfs_run.py runs the same
    cycles in a child that has its own mount namespace with a tmpfs on /run: the network
    namespaces are real, only their mount points live elsewhere, and nothing outside the child
    sees its mounts (they vanish with it).
    """
    r = subprocess.run([sys.executable, str(HERE / "tmpfs_run.py"), who, str(n), str(repeat)],
                       capture_output=True, text=True, timeout=3600)
    lines = [l for l in r.stdout.splitlines() if l.startswith("[")]
    if r.returncode != 0 or not lines:
        raise RuntimeError(f"tmpfs_run.py {who} failed ({r.returncode}): {r.stderr[-2000:]}")
    return json.loads(lines[-1])


def mininet_available() -> bool:
    return Path(MININET_PYTHON).exists() and subprocess.run(
        [MININET_PYTHON, "-c", "import mininet.net, mininet.nodelib"], capture_output=True).returncode == 0


def mininet_cycle(n: int, *flags: str, timeout: float = 3600) -> dict:
    before = load()
    # Never killed outright: on an interrupt the peer is asked to stop (SIGTERM) and given the
    # time to undo what Mininet made (links, switch, sysctls) before we go on.
    if MININET_ROOT_NETNS:
        flags = (*flags, "--root-netns")
    proc = subprocess.Popen([MININET_PYTHON, str(HERE / "mininet_peer.py"), "--hosts", str(n), *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException:
        proc.terminate()
        stdout, stderr = proc.communicate(timeout=600)
        raise
    lines = [l for l in stdout.splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"mininet_peer failed ({proc.returncode}): {stderr[-2000:]}")
    out = json.loads(lines[-1])
    out["load"] = before
    if not out.get("root_links_same") or out.get("residue"):
        log(f"!! Mininet left links behind: {out.get('residue')} (deleted by their exact names)")
    return out


# --- sections -----------------------------------------------------------------------------

def section_bringup(opts: argparse.Namespace, work: Workdir, results: dict) -> dict:
    mininet = not opts.no_mininet and mininet_available()
    out: dict[str, Any] = {"sizes": {}, "mininet": mininet}
    for n in opts.sizes:
        runs: dict[str, list[dict]] = {"podlab": [], "podlab_idle": [], "kindnet": [], "floor": [], "mininet": []}
        contenders: list[tuple[str, str, Callable[[], dict]]] = [
            ("podlab", "podlab (nginx in every pod)", lambda: podlab_cycle(work, l2_yaml(n, "nginx"))),
            ("podlab_idle", "podlab (idle pods)", lambda: podlab_cycle(work, l2_yaml(n, "pause"))),
            ("kindnet", "podlab kindnet (ptp, nginx)", lambda: podlab_cycle(work, kindnet_one_node_yaml(n))),
            ("floor", "floor", lambda: floor_cycle(n))]
        if mininet:
            flags = ["--memory"] if n == max(opts.sizes) else []
            contenders.append(("mininet", f"Mininet ({n} hosts)", lambda: mininet_cycle(n, *flags)))
        for r in range(opts.repeat):
            # Each repeat starts with the next contender: what one run leaves the kernel and the
            # file system to do (async cleanup; ext4's recently-deleted inodes) is no one's constant luck.
            for key, label, cycle in contenders[r % len(contenders):] + contenders[:r % len(contenders)]:
                if key == "mininet" and len(runs["mininet"]) >= opts.mininet_repeat:
                    continue
                x = cycle()
                runs[key].append(x)
                log(f"bringup n={n} #{r + 1}: {label:28} up {x['up']:6.2f} s, down {x['down']:6.2f} s, "
                    f"settle {x['settle']:5.2f} s  (load {x['load']:.1f})")
        if opts.tmpfs_run and n == max(opts.sizes):
            for key, label in (("podlab_tmpfs", "podlab, /run on tmpfs"), ("floor_tmpfs", "floor, /run on tmpfs")):
                runs[key] = tmpfs_cycles("podlab" if key == "podlab_tmpfs" else "floor", n, opts.repeat)
                for x in runs[key]:
                    log(f"bringup n={n}: {label:28} up {x['up']:6.2f} s, down {x['down']:6.2f} s, "
                        f"settle {x['settle']:5.2f} s  (load {x['load']:.1f})")
        med = {who: {k: median([x.get(k) for x in xs]) for k in ("up", "down", "settle", "up_cpu")}
               for who, xs in runs.items() if xs}
        out["sizes"][str(n)] = {"runs": runs, "median": med}
        log(f"bringup n={n}: " + ", ".join(f"{w} up {m['up']:.2f} down {m['down']:.2f}" for w, m in med.items()))
    return out


def section_cluster(opts: argparse.Namespace, work: Workdir, results: dict) -> dict:
    from lab import check
    designs = {"vxlan_50x20": vxlan_yaml(*opts.vxlan_cluster), "kindnet_50x20": kindnet_yaml(*opts.vxlan_cluster),
               "calico_50x20": calico_yaml(*opts.vxlan_cluster), "vpc_200": vpc_yaml(*opts.vpc_cluster)}
    out: dict[str, Any] = {}

    def run_check(lab: api.Lab) -> dict:
        pairs, sampled = check.plan_pairs(lab)
        t = time.monotonic()
        res = check.run(lab)
        return {"check": time.monotonic() - t, "paths": len(res), "passed": sum(r.passed for r in res),
                "pairs": len(pairs), "sampled": sampled, **bird_memory(lab)}

    for key, text in designs.items():
        runs = []
        for r in range(opts.cluster_repeat):
            runs.append(podlab_cycle(work, text, run_check))
            x = runs[-1]
            log(f"cluster {key} #{r + 1}: up {x['up']:.2f} s, check {x['check']:.2f} s "
                f"({x['passed']}/{x['paths']} paths{', sampled' if x['sampled'] else ''}), down {x['down']:.2f} s")
        out[key] = {"runs": runs, "median": {k: median([x.get(k) for x in runs])
                                             for k in ("up", "check", "down", "settle", "bgp_converge")},
                    "nodes": opts.vpc_cluster[0] if key.startswith("vpc") else opts.vxlan_cluster[0],
                    "pods": (opts.vpc_cluster[0] * opts.vpc_cluster[1] if key.startswith("vpc")
                             else opts.vxlan_cluster[0] * opts.vxlan_cluster[1])}
    return out


def bird_memory(lab: api.Lab) -> dict:
    """RSS and PSS of each node's BIRD (MB), from the processes the lab's journal names."""
    from lab.engine.journal import Journal
    pids = [p["pid"] for p in Journal(lab.name).processes() if str(p.get("what", "")).startswith("bird in ")]
    if not pids:
        return {}
    mem = [rss_pss_kb(pid) for pid in pids]
    return {"birds": len(pids), "bird_rss_mb": median([m[0] / 1024 for m in mem]),
            "bird_pss_mb": median([m[1] / 1024 for m in mem])}


def section_reachability(opts: argparse.Namespace, work: Workdir, results: dict) -> dict:
    n = opts.reach_pods
    out: dict[str, Any] = {"pods": n}

    def checks(lab: api.Lab) -> dict:
        from lab import check, probe
        runs = []
        for _ in range(opts.repeat):
            # What a user types: `podlab check`, timed as a whole command; its last line says how
            # many paths passed and how long the probing itself took.
            t = time.monotonic()
            r = subprocess.run([*PODLAB, "check", "--lab", lab.name], capture_output=True, text=True,
                               cwd=ROOT, timeout=600)
            wall = time.monotonic() - t
            m = re.search(r"(\d+)/(\d+) paths passed.* in ([\d.]+) s", r.stdout)
            if not m:
                raise RuntimeError(f"podlab check said: {r.stdout[-500:]} {r.stderr[-500:]}")
            runs.append({"wall": wall, "probe_seconds": float(m.group(3)), "passed": int(m.group(1)),
                         "total": int(m.group(2)), "exit": r.returncode})
            log(f"reachability: podlab check {m.group(1)}/{m.group(2)} paths in {wall:.2f} s "
                f"(probing {m.group(3)} s)")
        # What pingall does, for comparison: one ICMP echo per ordered pair of pods, no HTTP.
        pods = [p for p in check.endpoints(lab)[0]]
        pairs = [(a, b, True) for a in pods for b in pods if a is not b]
        icmp = []
        for _ in range(opts.repeat):
            t = time.monotonic()
            res = probe.probe(pairs, protos=("icmp",))
            icmp.append({"seconds": time.monotonic() - t, "passed": sum(x.passed for x in res), "total": len(res)})
        log(f"reachability: ICMP only, {len(pairs)} pod pairs in-process: {median([x['seconds'] for x in icmp]):.2f} s")
        return {"checks": runs, "icmp_only": icmp}

    # Against pingall, the pods' own network as Mininet's hosts have it: no cluster DNS, so no
    # kube-proxy and no bridge netfilter. Then the default cluster, whose node bridge passes every
    # packet through netfilter and conntrack for kube-proxy (as kubeadm demands), and whose check
    # probes the DNS Service too: what those cost a real node is worth seeing beside it.
    out["podlab"] = podlab_cycle(work, l2_yaml(n, "nginx", dns=False), checks)
    out["podlab"]["median_wall"] = median([c["wall"] for c in out["podlab"]["checks"]])
    out["podlab_dns"] = podlab_cycle(work, l2_yaml(n, "nginx"), checks)
    out["podlab_dns"]["median_wall"] = median([c["wall"] for c in out["podlab_dns"]["checks"]])
    if not opts.no_mininet and mininet_available():
        runs = []
        for _ in range(opts.mininet_repeat):
            log(f"reachability: Mininet pingall on {n} hosts ...")
            runs.append(mininet_cycle(n, "--pingall", "--static-arp"))
            p = runs[-1]["pingall"]
            log(f"reachability: Mininet pingall {p['pairs']} pairs in {p['seconds']:.2f} s, "
                f"{p['loss_percent']:.1f}% loss")
        out["mininet"] = {"runs": runs, "median": median([x["pingall"]["seconds"] for x in runs])}
    return out


def section_memory(opts: argparse.Namespace, work: Workdir, results: dict) -> dict:
    n = opts.memory_pods
    out: dict[str, Any] = {"pods": n}

    def measure(lab: api.Lab) -> dict:
        time.sleep(1.0)           # the agent has settled (its first status writes are done)
        return {"memory": agent_memory(lab.name)}

    out["podlab"] = podlab_cycle(work, l2_yaml(n, "nginx"), measure)["memory"]
    log(f"memory: podlab, {n} pods with nginx: {out['podlab']['rss_mb']:.1f} MB RSS "
        f"({out['podlab']['processes']} process)")
    bring = results.get("bringup", {}).get("sizes", {}).get(str(n), {}).get("runs", {}).get("mininet", [])
    measured = [r["memory"] for r in bring if "memory" in r]
    if measured:
        out["mininet"] = measured[0] | {"from": "bringup section, same run"}
    elif not opts.no_mininet and mininet_available():
        log(f"memory: Mininet {n} hosts ...")
        out["mininet"] = mininet_cycle(n, "--memory")["memory"]
    if "mininet" in out:
        m = out["mininet"]
        log(f"memory: Mininet {n} hosts: shells {m['shells_rss_mb']:.0f} MB RSS ({m['shells_pss_mb']:.0f} MB PSS) "
            f"+ its Python {m['python_rss_mb']:.0f} MB")
    return out


def _iperf(lab: api.Lab, src: str, dst: str, seconds: float) -> float:
    """Gbit/s from src to dst (pod names), with iperf3 run inside the pods by `podlab exec`."""
    ip = str(lab.address_of(dst))
    server = subprocess.Popen([*PODLAB, "exec", "--lab", lab.name, dst, "--", "iperf3", "-s", "-1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        for _ in range(50):
            r = subprocess.run([*PODLAB, "exec", "--lab", lab.name, src, "--", "iperf3", "-c", ip,
                                "-t", f"{seconds:g}", "-J"], capture_output=True, text=True, cwd=ROOT,
                               timeout=seconds + 60)
            data = json.loads(r.stdout or "{}")
            if "end" in data and data["end"].get("sum_received"):
                return data["end"]["sum_received"]["bits_per_second"] / 1e9
            time.sleep(0.2)       # the server was not listening yet
        raise RuntimeError(f"iperf3 {src} -> {dst} failed: {r.stdout[-500:]} {r.stderr[-500:]}")
    finally:
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.terminate()
            server.wait()


def section_dataplane(opts: argparse.Namespace, work: Workdir, results: dict) -> dict:
    if not shutil.which("iperf3"):
        return {"error": "iperf3 is not installed"}
    out: dict[str, Any] = {"iperf_seconds": opts.iperf_seconds}

    def l3(lab: api.Lab) -> dict:
        return {"same_node": _iperf(lab, "a", "b", opts.iperf_seconds),
                "host_routes": _iperf(lab, "a", "c", opts.iperf_seconds)}

    def vxlan(lab: api.Lab) -> dict:
        return {"vxlan": _iperf(lab, "a", "c", opts.iperf_seconds)}

    out.update({k: v for k, v in podlab_cycle(work, DATAPLANE_YAML["l3"], l3).items() if k in ("same_node", "host_routes")})
    out.update({k: v for k, v in podlab_cycle(work, DATAPLANE_YAML["vxlan"], vxlan).items() if k == "vxlan"})
    log(f"dataplane: pod->pod same node {out['same_node']:.2f} Gbit/s, across nodes (host routes) "
        f"{out['host_routes']:.2f}, across VXLAN {out['vxlan']:.2f}")
    if not opts.no_mininet and mininet_available():
        out["mininet_h1_h2"] = mininet_cycle(2, "--iperf", f"{opts.iperf_seconds:g}").get("iperf_gbps")
        log(f"dataplane: Mininet h1->h2 on one LinuxBridge {out['mininet_h1_h2']:.2f} Gbit/s")
    return out


def _timed(argv: list[str], timeout: float = 120) -> tuple[float, int, str]:
    t = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    return time.monotonic() - t, r.returncode, (r.stdout + r.stderr)[-400:]


TUI_PROBE = r"""
import argparse, asyncio, sys, time
sys.path.insert(0, {root!r})
from tui.cli import build_app
app = build_app(argparse.Namespace(lab={lab!r}, preview=None, refresh=2.0))
async def main():
    async with app.run_test(size=(160, 50)) as pilot:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            s = app.screen
            if getattr(s, "cluster", None) is not None and getattr(s, "reads", 0) >= 1:
                print("ready", flush=True)
                return
            await pilot.pause(0.01)
        print("timeout", flush=True)
asyncio.run(main())
"""


ONE_POD = ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: bench-extra\n  labels: {app: extra}\nspec:\n"
           "  containers:\n  - name: web\n    image: nginx\n")


def _one_pod_changes(opts: argparse.Namespace, work: Workdir, name: str) -> dict:
    """`podlab apply -f` of one Pod into the running lab and `podlab delete pod` of it, whole commands,
    the time each change took inside (the kernel work and the agent: its "changed in" line) and the
    kernel work's own ("s of it in the kernel")."""
    manifest = work.dir / "one-pod.yaml"
    manifest.write_text(ONE_POD)
    runs: dict[str, list[float | None]] = {k: [] for k in ("apply", "apply_inside", "apply_kernel", "delete",
                                                           "delete_inside", "delete_kernel")}
    ok = True
    for _ in range(opts.repeat):
        for verb, args in (("apply", ["apply", "--lab", name, "-f", str(manifest)]),
                           ("delete", ["delete", "--lab", name, "pod", "bench-extra"])):
            t, code, tail = _timed([*PODLAB, *args])
            ok = ok and code == 0
            runs[verb].append(t)
            inside, kernel = _change_times(tail)
            runs[f"{verb}_inside"].append(inside)
            runs[f"{verb}_kernel"].append(kernel)
    out: dict[str, Any] = {k: median(v) for k, v in runs.items()}
    out["ok"], out["runs"] = ok, runs
    log(f"interaction: one pod into the running lab: apply {out['apply']:.2f} s (change {out['apply_inside'] or 0:.3f} s, "
        f"kernel {out['apply_kernel'] or 0:.3f} s), delete {out['delete']:.2f} s (change {out['delete_inside'] or 0:.3f} s, "
        f"kernel {out['delete_kernel'] or 0:.3f} s)")
    return out


def _change_times(tail: str) -> tuple[float | None, float | None]:
    """A change's "changed in X s (N operations, Y s of it in the kernel)": X and Y."""
    m = re.search(r"changed in ([0-9.]+) s \([0-9]+ operations(?:, ([0-9.]+) s of it in the kernel)?", tail)
    return (float(m[1]), float(m[2]) if m[2] else None) if m else (None, None)


SCALER = ("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: bench-scaler\nspec:\n  replicas: 10\n"
          "  selector:\n    matchLabels: {app: scaler}\n  template:\n    metadata:\n      labels: {app: scaler}\n"
          "    spec:\n      containers:\n      - name: web\n        image: nginx\n")


def _scale_changes(opts: argparse.Namespace, work: Workdir, name: str) -> dict:
    """A Deployment of 10 applied into the running lab, then `podlab scale` to 110 and back to 10:
    whole commands, and the change inside each."""
    manifest = work.dir / "scaler.yaml"
    manifest.write_text(SCALER)
    t, code, tail = _timed([*PODLAB, "apply", "--lab", name, "-f", str(manifest)])
    if code != 0:
        raise RuntimeError(f"podlab apply of the scaler failed: {tail}")
    runs: dict[str, list[float | None]] = {"up_10_110": [], "up_inside": [], "down_110_10": [], "down_inside": []}
    ok = True
    for _ in range(opts.repeat):
        for key, n in (("up", 110), ("down", 10)):
            t, code, tail = _timed([*PODLAB, "scale", "--lab", name, "deployment", "bench-scaler", "--replicas", str(n)])
            ok = ok and code == 0
            runs["up_10_110" if key == "up" else "down_110_10"].append(t)
            runs[f"{key}_inside"].append(_change_times(tail)[0])
    _timed([*PODLAB, "delete", "--lab", name, "-f", str(manifest)])
    out: dict[str, Any] = {k: median([x for x in v if x is not None]) for k, v in runs.items()}
    out["ok"], out["runs"] = ok, runs
    log(f"interaction: scale a Deployment 10 -> 110 in the running lab: {report_s(out['up_10_110'])} s "
        f"(change {report_s(out['up_inside'])} s), 110 -> 10: {report_s(out['down_110_10'])} s")
    return out


def section_interaction(opts: argparse.Namespace, work: Workdir, results: dict) -> dict:
    nodes, per = opts.vxlan_cluster
    path, name = work.topology(vxlan_yaml(nodes, per))
    out: dict[str, Any] = {"lab": f"{nodes} nodes x {per} pods, VXLAN ({nodes * per} pods)"}
    work.labs.append(name)
    t, code, tail = _timed([*PODLAB, "up", str(path), "--name", name], timeout=600)
    if code != 0:
        raise RuntimeError(f"podlab up failed: {tail}")
    out["cli_up"] = t
    log(f"interaction: `podlab up` (CLI) of the {nodes * per}-pod lab: {t:.2f} s")
    try:
        lab = api.Lab(name)
        pods = lab.addresses.pods
        src = pods[0]
        dst = next(p for p in pods if p.node != src.node)
        gets = [_timed([*PODLAB, "get", "pods", "--lab", name]) for _ in range(opts.repeat)]
        out["get_pods"] = {"runs": [g[0] for g in gets], "median": median([g[0] for g in gets]),
                           "ok": all(g[1] == 0 for g in gets)}
        log(f"interaction: `podlab get pods`: {out['get_pods']['median']:.2f} s")
        if (ROOT / "lab" / "packets" / "trace.py").exists():
            traces = [_timed([*PODLAB, "trace", src.name, dst.name, "--lab", name]) for _ in range(opts.repeat)]
            out["trace"] = {"runs": [x[0] for x in traces], "median": median([x[0] for x in traces]),
                            "ok": all(x[1] == 0 for x in traces), "from": src.name, "to": dst.name,
                            "tail": traces[-1][2][-300:]}
            log(f"interaction: `podlab trace` across nodes: {out['trace']['median']:.2f} s "
                f"(exit {traces[-1][1]})")
        else:
            out["trace"] = "not available"
        out["change"] = _one_pod_changes(opts, work, name)
        out["scale"] = _scale_changes(opts, work, name)
        if (ROOT / "tui" / "app.py").exists():
            runs = []
            for _ in range(opts.repeat):
                t, code, tail = _timed([sys.executable, "-c", TUI_PROBE.format(root=str(ROOT), lab=name)])
                runs.append(t if "ready" in tail else None)
            out["tui_first_screen"] = {"runs": runs, "median": median(runs), "ok": all(r is not None for r in runs)}
            log(f"interaction: TUI first screen: {report_s(out['tui_first_screen']['median'])} s")
        else:
            out["tui_first_screen"] = "not available"
    finally:
        t, code, tail = _timed([*PODLAB, "down", name], timeout=600)
        out["cli_down"] = t
        work.labs.remove(name)
        log(f"interaction: `podlab down` (CLI): {t:.2f} s")
    return out


def section_endpoints(opts: argparse.Namespace, work: Workdir, results: dict) -> dict:
    """A Service's rules follow readiness: from a pod marked running (its container restarted after
    CrashLoopBackOff, or a new pod applied) to its endpoint in every node's kube-proxy table."""
    import endpoint_latency
    nodes, replicas = opts.endpoint_lab
    stop = work.dir / "flappy-stop"
    path, name = work.topology(endpoint_latency.lab_yaml(nodes, replicas, stop))
    work.labs.append(name)
    try:
        lab = api.up(api.load_topology(str(path), name))
        runs = endpoint_latency.measure(lab, stop, restarts=opts.repeat, new_pods=opts.repeat)
    finally:
        if state.lab_dir(name).exists():
            api.down(name)
        work.labs.remove(name)
    out: dict[str, Any] = {"lab": f"{nodes} nodes, a Service over {replicas + 1} pods (kindnet)", "runs": runs}
    for kind, values in runs.items():
        out[kind] = median(values)
        out[f"{kind}_max"] = max((v for v in values if v is not None), default=None)
    out["ok"] = all(v is not None for values in runs.values() for v in values)
    log(f"endpoints: ready -> in the rules of all {nodes} nodes: restart {report_s(out['restart'])} s "
        f"(max {report_s(out['restart_max'])}), new pod {report_s(out['new_pod'])} s (max {report_s(out['new_pod_max'])})")
    return out


RUNNERS = {"bringup": section_bringup, "cluster": section_cluster, "reachability": section_reachability,
           "memory": section_memory, "dataplane": section_dataplane, "interaction": section_interaction,
           "endpoints": section_endpoints, "cni": cni_bench.section_cni}


# --- the machine, and what must not change ------------------------------------------------

def machine() -> dict:
    def cmd(*argv: str) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    mem = next(l.split()[1] for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal"))
    os_release = dict(l.split("=", 1) for l in Path("/etc/os-release").read_text().splitlines() if "=" in l)
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(int(mem) / 1024 / 1024, 1),
            "kernel": platform.release(), "os": os_release.get("PRETTY_NAME", "").strip('"'),
            "python": platform.python_version(),
            "mininet": cmd("dpkg-query", "-W", "-f", "${Version}", "mininet") or "not installed",
            "iproute2": cmd("ip", "-V"), "run_fs": cmd("findmnt", "-n", "-o", "FSTYPE", "-T", "/run/netns"),
            "br_netfilter": Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists()}


def root_state() -> dict:
    def ip(*args: str) -> str:
        return subprocess.run(["ip", *args], capture_output=True, text=True).stdout
    links = sorted(l.split(":")[1].strip() for l in ip("-o", "link").splitlines() if l.strip())
    sysctls = {}
    for key in ("net.ipv4.neigh.default.gc_thresh3", "net.ipv4.tcp_rmem", "net.core.rmem_max", "kernel.pty.max",
                "net.ipv4.ip_forward"):
        sysctls[key] = Path("/proc/sys/" + key.replace(".", "/")).read_text().strip()
    return {"links": links, "addresses": ip("-o", "addr"), "routes": ip("route", "show", "table", "all"),
            "sysctls": sysctls}


# --- report -------------------------------------------------------------------------------

def run(opts: argparse.Namespace) -> dict:
    global MININET_ROOT_NETNS
    MININET_ROOT_NETNS = opts.mininet_root_netns
    out_dir = Path(opts.out)
    results_path = out_dir / "results.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.exists() and not opts.fresh else {}
    results["machine"] = machine()
    # The commands are timed as an installed podlab runs them, with their modules compiled: with
    # PYTHONDONTWRITEBYTECODE set (or a source tree never run) each would compile ~200 modules first (~0.3 s).
    for package in ("lab", "tui"):
        compileall.compile_dir(str(ROOT / package), quiet=1)
    before = root_state()
    work = Workdir()
    try:
        for name in opts.only or SECTIONS:
            log(f"== {name} (load {load():.1f})")
            started = time.monotonic()
            data = RUNNERS[name](opts, work, results)
            data["date"] = datetime.datetime.now().isoformat(timespec="seconds")
            data["section_seconds"] = round(time.monotonic() - started, 1)
            data["load_after"] = load()
            results[name] = data
            out_dir.mkdir(parents=True, exist_ok=True)
            results_path.write_text(json.dumps(results, indent=1, default=str))
    finally:
        work.close()
        after = root_state()
        results["root_namespace_unchanged"] = after == before
        if after != before:
            changed = [k for k in before if before[k] != after[k]]
            log(f"!! the root network namespace changed during the run: {changed}")
    results_path.write_text(json.dumps(results, indent=1, default=str))
    if not opts.no_report:
        import report
        report.write(results, out_dir)
        log(f"wrote {out_dir / 'RESULTS.md'} and {out_dir / 'bringup.png'}")
    return results


def options(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes and one repeat, for trying")
    ap.add_argument("--only", action="append", choices=SECTIONS, help="run this section (repeatable)")
    ap.add_argument("--sizes", help="bring-up sizes, comma-separated (default 100,500,1000)")
    ap.add_argument("--repeat", type=int, help="repeats per measurement (default 3; medians are reported)")
    ap.add_argument("--mininet-repeat", type=int, help="repeats of Mininet runs (default: as --repeat)")
    ap.add_argument("--no-mininet", action="store_true", help="skip the Mininet peer")
    ap.add_argument("--mininet-root-netns", action="store_true",
                    help="run Mininet in the root network namespace, as shipped (others' root-namespace checks "
                         "running at the same time will see its switch); default: a namespace of its own")
    ap.add_argument("--no-tmpfs-run", dest="tmpfs_run", action="store_false",
                    help="skip the extra podlab/floor runs with /run on a tmpfs (largest size only)")
    ap.add_argument("--out", default=str(HERE), help="where results.json, RESULTS.md and bringup.png go")
    ap.add_argument("--fresh", action="store_true", help="do not merge with an earlier results.json")
    ap.add_argument("--no-report", action="store_true", help="results.json only")
    opts = ap.parse_args(argv)
    q = opts.quick
    opts.sizes = [int(s) for s in opts.sizes.split(",")] if opts.sizes else ([10, 50] if q else [100, 500, 1000])
    opts.repeat = opts.repeat or (1 if q else 3)
    opts.mininet_repeat = opts.mininet_repeat or opts.repeat
    opts.cluster_repeat = 1 if q else 2
    opts.vxlan_cluster = (5, 4) if q else (50, 20)
    opts.endpoint_lab = (3, 6) if q else (10, 40)
    opts.vpc_cluster = (20, 2) if q else (200, 2)
    opts.reach_pods = 20 if q else 100
    opts.memory_pods = max(opts.sizes) if q else 1000
    opts.iperf_seconds = 1.0 if q else 5.0
    opts.cni_pods = 20 if q else 100
    if q and opts.out == str(HERE):
        opts.out = tempfile.mkdtemp(prefix="podlab-bench-quick-")
    return opts


def main(argv: list[str] | None = None) -> int:
    # `kill PID` stops a run as Ctrl-C does: labs, floors and Mininet are taken down first.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:      # started with `&` from a script
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if os.geteuid() != 0:
        print("bench/run.py needs root (it builds real namespaces): sudo make bench", file=sys.stderr)
        return 2
    opts = options(argv)
    log(f"podlab bench: sections {', '.join(opts.only or SECTIONS)}; sizes {opts.sizes}; repeat {opts.repeat}; "
        f"results in {opts.out}")
    run(opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
