"""The workload agent in a plan: its spec (every pod's containers, and the files the kubelet gives
them) and the agent itself as a daemon. Pure; not imported by the agent."""
from __future__ import annotations

import json

from lab import podenv, state
from lab.addressing import AddressPlan, PodAddr
from lab.model import Container, FieldRef, Pod, Topology
from lab.ops import AgentReady, Op, StartDaemon, WriteFile
from lab.workloads import AGENT_MODULE, SPEC_FILE

SPEC = state.in_lab_dir(SPEC_FILE)


def ops(topo: Topology, addrs: AddressPlan, other_ops: list[Op]) -> list[Op]:
    mounts: dict[str, list[list[str]]] = {}
    for op in other_ops:
        if isinstance(op, WriteFile) and op.pod is not None and op.target is not None:
            mounts.setdefault(op.pod, []).append([op.path, op.target])
    # A Deployment's pods have the same containers: each written out once.
    containers: dict[Container, dict] = {}
    host_ips = {n.name: str(n.ip) for n in addrs.nodes}
    pods = [_pod(topo.name, pod, addr, host_ips[addr.node], mounts.get(pod.name, []), containers)
            for pod, addr in zip(topo.pods, addrs.pods)]
    spec = json.dumps({"lab": topo.name, "pods": pods}, separators=(",", ":")) + "\n"   # C encoder: indent would be 10x slower
    count = sum(len(p["containers"]) for p in pods)
    return [WriteFile(SPEC, spec, f"the workload agent's spec: {len(pods)} pods, {count} containers",
                      show=False),
            StartDaemon("workload-agent", "agent", None, ("python3", "-m", AGENT_MODULE, "--lab", topo.name,
                                                         "--spec", SPEC), (SPEC,), AgentReady(), "python3")]


def _pod(lab: str, pod: Pod, addr: PodAddr, host_ip: str, mounts: list[list[str]],
         containers: dict[Container, dict]) -> dict:
    """A pod as the agent's spec says it (lab.workloads.parse_spec); init containers and volumes only
    when it has them, so a thousand plain pods' spec stays as small as it was. `containers`: those
    written out so far (a container whose env names the pod's fields is the pod's own)."""
    def written(c: Container) -> dict:
        if (out := containers.get(c)) is not None:
            return out
        if any(isinstance(value, FieldRef) for _, value in c.env):
            return _container(c, _filled(lab, pod, addr, host_ip, c))     # never shared
        out = containers[c] = _container(c)
        return out
    netns = addr.netns
    out = {"pod": pod.name, "netns": netns, "uts": state.in_lab_dir(f"uts/{netns}"), "mounts": mounts,
           "containers": [written(c) for c in pod.containers]}
    if pod.init_containers:
        out["initContainers"] = [written(c) for c in pod.init_containers]
    if pod.volumes:
        out["volumes"] = [v.name for v in pod.volumes]
    return out


def _filled(lab: str, pod: Pod, addr: PodAddr, host_ip: str, c: Container) -> list[tuple[str, str]]:
    """The container's variables, those from the pod's fields filled in as the kubelet fills them in
    when it starts the container."""
    fields = dict(lab=lab, pod=pod.name, namespace=pod.namespace, node=pod.node, pod_ip=str(addr.ip), host_ip=host_ip,
                  labels=dict(pod.labels), annotations=dict(pod.annotations))
    return [(name, value if isinstance(value, str) else podenv.field_value(value.field_path, **fields))
            for name, value in c.env]


def _container(c: Container, env: list[tuple[str, str]] | None = None) -> dict:
    """`env`: the container's with the pod's fields filled in (None: it has none)."""
    out = {"name": c.name, "workload": c.workload, "ports": list(c.ports), "command": list(c.command)}
    if c.volume_mounts:
        out["volumeMounts"] = [{"name": m.volume, "mountPath": m.mount_path, "readOnly": m.read_only}
                               for m in c.volume_mounts]
    if c.env:
        out["env"] = [list(e) for e in (c.env if env is None else env)]
    return out
