"""How long a pod that becomes ready waits before kube-proxy's rules send to it.

From the moment the workload agent marks the pod's container running (its `startedAt` in
agent.json, wall clock) to the moment each node's kernel commits the transaction that puts the
pod into its Service's chain: `nft monitor rules`, run in every node's namespace, prints that rule
as the kernel announces it, and this process stamps the line when it reads it (wall clock too).
The figure for one event is the last node's: the Service works everywhere only then.

Two events, each repeated:
  restart   a pod whose command exits on request comes back after its CrashLoopBackOff delay
  new pod   a Pod applied to the running lab (api.change), ready once the agent serves it
"""
from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

import yaml

from lab import api, topology, workloads
from lab.engine import nsexec

FLAPPY_COMMAND = ["sh", "-c", "while [ ! -e {stop} ]; do sleep 0.02; done; rm -f {stop}; exit 1"]


def lab_yaml(nodes: int, replicas: int, stop: Path) -> str:
    """A Service over a Deployment spread on every node, and one pod that exits when told to."""
    command = ", ".join(f'"{a}"' for a in FLAPPY_COMMAND).format(stop=stop)
    return (f"design: kindnet\nnodes: {nodes}\n"
            f"deployments:\n  - {{name: web, replicas: {replicas}, image: nginx}}\n"
            "pods:\n  - name: flappy\n    labels: {app: web}\n"
            f"    containers: [{{name: c, image: busybox, ports: [80], command: [{command}]}}]\n"
            "services:\n  - {name: web, selector: {app: web}, ports: [{port: 80}]}\n")


class Monitors:
    """`nft monitor rules` in every node's namespace; each line stamped as it arrives."""

    def __init__(self, lab: api.Lab):
        self.lines: list[tuple[float, str, str]] = []     # (when, node, line)
        self.lock = threading.Lock()
        self.procs = []
        for node in lab.addresses.nodes:
            proc = subprocess.Popen(nsexec.command(["nft", "monitor", "rules"], node.netns),
                                    stdout=subprocess.PIPE, text=True)
            self.procs.append(proc)
            threading.Thread(target=self._read, args=(node.name, proc), daemon=True).start()
        time.sleep(0.3)                                    # every monitor subscribed

    def _read(self, node: str, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self.lock:
                self.lines.append((time.time(), node, line))

    def added(self, ip: str, port: int, since: float, nodes: int, timeout: float = 10.0) -> float | None:
        """When the last node put ip:port into a Service chain's endpoint map (after `since`)."""
        deadline = time.monotonic() + timeout
        mark = re.compile(rf"__{re.escape(ip)}/{port}\b")
        while time.monotonic() < deadline:
            with self.lock:
                seen = {}
                for when, node, line in self.lines:
                    if when >= since and line.startswith("add rule ip kube-proxy service-") and mark.search(line):
                        seen.setdefault(node, when)
            if len(seen) == nodes:
                return max(seen.values())
            time.sleep(0.01)
        return None

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()      # our own children
            proc.wait(timeout=5)


def _started_at(lab: str, pod: str, after: float, timeout: float = 15.0) -> float | None:
    """The agent's startedAt of the pod's first container, once it is later than `after`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        containers = workloads.read_status(lab).get("pods", {}).get(pod, {}).get("containers", {})
        started = next(iter(containers.values()), {}).get("startedAt") if containers else None
        if started is not None and started > after:
            return started
        time.sleep(0.02)
    return None


def measure(lab: api.Lab, stop: Path, restarts: int, new_pods: int) -> dict:
    """Ready -> in every node's rules, in seconds: a list per event kind."""
    monitors = Monitors(lab)
    nodes = len(lab.addresses.nodes)
    out: dict[str, list[float | None]] = {"restart": [], "new_pod": []}
    try:
        flappy = lab.addresses.pod("flappy")
        for _ in range(restarts):
            before = time.time()
            stop.touch()                                   # it exits; the agent restarts it after 1, 2, 4 s...
            started = _started_at(lab.name, "flappy", before + 0.05, timeout=40)
            seen = monitors.added(str(flappy.ip), 80, before, nodes, timeout=40) if started else None
            out["restart"].append(None if seen is None or started is None else seen - started)
        current = api.Lab(lab.name)
        for i in range(new_pods):
            name = f"bench-ep-{i}"
            desired = topology.loads(_with_pod(current.topology.text, name), default_name=current.document_name,
                                     bound=current.scheduling)
            before = time.time()
            current = api.change(lab.name, desired, current=current)
            started = _started_at(lab.name, name, before)
            ip = current.addresses.pod(name).ip
            seen = monitors.added(str(ip), 80, before, nodes)
            out["new_pod"].append(None if seen is None or started is None else seen - started)
    finally:
        monitors.close()
    return out


def _with_pod(text: str, name: str) -> str:
    """The lab's document with one more nginx pod behind the Service."""
    document = yaml.safe_load(text)
    document.setdefault("pods", []).append({"name": name, "labels": {"app": "web"}, "image": "nginx"})
    return yaml.safe_dump(document, sort_keys=False)
