"""The workload agent in a plan: its spec (every pod's containers, and the files the kubelet gives
them) and the agent itself as a daemon. Pure; not imported by the agent."""
from __future__ import annotations

import json

from lab import state
from lab.addressing import AddressPlan
from lab.model import Topology
from lab.ops import AgentReady, Op, StartDaemon, WriteFile
from lab.workloads import AGENT_MODULE, SPEC_FILE

SPEC = state.in_lab_dir(SPEC_FILE)


def ops(topo: Topology, addrs: AddressPlan, other_ops: list[Op]) -> list[Op]:
    mounts: dict[str, list[list[str]]] = {}
    for op in other_ops:
        if isinstance(op, WriteFile) and op.pod is not None and op.target is not None:
            mounts.setdefault(op.pod, []).append([op.path, op.target])
    pods = [{"pod": pod.name, "netns": addr.netns, "uts": state.in_lab_dir(f"uts/{addr.netns}"),
             "mounts": mounts.get(pod.name, []),
             "containers": [{"name": c.name, "workload": c.workload, "ports": list(c.ports),
                             "command": list(c.command)} for c in pod.containers]}
            for pod, addr in zip(topo.pods, addrs.pods)]
    spec = json.dumps({"lab": topo.name, "pods": pods}, separators=(",", ":")) + "\n"   # C encoder: indent would be 10x slower
    containers = sum(len(p["containers"]) for p in pods)
    return [WriteFile(SPEC, spec, f"the workload agent's spec: {len(pods)} pods, {containers} containers",
                      show=False),
            StartDaemon("workload-agent", "agent", None, ("python3", "-m", AGENT_MODULE, "--lab", topo.name,
                                                         "--spec", SPEC), (SPEC,), AgentReady(), "python3")]
