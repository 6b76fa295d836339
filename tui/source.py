"""Where the TUI's data comes from: a Source.

`LabSource` reads a running lab: the cluster's shape from the lab's plan, everything about a
namespace (links, addresses, routes, neighbours, FDB, nftables, listening sockets, processes)
from the kernel at the moment it is asked, so a change made by hand in another terminal shows
on the next refresh. `tui.preview.PlanSource` shows the same records, replayed from a topology's
plan by lab.preview without root (a preview, and stable data for snapshot tests). The app only
sees the protocol.

Every method may block (netlink, /proc, a forked `nft`): the app calls them from thread workers.
"""
from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from lab import designs
from lab.errors import PodlabError
from lab.inspect import Link, Snapshot

PING = ["ping", "-c", "3", "-W", "1", "-i", "0.2"]
CURL = ["curl", "-sS", "--max-time", "5"]
PACKETS_MISSING = "packet tools not available yet (lab.packets is not installed)"


@dataclass(frozen=True)
class Entity:
    """One place in the cluster the user can select: a namespace with a role."""
    name: str
    kind: str                  # underlay | node | pod | outside
    netns: str
    uts: str | None = None
    ip: str | None = None
    node: str | None = None    # a pod's node; a node's own name
    status: str = ""           # pod: Running, ContainerCreating, ...; node: Ready / NotReady
    detail: str = ""           # node: its pod CIDR; pod: "hostNetwork"; underlay: its subnet / router

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class Cluster:
    lab: str
    mode: str                  # "vxlan", "l3/gateway", ...
    description: str
    underlay: Entity
    nodes: tuple[Entity, ...]
    pods: dict[str, tuple[Entity, ...]]      # node name -> its pods, in plan order
    outside: tuple[Entity, ...] = ()
    router: str | None = None                # the VPC router's address (gateway routing)
    bird: frozenset[str] = frozenset()       # the nodes that run BIRD (calico): they have a BGP tab

    def entities(self) -> Iterator[Entity]:
        yield self.underlay
        for n in self.nodes:
            yield n
            yield from self.pods.get(n.name, ())
        yield from self.outside

    def find(self, name: str) -> Entity | None:
        return next((e for e in self.entities() if e.name == name), None)

    @property
    def pod_count(self) -> int:
        return sum(len(p) for p in self.pods.values())


@dataclass(frozen=True)
class Peer:
    """Where the other end of a veth lives."""
    entity: str                # the entity owning that namespace
    iface: str


@dataclass(frozen=True)
class ContainerRow:
    name: str
    image: str
    workload: str
    state: str
    restarts: int
    pid: int | None
    ports: str


@dataclass
class Workload:
    """What runs in a namespace: declared containers, the kernel's listening sockets, processes."""
    containers: list[ContainerRow] = field(default_factory=list)
    listening: list[str] = field(default_factory=list)     # "tcp 0.0.0.0:80"
    processes: list[str] = field(default_factory=list)     # "1234 python3 -m http.server 9000"
    note: str = ""


class Source(Protocol):
    live: bool                 # True: reads a running lab's kernel state

    def changed(self) -> bool:
        """Whether the cluster's shape changed since cluster() was last read (pods applied, deleted)."""
        ...

    @property
    def name(self) -> str: ...
    def cluster(self) -> Cluster: ...
    def snapshot(self, entity: Entity) -> Snapshot: ...
    def peer(self, entity: Entity, link: Link) -> Peer | None: ...
    def nft(self, entity: Entity) -> str: ...
    def workload(self, entity: Entity) -> Workload: ...
    def bgp(self, entity: Entity) -> dict: ...
    def resolve(self, text: str) -> str: ...
    def entity(self, name: str) -> Entity: ...
    def command(self, kind: str, src: Entity, dst: str) -> list[str]: ...
    def run(self, src: Entity, argv: list[str], started: Any = None) -> Iterator[str]: ...
    def trace(self, src: Entity, dst: str, proto: str = "icmp", port: int | None = None) -> Any: ...
    def capture(self, entity: Entity, iface: str | None, bpf: str | None,
                stop: threading.Event) -> Iterator[Any]: ...
    def shell_argv(self, entity: Entity) -> list[str]: ...


def nsenter(entity: Entity, argv: list[str]) -> list[str]:
    """argv run inside the entity's network (and UTS) namespace (lab.engine.nsexec: no Python runs in
    the forked child of this threaded app)."""
    from lab.engine import nsexec
    return nsexec.in_namespace(entity.netns, entity.uts) + argv


def split_destination(text: str) -> tuple[str, str, str]:
    """'web:8080/hostname' -> ('web', '8080', 'hostname')."""
    host, _, path = text.strip().partition("/")
    name, _, port = host.partition(":")
    return name, port, path


def run_lines(argv: list[str], started: Any = None) -> Iterator[str]:
    """Lines of a command's output as they come; `started(proc)` gets the process so it can be stopped."""
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                text=True, bufsize=1, errors="replace")
    except FileNotFoundError:
        yield f"{argv[0]}: command not found"
        return
    if started:
        started(proc)
    assert proc.stdout is not None
    with proc:
        for line in proc.stdout:
            yield line.rstrip("\n")
    yield f"[exit status {proc.returncode}]"


