"""A running lab's EndpointSlice controller and kube-proxy, in one: run by the workload agent.

A Service's endpoints are the pods it selects that are Ready — every container running; one that
exited, is waiting to restart (CrashLoopBackOff) or has not started yet is not — and kube-proxy's
rules send a ClusterIP only to those. The agent is the lab's kubelet: it sees each container
start and stop the moment it happens, so it runs this too, with no process or poll of its own.

The plan writes what this needs as kube-proxy.json (record()): the node namespaces, the pod CIDR,
and every Service port with the endpoints it may have (each with its pod). `up` loads the whole
table with all of them (every pod is about to start); from then on this keeps it: whenever a pod
becomes ready or unready, or the lab changes (the agent reloads, a new kube-proxy.json with it),
sync() compares each port's ready endpoints with what each node's kernel holds and sends one
`nft -f` transaction per node that rewrites only the ports that changed (lab.services.nft.update):
other Services are not touched, and conntrack keeps the flows already NATed. A transaction the
kernel refuses (someone changed the table by hand) is followed by the whole table made again.
Transactions go through libnftables in-process (lab.engine.nftables: ~1 ms a node, where forking
nsenter and nft costs ~10 ms), or through `nft -f -` where the library cannot be loaded.

Light (stdlib, lab.workloads, lab.engine, lab.services.nft): the agent imports it, in labs with Services,
and every plan does for record(); asyncio only where the agent's loop runs it (~35 ms a change's
planning does not need).
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lab import workloads
from lab.engine import nftables, nsexec
from lab.services import nft
from lab.services.nft import PortRules

if TYPE_CHECKING:
    from ipaddress import IPv4Network

    from lab.services.endpoints import ServicePlan

SPEC_FILE = workloads.KUBE_PROXY_SPEC      # in the lab's state directory
NFT_TIMEOUT = 30.0

Key = tuple[str, str, str, str]


@dataclass(frozen=True)
class Candidate:
    """An endpoint a port may have: a pod's address and port (pod None: the API server, always there)."""
    pod: str | None
    ip: str
    port: int


@dataclass(frozen=True)
class Spec:
    pod_cidr: str
    nodes: tuple[str, ...]                                       # the nodes' network namespaces
    ports: tuple[tuple[PortRules, tuple[Candidate, ...]], ...]   # in the order the table lists them

    def desired(self, ready: Collection[str] | None) -> dict[Key, PortRules]:
        """Each port with the endpoints of the pods in `ready` (None: every pod, as the plan has it)."""
        return {pr.key: pr.with_endpoints((c.ip, c.port) for c in candidates
                                          if c.pod is None or ready is None or c.pod in ready)
                for pr, candidates in self.ports}


def record(splan: ServicePlan, pod_cidr: IPv4Network, nodes: list[str]) -> str:
    """kube-proxy.json for a plan: what sync() needs, as compact JSON."""
    ports = []
    for svc in splan.services:
        if svc.headless:
            continue
        for pp in svc.ports:
            ports.append({**nft.port_rules(svc, pp, ()).record(),
                          "endpoints": [[b.pod, str(b.ip), b.port] for b in pp.backends]})
    return json.dumps({"podCIDR": str(pod_cidr), "nodes": nodes, "ports": ports}, separators=(",", ":")) + "\n"


def parse(data: dict) -> Spec:
    """ValueError (or KeyError, TypeError) if it is not what record() writes."""
    ports = []
    for p in data["ports"]:
        candidates = tuple(Candidate(None if pod is None else str(pod), str(ip), int(port))
                           for pod, ip, port in p["endpoints"])
        ports.append((PortRules.from_record({**p, "endpoints": []}), candidates))
    nodes = data["nodes"]
    if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
        raise ValueError("nodes: must be a list of namespace names")
    return Spec(str(data["podCIDR"]), tuple(nodes), tuple(ports))


def load(path: Path) -> Spec:
    return parse(json.loads(path.read_text()))


def transaction(kernel: dict[Key, PortRules] | None, desired: dict[Key, PortRules], pod_cidr: str) -> str | None:
    """What one node's `nft -f` must run to go from `kernel` (None: not known) to `desired`;
    None when they are the same."""
    if kernel is None:
        return nft.replace_table(list(desired.values()), pod_cidr)
    lines: list[str] = []
    for key in [*desired, *(k for k in kernel if k not in desired)]:
        if kernel.get(key) != desired.get(key):
            lines += nft.update(kernel.get(key), desired.get(key), pod_cidr)
    return "\n".join(lines) + "\n" if lines else None


