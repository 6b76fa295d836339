"""A throwaway L2 segment of BIRD nodes for the lab.bgp tests: N network namespaces whose eth0
hang on one bridge in a further namespace, one BIRD per node. Everything is named
`bgpt-<random>-...`, nothing is done in the root namespace, and `close` ends only the BIRDs it
started (by PID) and deletes only the namespaces it made."""
from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from lab.bgp import birdc
from lab.bgp.config import BgpNode, bird_argv, bird_config


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Segment:
    def __init__(self, nodes: list[BgpNode], *, permanent_neighbours: bool = False, **config_args):
        self.prefix = f"bgpt-{secrets.token_hex(3)}"
        self.nodes = nodes
        self.config_args = config_args
        # The kernel's ARP table is one for all namespaces: past gc_thresh3 (1024, a root-namespace
        # sysctl) dynamic entries are refused and ARP goes unanswered. Permanent ones do not count,
        # so a big segment writes every node's neighbours (n x (n-1) of them) as permanent.
        self.permanent_neighbours = permanent_neighbours
        self.bridge_ns = f"{self.prefix}-br"
        self.ns = {n.name: f"{self.prefix}-{n.name}" for n in nodes}
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self.made: list[str] = []
        self.procs: list[subprocess.Popen] = []

    def sock(self, node: str) -> str:
        return str(self.dir / f"{node}.ctl")

    def build(self) -> None:
        self._netns_add(self.bridge_ns)
        _ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.bridge_ns, "link", "set", "br0", "up")
        for i, n in enumerate(self.nodes):
            ns, port = self.ns[n.name], f"p{i}"
            self._netns_add(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "add", "eth0", "address", self.mac(i), "type", "veth",
                "peer", "name", port, "netns", self.bridge_ns)
            _ip("-n", ns, "addr", "add", f"{n.ip}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", self.bridge_ns, "link", "set", port, "master", "br0", "up")
        if self.permanent_neighbours:
            for n in self.nodes:
                batch = "".join(f"neigh replace {o.ip} lladdr {self.mac(j)} dev eth0 nud permanent\n"
                                for j, o in enumerate(self.nodes) if o is not n)
                subprocess.run(["ip", "-n", self.ns[n.name], "-batch", "-"], input=batch, check=True,
                               capture_output=True, text=True)

    @staticmethod
    def mac(index: int) -> str:
        return f"02:00:00:00:{index // 256:02x}:{index % 256:02x}"

    def _netns_add(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self.made.append(ns)

    def start_birds(self, names: list[str] | None = None) -> None:
        """Start BIRD on the nodes named (all by default), each configured for the whole segment."""
        for n in self.nodes:
            if names is not None and n.name not in names:
                continue
            conf = self.dir / f"{n.name}.conf"
            conf.write_text(bird_config(n, self.nodes, **self.config_args))
            log = open(self.dir / f"{n.name}.log", "w")
            self.procs.append(subprocess.Popen(
                ["ip", "netns", "exec", self.ns[n.name], *bird_argv(str(conf), self.sock(n.name))],
                stdout=log, stderr=subprocess.STDOUT))

    def protocols(self, node: str) -> list[birdc.Protocol]:
        return birdc.protocols(self.sock(node))

    def kernel_routes(self, node: str) -> list[str]:
        out = subprocess.run(["ip", "-n", self.ns[node], "route"], check=True, capture_output=True, text=True)
        return out.stdout.splitlines()

    def close(self) -> None:
        for p in self.procs:          # ip netns exec execs bird: the PID is bird's
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