class LabSource:
    """A running lab, read from the kernel on every call."""

    live = True

    def __init__(self, lab: Any):
        self.lab = lab                         # lab.api.Lab: swapped whole when the lab changes
        self._veths: dict[tuple[str, str], tuple[str, str]] | None = None
        self._owners: dict[str, str] | None = None
        self._bird_sockets: dict[str, str] | None = None

    @property
    def name(self) -> str:
        return self.lab.name

    def changed(self) -> bool:
        # One stat: a change (podlab apply, delete, scale, rollout) rewrites the lab's record.
        return not self.lab.record_unchanged()

    def _reread(self) -> None:
        """The lab as its record says now; what was derived from the old plan is derived again."""
        from lab import api
        fresh = api.Lab(self.lab.name)
        self._veths = self._owners = self._bird_sockets = None
        self.lab = fresh   # one assignment: workers reading the old Lab meanwhile see a whole one

    def cluster(self) -> Cluster:
        from lab import render, workloads
        if self.changed():
            self._reread()
        lab = self.lab
        a, topo = lab.addresses, lab.topology
        targets = lab.targets()
        rows = render.pod_rows(lab, workloads.read_status(lab.name), workloads.agent_alive(lab.name))
        node_status = {r["name"]: r["status"] for r in render.node_rows(lab)}
        gateway = designs.of(topo).backend.router
        u = targets["underlay"]
        underlay = Entity("underlay", "underlay", u.netns, u.uts, str(a.router_ip) if gateway else None,
                          detail=f"{topo.node_subnet}" + (f", VPC router {a.router_ip}" if gateway else ""))
        nodes = tuple(Entity(n.name, "node", n.netns, targets[n.name].uts, str(n.ip), n.name,
                             node_status.get(n.name, ""), str(n.block)) for n in a.nodes)
        pods: dict[str, list[Entity]] = {n.name: [] for n in a.nodes}
        for row, addr in zip(rows, a.pods):
            failed = row.get("message")      # a cni lab's pod whose ADD failed: no address, and kubelet's event
            pods[addr.node].append(Entity(addr.name, "pod", addr.netns, targets[addr.name].uts,
                                          None if failed else str(addr.ip), addr.node, row["status"],
                                          failed or ("hostNetwork" if addr.host_network else "")))
        outside = tuple(Entity(h.name, "outside", h.netns, targets[h.name].uts, str(h.ip)) for h in a.outside)
        mode = designs.of(topo).name
        return Cluster(lab.name, mode, topo.description, underlay, nodes,
                       {k: tuple(v) for k, v in pods.items()}, outside, str(a.router_ip) if gateway else None,
                       frozenset(self._birds()))

    def _birds(self) -> dict[str, str]:
        from lab.bgp.cli import birds
        if self._bird_sockets is None:
            self._bird_sockets = birds(self.lab)      # from the plan: read again when the lab changes
        return self._bird_sockets

    def snapshot(self, entity: Entity) -> Snapshot:
        from lab import inspect
        from lab.engine import netns
        if not netns.exists(entity.netns):
            raise PodlabError(f"network namespace {entity.netns} does not exist (is the lab down?)")
        return inspect.snapshot(entity.netns)

    def peer(self, entity: Entity, link: Link) -> Peer | None:
        if self._veths is None or self._owners is None:
            self._veths, self._owners = veth_map(self.lab.plan.ops), owners(self.lab.addresses)
        return peer_of(self._veths, self._owners, entity, link)

    def nft(self, entity: Entity) -> str:
        r = subprocess.run(nsenter(entity, ["nft", "list", "ruleset"]), capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=10)
        if r.returncode != 0:
            return f"nft failed ({r.returncode}): {r.stderr.strip()}"
        return r.stdout

    def workload(self, entity: Entity) -> Workload:
        from lab import workloads
        from lab.engine import netns
        w = Workload()
        pod = next((p for p in self.lab.topology.pods if p.name == entity.name), None)
        if pod is not None:
            status = workloads.read_status(self.lab.name).get("pods", {}).get(pod.name, {}).get("containers", {})
            alive = workloads.agent_alive(self.lab.name)
            for c in pod.containers:
                s = status.get(c.name, {})
                w.containers.append(ContainerRow(c.name, c.image, c.workload,
                                                 s.get("state", "Unknown") if alive else "Unknown",
                                                 int(s.get("restarts", 0)), s.get("pid"),
                                                 ",".join(map(str, c.ports)) or "-"))
            if builtin := [c.name for c in pod.containers if c.workload != "command"]:
                w.note = (f"built-in containers ({', '.join(builtin)}) are sockets of the lab's one workload "
                          f"agent (pid {workloads.agent_pid(self.lab.name) or 'not running'}), made inside "
                          "this namespace")
        w.listening = netns.run_in(entity.netns, listening_sockets)
        w.processes = processes_in(netns.netns_path(entity.netns))
        return w

    def bgp(self, entity: Entity) -> dict:
        """The node's sessions from its BIRD's control socket, as `podlab bgp NODE` reads them
        (lab.bgp.cli.node_status: peers, protocols, the calicoctl and birdc texts, or `error`)."""
        from lab.bgp.cli import node_status
        sock = self._birds().get(entity.name)
        if sock is None:
            raise PodlabError(f"{entity.name} runs no BIRD (BGP is the calico design's)")
        return node_status(entity.name, sock)

    def resolve(self, text: str) -> str:
        return str(self.lab.address_of(text.strip()))

    def entity(self, name: str) -> Entity:
        t = self.lab.target(name.strip())
        return Entity(t.name, t.kind, t.netns, t.uts, str(t.ip) if t.ip else None, t.node)

    def command(self, kind: str, src: Entity, dst: str) -> list[str]:
        return command_for(kind, dst, self.resolve)

    def run(self, src: Entity, argv: list[str], started: Any = None) -> Iterator[str]:
        return run_lines(nsenter(src, argv), started)

    def trace(self, src: Entity, dst: str, proto: str = "icmp", port: int | None = None) -> Any:
        try:
            from lab.packets.trace import trace
        except ImportError:
            raise PodlabError(PACKETS_MISSING) from None
        name, dport, _ = split_destination(dst)
        if dport and port is None:
            if not dport.isdigit():
                raise PodlabError(f"{dst!r}: the port after ':' must be a number")
            proto, port = ("tcp" if proto == "icmp" else proto), int(dport)
        return trace(self.lab, src.name, name, proto=proto, port=port)

    def capture(self, entity: Entity, iface: str | None, bpf: str | None,
                stop: threading.Event) -> Iterator[Any]:
        try:
            from lab.packets.capture import stream
        except ImportError:
            raise PodlabError(PACKETS_MISSING) from None
        return stream(self.lab, entity.name, iface=iface, bpf=bpf or None, stop=stop)

    def shell_argv(self, entity: Entity) -> list[str]:
        return nsenter(entity, ["bash", "--norc", "-i"])