class KubeProxy:
    """The state sync() keeps: the spec, and per node what its kernel holds (None: not known)."""

    def __init__(self, path: Path, log: Callable[[str], None], table_as_planned: bool):
        """`table_as_planned`: the nodes hold the table `up` loaded (a first agent); else (an agent
        started again) nothing is assumed and the first sync makes each table again."""
        self.path, self.log = path, log
        self.spec = load(path)
        planned = self.spec.desired(None)
        self.kernel: dict[str, dict[Key, PortRules] | None] = {
            n: dict(planned) if table_as_planned else None for n in self.spec.nodes}
        self.syncs = 0
        self.failures = 0
        self.last: dict = {}
        self.contexts = nftables.Contexts() if nftables.available() else None

    def reload(self) -> None:
        """Read kube-proxy.json again (the lab changed). A node new to it is not known: a change
        loads a new node's table whole, and the next sync makes it again with the ready endpoints."""
        try:
            spec = load(self.path)
        except (OSError, ValueError, KeyError, TypeError) as e:
            self.log(f"kube-proxy: {self.path}: {e}; keeping the Services as they were")
            return
        self.spec = spec
        self.kernel = {n: self.kernel.get(n) for n in spec.nodes}

    def release_gone(self) -> None:
        """Let go of the namespaces that went (see nftables.Contexts)."""
        if self.contexts is not None:
            self.contexts.release_gone()

    async def sync(self, ready: Collection[str]) -> int:
        """Bring every node's table to the ready endpoints; the number of transactions sent."""
        started = time.monotonic()
        desired = self.spec.desired(ready)
        todo = {n: text for n in self.spec.nodes
                if (text := transaction(self.kernel[n], desired, self.spec.pod_cidr)) is not None}
        if not todo:
            return 0
        done = await self._send(todo)
        # Where the kernel did not hold what we thought (a hand edit): the whole table, made again.
        again = {n: nft.replace_table(list(desired.values()), self.spec.pod_cidr)
                 for n, ok in done.items() if not ok and self.kernel[n] is not None}
        if again:
            done.update(await self._send(again))
        for node, ok in done.items():
            self.kernel[node] = dict(desired) if ok else None
            self.failures += not ok
        self.syncs += 1
        self.last = {"at": time.time(), "seconds": round(time.monotonic() - started, 4), "nodes": len(todo)}
        return len(todo)

    async def _send(self, jobs: dict[str, str]) -> dict[str, bool]:
        """One transaction per node; whether each was taken."""
        import asyncio
        if self.contexts is not None:
            errors = await asyncio.get_running_loop().run_in_executor(None, self.contexts.run, list(jobs.items()))
            for node, error in zip(jobs, errors):
                if error:
                    self.log(f"kube-proxy: the update of {node}'s table was refused: {error[:500]}")
            return {node: error is None for node, error in zip(jobs, errors)}
        results = await asyncio.gather(*(self._load(n, text) for n, text in jobs.items()))
        return dict(zip(jobs, results))

    async def _load(self, node: str, text: str) -> bool:
        """One transaction in one node's namespace (nsenter, then nft: no Python after the fork)."""
        import asyncio
        try:
            proc = await asyncio.create_subprocess_exec(
                *nsexec.command(["nft", "-f", "-"], node), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        except OSError as e:
            self.log(f"kube-proxy: nft -f in {node}: {e}")
            return False
        try:
            _, err = await asyncio.wait_for(proc.communicate(text.encode()), NFT_TIMEOUT)
        except asyncio.TimeoutError:
            proc.kill()        # our own child, not yet reaped
            await proc.wait()
            self.log(f"kube-proxy: nft -f in {node} did not finish in {NFT_TIMEOUT:g} s")
            return False
        if proc.returncode != 0:
            self.log(f"kube-proxy: nft -f in {node} refused the update: {err.decode(errors='replace').strip()[:500]}")
            return False
        return True

    def status(self) -> dict:
        return {"syncs": self.syncs, "failures": self.failures, "last": self.last}
