"""Helpers for exercise graders: real traffic and real kernel state of a running lab, in plain words.

    g = Grader(api.Lab("ex04"))
    g.expect_reach("web-2", "web-1")          # AssertionError: "pod web-2 on node2 cannot reach
                                              #  10.244.0.2 (pod web-1 on node1) over ICMP: node2 has
                                              #  no route to 10.244.0.0/24, node1's pod block"
    g.routes("node2"), g.neighbours("node1", "flannel.1"), g.fdb("node1"), g.sysctl("node2", "net.ipv4.ip_forward")
    g.http("client", "web", "/large?bytes=1000000", timeout=3).ok
    g.seen_source("client", "echo")           # the client address the echo server saw

Every answer comes from the kernel (lab.inspect) or from packets sent inside the lab's
namespaces (lab.probe, sockets made in a namespace); nothing here reads a file the student
can edit. A failure's message says what was tried, what happened, and the first thing in the
way that lab.packets' walk over the lab's kernel state finds, in the course's words
(lab.grading.diagnose).

Only errors that mean "the lab is in a state the question cannot be asked of" (PodlabError,
OSError: a namespace gone, a socket refused) become part of an answer; anything else is a bug
in podlab and is raised, so a grader reports it instead of failing the student.
"""
from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address, ip_interface, ip_network

from lab import api, calico_check, inspect, probe
from lab.engine import netns, nsexec
from lab.errors import PodlabError
from lab.grading import diagnose as dg
from lab.packets import calico, endpoints
from lab.packets.explain import explain, source_address
from lab.packets.trace import trace
from lab.packets.view import LiveView, longest_match

DEFAULT_TIMEOUT = 1.0
RETRY_PAUSE = 0.5
MAX_LISTED = 4


@dataclass
class Reach:
    """One attempt to reach a destination, and what came of it."""
    src: str                     # the sender's name in the lab
    src_desc: str                # "pod web-2 on node2"
    dst: str                     # the destination's name (or its address)
    dst_desc: str                # "pod web-1 on node1"
    dst_ip: str
    proto: str                   # "ICMP", "TCP port 80", "HTTP GET /"
    ok: bool
    error: str | None = None
    src_ip: str | None = None
    seen_source: str | None = None   # the source address the receiver saw, when it tells
    status: int | None = None        # HTTP status
    body: bytes = b""
    why: str | None = None           # the diagnosis, filled in on failure

    @property
    def nat(self) -> bool:
        return self.seen_source is not None and self.src_ip is not None and self.seen_source != self.src_ip

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def message(self) -> str:
        where = f"{self.dst_ip} ({self.dst_desc})" if self.dst_desc != self.dst_ip else self.dst_ip
        if self.ok:
            return f"{self.src_desc} reaches {where} over {self.proto}"
        said = f" ({self.error})" if self.error else ""
        line = f"{self.src_desc} cannot reach {where} over {self.proto}{said}"
        return f"{line}: {self.why}" if self.why else line