def command_for(kind: str, dst: str, resolve: Any) -> list[str]:
    name, port, path = split_destination(dst)
    address = resolve(name)
    if kind == "ping":
        return PING + [address]
    if kind == "curl":
        return CURL + [f"http://{address}:{port or 80}/{path}"]
    raise PodlabError(f"unknown command {kind!r}")


def veth_map(ops: Any) -> dict[tuple[str, str], tuple[str, str]]:
    """Both ends of every veth the plan made: (netns, name) -> (peer netns, peer name)."""
    from lab.ops import CreateVeth
    veths: dict[tuple[str, str], tuple[str, str]] = {}
    for op in ops:
        if isinstance(op, CreateVeth):
            veths[(op.ns, op.name)] = (op.peer_ns, op.peer)
            veths[(op.peer_ns, op.peer)] = (op.ns, op.name)
    return veths


def owners(a: Any) -> dict[str, str]:
    """netns -> the entity that owns it (a hostNetwork pod owns none: it uses its node's)."""
    found = {a.underlay_netns: "underlay"}
    found.update({n.netns: n.name for n in a.nodes})
    found.update({p.netns: p.name for p in a.pods if not p.host_network})
    found.update({h.netns: h.name for h in a.outside})
    return found


def peer_of(veths: dict[tuple[str, str], tuple[str, str]], owner: dict[str, str], entity: Entity,
            link: Link) -> Peer | None:
    """The plan says which veth pairs podlab made; the kernel says this one is still a veth."""
    if link.kind != "veth":
        return None
    other = veths.get((entity.netns, link.name))
    if other is None or other[0] not in owner:
        return None
    return Peer(owner[other[0]], other[1])


TCP_LISTEN = "0A"


def listening_sockets() -> list[str]:
    """Listening TCP and bound UDP sockets of the calling thread's network namespace (run it via netns.run_in)."""
    out = []
    for proto in ("tcp", "udp"):
        try:
            with open(f"/proc/thread-self/net/{proto}") as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, st = fields[1], fields[3]
            if proto == "tcp" and st != TCP_LISTEN:
                continue
            hexip, hexport = local.split(":")
            ip = ".".join(str(int(hexip[i:i + 2], 16)) for i in (6, 4, 2, 0))
            out.append(f"{proto} {ip}:{int(hexport, 16)}")
    return sorted(set(out), key=lambda s: (s.split()[0], int(s.rsplit(":", 1)[1])))


def processes_in(netns_file: str) -> list[str]:
    """Processes whose network namespace is the one mounted at netns_file (the kernel's answer, from /proc)."""
    try:
        want = os.stat(netns_file)
    except OSError:
        return []
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            st = os.stat(f"/proc/{pid}/ns/net")
            if (st.st_dev, st.st_ino) != (want.st_dev, want.st_ino):
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        found.append(f"{pid} {cmd or '[kernel]'}")
    return sorted(found, key=lambda s: int(s.split()[0]))