@dataclass
class Grader:
    """A running lab, seen the way a grader needs it."""
    lab: api.Lab
    timeout: float = DEFAULT_TIMEOUT
    _snaps: dict[str, inspect.Snapshot] = field(default_factory=dict, repr=False)
    _world: dg.World | None = field(default=None, repr=False)
    _view: LiveView | None = field(default=None, repr=False)      # one reading shared by a batch of diagnoses
    _whys: dict[tuple[str, str], str | None] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ who is who
    @property
    def topology(self):
        return self.lab.topology

    @property
    def addresses(self):
        return self.lab.addresses

    def target(self, name: str) -> api.Target:
        return self.lab.target(name)

    def pods(self, node: str | None = None) -> list[str]:
        return [p.name for p in self.addresses.pods if node is None or p.node == node]

    def workload_pods(self, node: str | None = None) -> list[str]:
        """The pods the design asked for: all but the cluster's own (kube-system's: the DNS pod)."""
        system = {p.name for p in self.topology.pods if p.namespace == "kube-system"}
        return [name for name in self.pods(node) if name not in system]

    def nodes(self) -> list[str]:
        return [n.name for n in self.addresses.nodes]

    def describe(self, name: str) -> str:
        t = self.target(name)
        return _describe_target(t, self.lab.design.backend.underlay_role)

    # ------------------------------------------------------------------ kernel state
    def refresh(self) -> None:
        """Forget what was read: the next question reads the kernel again."""
        self._snaps.clear()
        self._whys.clear()

    def snapshot(self, name: str) -> inspect.Snapshot:
        ns = self.target(name).netns
        if ns not in self._snaps:
            self._snaps[ns] = inspect.snapshot(ns)
        return self._snaps[ns]

    def links(self, name: str) -> list[inspect.Link]:
        return self.snapshot(name).links

    def link(self, name: str, dev: str) -> inspect.Link | None:
        return self.snapshot(name).link(dev)

    def mtu(self, name: str, dev: str) -> int | None:
        link = self.link(name, dev)
        return link.mtu if link else None

    def addresses_of(self, name: str, dev: str | None = None) -> list[str]:
        return [a.address for a in self.snapshot(name).addresses if dev is None or a.dev == dev]

    def ip_of(self, name: str, dev: str = "eth0") -> str | None:
        """The address a pod (or any namespace) really has on `dev`, from the kernel."""
        for a in self.addresses_of(name, dev):
            return str(ip_interface(a).ip)
        return None

    def routes(self, name: str, table: str = "main") -> list[inspect.Route]:
        return self.snapshot(name).routes_in(table)

    def route_to(self, name: str, ip: str) -> inspect.Route | None:
        """The route the kernel of `name` would pick for `ip` (longest prefix in main)."""
        return longest_match(self.snapshot(name), str(IPv4Address(ip)))

    def neighbours(self, name: str, dev: str | None = None) -> list[inspect.Neighbour]:
        return [n for n in self.snapshot(name).neighbours if dev is None or n.dev == dev]

    def fdb(self, name: str, dev: str | None = None) -> list[inspect.FdbEntry]:
        return [f for f in self.snapshot(name).fdb if dev is None or f.dev == dev]

    def sysctl(self, name: str, key: str) -> str | None:
        """Any sysctl of the namespace, e.g. net.ipv4.ip_forward (None if there is no such key)."""
        if not key or "/" in key or ".." in key:
            raise ValueError(f"invalid sysctl name {key!r}")
        path = "/proc/sys/" + key.replace(".", "/")

        def read() -> str | None:
            try:
                with open(path) as f:
                    return f.read().strip()
            except OSError:
                return None
        return netns.run_in(self.target(name).netns, read)

    def listening(self, name: str) -> set[int]:
        """TCP ports something listens on in the namespace (what `ss -ltn` shows)."""
        def read() -> set[int]:
            ports = set()
            for table in ("tcp", "tcp6"):
                try:
                    with open(f"/proc/thread-self/net/{table}") as f:
                        rows = f.read().splitlines()[1:]
                except OSError:
                    continue
                for row in rows:
                    cols = row.split()
                    if len(cols) > 3 and cols[3] == "0A":   # TCP_LISTEN
                        ports.add(int(cols[1].rsplit(":", 1)[1], 16))
            return ports
        return netns.run_in(self.target(name).netns, read)

    # ------------------------------------------------------------------ traffic
    def _endpoint(self, name: str) -> probe.Endpoint:
        pods, nodes, outside = probe.endpoints_from_plan(self.topology, self.addresses)
        for e in (*pods, *nodes, *outside):
            if e.name == name:
                return e
        t = self.target(name)
        if t.ip is None:
            raise PodlabError(f"{t.name} has no address of its own to send from or aim at")
        return probe.Endpoint(t.name, t.kind, t.node, t.netns, t.ip)

    def _dst(self, dst: str) -> tuple[str, str, str]:
        """(name, description, address) of a destination given by name or address."""
        try:
            ip = IPv4Address(dst)
        except ValueError:
            t = self.target(dst)
            if t.ip is None:
                raise PodlabError(f"{t.name} has no address of its own to aim at") from None
            return t.name, self.describe(t.name), str(t.ip)
        for t in self.lab.targets().values():
            if t.ip == ip:
                return t.name, self.describe(t.name), str(ip)
        return str(ip), str(ip), str(ip)

    def _reach(self, src: str, dst: str, proto: str, ok: bool = False, **kw) -> Reach:
        s = self.target(src)
        name, desc, ip = self._dst(dst)
        return Reach(s.name, self.describe(s.name), name, desc, ip, proto, ok=ok,
                     src_ip=str(s.ip) if s.ip else None, **kw)

    def ping(self, src: str, dst: str, size: int | None = None, timeout: float | None = None) -> Reach:
        """One ICMP echo. Without size: lab.probe, which also reports the source the receiver saw.
        With size: `ping -s SIZE -M do` (don't fragment), for MTU questions."""
        timeout = timeout or self.timeout
        if size is None:
            name, _, _ = self._dst(dst)
            if name in self.lab.targets():
                result = probe.probe([(self._endpoint(src), self._endpoint(name), True)], ("icmp",), timeout)[0]
                r = self._reach(src, dst, "ICMP", ok=result.ok, error=result.error, seen_source=result.seen_source)
                return self._explained(r)
        r = self._reach(src, dst, "ICMP" if size is None else f"ICMP ({size} bytes of data, don't fragment)")
        argv = ["ping", "-n", "-c", "1", "-W", str(max(1, round(timeout)))]
        if size is not None:
            argv += ["-s", str(int(size)), "-M", "do"]
        out = self.run(src, argv + [r.dst_ip], timeout=timeout + 5)
        r.ok = out.returncode == 0
        if not r.ok:
            said = [line.strip() for line in out.stderr.splitlines() if line.strip()]
            r.error = next((line for line in said if "mtu" in line.lower()), said[0] if said else "no reply")
            r.error = r.error.removeprefix("ping: ")
        return self._explained(r)

    def tcp(self, src: str, dst: str, port: int, timeout: float | None = None) -> Reach:
        """A TCP connection from inside `src`."""
        r = self._reach(src, dst, f"TCP port {port}")
        sock = self._socket(src, r.dst_ip)
        try:
            sock.settimeout(timeout or self.timeout)
            sock.connect((r.dst_ip, port))
            r.ok = True
        except OSError as e:
            r.error = _socket_error(e)
        finally:
            sock.close()
        return self._explained(r)

    def http(self, src: str, dst: str, path: str = "/", port: int = 80, timeout: float | None = None) -> Reach:
        """An HTTP/1.0 GET from inside `src`; ok only for a 200 with the whole body (Content-Length)."""
        r = self._reach(src, dst, f"HTTP GET {path}" + (f" (port {port})" if port != 80 else ""))
        deadline = time.monotonic() + (timeout or self.timeout)
        sock = self._socket(src, r.dst_ip)
        data = bytearray()
        try:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            sock.connect((r.dst_ip, port))
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {r.dst_ip}\r\nUser-Agent: podlab-grader\r\n\r\n".encode())
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                sock.settimeout(left)
                chunk = sock.recv(262144)
                if not chunk:
                    break
                data += chunk
                if _complete(bytes(data)):
                    break
        except OSError as e:
            r.error = _socket_error(e)
        finally:
            sock.close()
        head, sep, body = bytes(data).partition(b"\r\n\r\n")
        r.body = body
        status = head.split(b"\r\n", 1)[0].split()
        if len(status) >= 2 and status[1].isdigit():
            r.status = int(status[1])
        length = _content_length(head)
        if r.error and r.status is not None:
            r.error = (f"the answer stopped after {len(body)} of {length} bytes ({r.error})" if length is not None
                       else f"HTTP {r.status}, then {r.error}")
        elif r.error is None:
            if r.status is None:
                r.error = "no HTTP answer"
            elif r.status != 200:
                r.error = f"HTTP {r.status}"
            elif length is not None and len(body) < length:
                r.error = f"the answer stopped after {len(body)} of {length} bytes"
            else:
                r.ok = True
        return self._explained(r)

    def seen_source(self, src: str, dst: str, port: int = 8080) -> str | None:
        """The client address an echo server (echoserver/agnhost image) saw for a request from src."""
        r = self.http(src, dst, "/clientip", port=port)
        if not r.ok:
            raise AssertionError(r.message)
        host = r.text.strip().rpartition(":")[0]
        return host or None

    def reach(self, src: str, dst: str) -> list[Reach]:
        """ICMP, and HTTP where the destination serves it (nginx, echoserver), as `podlab check` does."""
        results = probe.probe([(self._endpoint(src), self._endpoint(dst), True)], timeout=self.timeout)
        return [self._explained(self._from_path(p)) for p in results]

    def run(self, name: str, argv: Sequence[str], timeout: float = 10.0) -> subprocess.CompletedProcess:
        """Run a program inside a lab object's namespaces (as `podlab exec` does); never a shell string."""
        t = self.target(name)
        try:
            return subprocess.run(nsexec.command(argv, t.netns, t.uts), capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(list(argv), 124, _text(e.stdout), _text(e.stderr) + "\ntimeout")
        except FileNotFoundError:
            return subprocess.CompletedProcess(list(argv), 127, "", f"{argv[0]}: command not found")

    def _socket(self, src: str, dst_ip: str) -> socket.socket:
        t = self.target(src)
        sock = netns.socket_in(t.netns, socket.AF_INET, socket.SOCK_STREAM)
        if t.ip is not None and not IPv4Address(dst_ip).is_loopback:
            try:
                sock.bind((str(t.ip), 0))
            except OSError:
                pass   # the address is gone (the student removed it): let the kernel choose
        return sock

    def _from_path(self, p: probe.PathResult) -> Reach:
        proto = "ICMP" if p.proto == "icmp" else "HTTP"
        r = self._reach(p.src, p.dst, proto, ok=p.ok and not p.nat, error=p.error, seen_source=p.seen_source)
        if p.nat:
            r.error = f"the receiver saw the source {p.seen_source}, not {p.src_ip}: something NATs this path"
        return r

    # ------------------------------------------------------------------ diagnosis
    def world(self) -> dg.World:
        """The lab's design as the diagnosis words it: names, pod blocks, veth cables."""
        if self._world is None:
            self._world = build_world(self.lab)
        return self._world

    def diagnose(self, src: str, dst: str) -> str | None:
        """The first thing in the way from src to dst (or back), from the kernel state; None if none found."""
        s = self.target(src)
        _, _, ip = self._dst(dst)
        if s.ip is None:
            return None
        view = self._view or LiveView(self.lab)
        try:
            src_ip = source_address(view, endpoints.End(s.name, str(s.ip), s.netns, s), ip)
            return dg.diagnose(view, self.world(), s.netns, src_ip, ip)
        except (PodlabError, OSError) as e:   # the lab's state defeats the walk: say so, keep the failure
            return f"(could not work out why: {e})"
        finally:
            if view is not self._view:
                view.close()

    @contextmanager
    def _one_reading(self) -> Iterator[None]:
        """Diagnoses inside share one reading of the kernel (and its netlink sockets, closed after)."""
        self._view = LiveView(self.lab)
        try:
            yield
        finally:
            self._view.close()
            self._view = None

    def explain(self, src: str, dst: str, proto: str = "icmp", port: int | None = None,
                size: int | None = None) -> str | None:
        """Where lab.packets' walk (`podlab explain`) says a packet is dropped, in words; None when it
        is delivered, or when the lab's state cannot be walked (a hint must not hide the failure)."""
        try:
            walked = explain(self.lab, src, self._dst(dst)[2], proto=proto, port=port, size=size)
        except (PodlabError, OSError):
            return None
        if not walked.reason:
            return None
        where = walked.where
        if walked.verdict == "delivered":
            return f"the reply is dropped at {where}: {walked.reason}" if where else \
                f"the reply is dropped: {walked.reason}"
        return f"dropped at {where}: {walked.reason}" if where else walked.reason

    def trace(self, src: str, dst: str, proto: str = "icmp", port: int | None = None, size: int | None = None):
        """The trace of one real, marked packet (lab.packets' `podlab trace`): a Trace with .verdict,
        .where, .reason and .hops."""
        return trace(self.lab, src, self._dst(dst)[2], proto=proto, port=port, size=size)

    def _explained(self, r: Reach, refresh: bool = True) -> Reach:
        """Fill in why a failed attempt failed, from the kernel state as it is now."""
        if not r.ok and r.why is None:
            if refresh:
                self.refresh()
            key = (r.src, r.dst_ip)
            if key not in self._whys:
                self._whys[key] = self.diagnose(r.src, r.dst_ip)
            r.why = self._whys[key]
        return r

    def block_of(self, node: str):
        """The node's pod block, by the lab's design (what the route should cover)."""
        return self.addresses.node(self.target(node).name).block

    # ------------------------------------------------------------------ assertions
    def expect_route(self, name: str, dst: str, via: str | None = None, dev: str | None = None,
                     what: str | None = None) -> inspect.Route:
        """Assert that `name`'s kernel routes `dst` (an address or a prefix; for a prefix its first and
        last host) via `via` (an address or a lab object's name) and/or out of `dev`."""
        net = ip_network(dst, strict=False)
        probes = [net.network_address] if net.num_addresses == 1 else [net[1], net[-2]]
        label = what or self._world_blocks_label(net)
        who = self.describe(name)
        gateway = str(self._dst(via)[2]) if via else None
        chosen = None
        for ip in probes:
            route = longest_match(self.snapshot(name), str(ip))
            if route is None or route.type != "unicast":
                kind = f"a {route.type} route" if route is not None else "no route"
                raise AssertionError(f"{who} has {kind} to {label}")
            if gateway and route.gateway != gateway:
                how = f"via {route.gateway}" if route.gateway else f"straight out of {route.dev} (no gateway)"
                raise AssertionError(f"{who} sends {label} {how} (route {route.dst}), "
                                     f"but it should go via {gateway}" + (f" ({via})" if via != gateway else ""))
            if dev and route.dev != dev:
                raise AssertionError(f"{who} sends {label} out of {route.dev} (route {route.dst}), "
                                     f"but it should leave through {dev}")
            chosen = route
        assert chosen is not None
        return chosen

    def _world_blocks_label(self, net) -> str:
        for n in self.addresses.nodes:
            if net == n.block:
                return f"{net}, {n.name}'s pod block"
        return str(net)

    def expect_reach(self, src: str, dst: str, proto: str = "icmp", **kw) -> Reach:
        """Assert one path works: proto icmp | tcp (port=) | http (path=, port=). Returns the Reach."""
        proto = proto.lower()
        if proto == "icmp":
            r = self.ping(src, dst, **kw)
        elif proto == "tcp":
            r = self.tcp(src, dst, **kw)
        elif proto == "http":
            r = self.http(src, dst, **kw)
        else:
            raise ValueError(f"unknown protocol {proto!r}: icmp, tcp or http")
        if not r.ok:
            raise AssertionError(r.message)
        return r

    def expect_no_nat(self, src: str, dst: str) -> None:
        """Assert the receiver saw src's own address (over ICMP; over HTTP too if dst runs an echo server)."""
        r = self.ping(src, dst)
        if not r.ok:
            raise AssertionError(r.message)
        if r.nat:
            raise AssertionError(f"{r.dst_desc} saw the ping come from {r.seen_source}, not from {r.src_ip} "
                                 f"({r.src_desc}): the address was rewritten (NAT) on the way")

    def check_paths(self, pairs: Iterable[tuple[str, str]], protos: Sequence[str] = ("icmp", "http")) -> list[Reach]:
        """Probe many paths at once (lab.probe); returns the failures, each with its diagnosis."""
        return self._probe_paths(pairs, protos)[0]

    def _probe_paths(self, pairs: Iterable[tuple[str, str]], protos: Sequence[str]) -> tuple[list[Reach], int]:
        """(the failures, explained; how many probes were sent)."""
        pairs = list(pairs)
        eps = {n: self._endpoint(n) for pair in pairs for n in pair}
        results = probe.probe([(eps[a], eps[b], True) for a, b in pairs], protos=protos, timeout=self.timeout)
        bad = {(p.src, p.dst) for p in results if not p.passed or p.nat}
        if bad:
            # Once more for what failed: right after a fix, neighbour entries that failed to
            # resolve need a moment, and a grader must not fail a student on a lost first packet.
            time.sleep(RETRY_PAUSE)
            again = probe.probe([(eps[a], eps[b], True) for a, b in pairs if (a, b) in bad], protos=protos,
                                timeout=2 * self.timeout)
            retried = {(p.src, p.dst, p.proto): p for p in again}
            results = [retried.get((p.src, p.dst, p.proto), p) for p in results]
        failed = [self._from_path(p) for p in results if not p.passed or p.nat]
        if not failed:
            return [], len(results)
        self.refresh()      # once: every failure is explained from the same reading of the kernel
        with self._one_reading():
            return [self._explained(r, refresh=False) for r in failed], len(results)

    def expect_paths(self, pairs: Iterable[tuple[str, str]], protos: Sequence[str] = ("icmp", "http"),
                     what: str = "paths") -> None:
        """Assert every (src, dst) path works, listing the failures in words."""
        failed, total = self._probe_paths(pairs, protos)
        if failed:
            raise AssertionError(summarize(failed, total, what))

    def expect_pods_reach_each_other(self, protos: Sequence[str] = ("icmp", "http")) -> None:
        """The Kubernetes network model: every pod reaches every other pod, without NAT."""
        pods = [p.name for p in self.addresses.pods]
        self.expect_paths([(a, b) for a in pods for b in pods if a != b], protos, "paths between pods")

    # ------------------------------------------------------------------ Calico
    def calico_findings(self) -> list[str]:
        """What 'podlab check' finds wrong with a Calico lab's dataplane, one sentence each."""
        return calico_check.read(self.lab) or []

    def _calico_facts(self) -> calico.Facts:
        facts = calico.facts_of(self.lab)
        if facts is None:
            raise AssertionError(f"lab {self.lab.name} is not a Calico lab (its design is {self.lab.design.name})")
        return facts

    def expect_bgp_established(self, wait: float = 10.0) -> None:
        """Assert that every node's BIRD runs with the cluster's AS and has every BGP session
        Established. Sessions that are down only while BIRD reconnects get `wait` seconds; a BIRD
        that is not running or a wrong AS fails at once."""
        facts = self._calico_facts()
        deadline = time.monotonic() + wait
        while True:
            reports, local_as, cluster_as = calico_check.bgp_state(self.lab)
            problems = calico_check.bgp_findings(facts, reports, local_as, cluster_as)
            if not problems:
                return
            stuck = any(r.get("error") for r in reports) or any(a != cluster_as for a in local_as.values())
            if stuck or time.monotonic() >= deadline:
                raise AssertionError("; ".join(problems))
            time.sleep(RETRY_PAUSE)

    def expect_blocks_learned(self, wait: float = 2.0) -> None:
        """Assert that every node holds every other node's block as BIRD installed it (proto bird),
        giving BIRD `wait` seconds to write what its sessions learned."""
        self._expect_settled(lambda view, facts: calico_check.block_findings(view, facts), wait)

    def expect_proxy_arp(self) -> None:
        """Assert that every pod's cali interface answers ARP by proxy (proxy_arp = 1)."""
        self._expect_settled(lambda view, facts: calico_check.proxy_arp_findings(view, facts), 0.0)

    def _expect_settled(self, problems_of, wait: float) -> None:
        facts = self._calico_facts()
        deadline = time.monotonic() + wait
        while True:
            view = LiveView(self.lab)
            try:
                problems = problems_of(view, facts)
            finally:
                view.close()
            if not problems:
                return
            if time.monotonic() >= deadline:
                raise AssertionError("; ".join(problems))
            time.sleep(RETRY_PAUSE)


def summarize(failed: Sequence[Reach], total: int, what: str = "paths") -> str:
    """'3 of 8 paths between pods fail:', then each failing pair (its protocols merged) grouped by
    the diagnosis they share, so one missing route reads once, not once per packet."""
    if total <= 1 and len(failed) == 1:
        return failed[0].message
    pairs: dict[tuple[str, str], list[Reach]] = {}
    for r in failed:
        pairs.setdefault((r.src, r.dst), []).append(r)
    by_why: dict[str | None, list[list[Reach]]] = {}
    for rs in pairs.values():
        by_why.setdefault(rs[0].why, []).append(rs)
    lines = [f"{len(failed)} of {total} {what} fail:"]
    shown = 0
    for why, groups in by_why.items():
        for rs in groups[:MAX_LISTED]:
            r = rs[0]
            where = f"{r.dst_ip} ({r.dst_desc})" if r.dst_desc != r.dst_ip else r.dst_ip
            how = "; ".join(f"{x.proto}: {x.error or 'failed'}" for x in rs)
            lines.append(f"  {r.src_desc} cannot reach {where}: {how}")
            shown += 1
        if len(groups) > MAX_LISTED:
            lines.append(f"  ... and {len(groups) - MAX_LISTED} more like these")
        if why:
            lines.append(f"  why: {why}")
    return "\n".join(lines)


def build_world(lab: api.Lab) -> dg.World:
    """The diagnosis' words for a lab: every namespace named after the design, its veth cables."""
    a, topo = lab.addresses, lab.topology
    names: dict[str, str] = {a.underlay_netns: lab.design.backend.underlay_role}
    wires: dict[dg.Dev, dg.Dev] = {}
    cable_of: dict[dg.Dev, str] = {}
    bridge_of: dict[dg.Dev, str] = {}

    def cable(one: dg.Dev, other: dg.Dev) -> None:
        wires[one], wires[other] = other, one

    for n in a.nodes:
        names[n.netns] = n.name
    for h in a.outside:
        names[h.netns] = f"outside host {h.name}"
    for machine in (*a.nodes, *a.outside):
        uplink, port = (machine.netns, "eth0"), (a.underlay_netns, machine.name)
        cable(uplink, port)
        cable_of[uplink] = f"{machine.name}'s uplink"
        cable_of[port] = f"the switch port of {machine.name}"
        bridge_of[port] = "br0"
        if lab.design.backend.shared_segment and machine in a.nodes:
            bridge_of[uplink] = topo.bridge
    for p in a.pods:
        if p.host_network or p.veth is None:
            continue
        node = a.node(p.node)
        names[p.netns] = f"pod {p.name}"
        inside, host = (p.netns, "eth0"), (node.netns, p.veth)
        cable(inside, host)
        cable_of[inside] = f"pod {p.name}'s eth0"
        cable_of[host] = f"pod {p.name}'s host end"
        bridge_of[host] = topo.bridge
    return dg.World(names=names, wires=wires, cable_of=cable_of, bridge_of=bridge_of,
                    blocks={n.name: n.block for n in a.nodes})


def _describe_target(t: api.Target, underlay_role: str) -> str:
    if t.kind == "pod":
        return f"pod {t.name} on {t.node}" if t.node else f"pod {t.name}"
    if t.kind == "outside":
        return f"outside host {t.name}"
    if t.kind == "underlay":
        return underlay_role
    return t.name


def _complete(data: bytes) -> bool:
    """The whole answer is in: headers and Content-Length bytes of body (no need to wait for the close)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    length = _content_length(head) if sep else None
    return length is not None and len(body) >= length


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return int(value.strip())
    return None


def _socket_error(e: OSError) -> str:
    if isinstance(e, (TimeoutError, socket.timeout)):
        return "timeout"
    return probe.errno_text(e.errno) if e.errno else str(e)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", "replace")
