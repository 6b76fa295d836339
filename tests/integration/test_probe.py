"""lab.probe against small real labs built here with `ip` (not with podlab's planner).

Lab "small": node n1 with a bridge and pods p1..p4 on 10.250.0.0/24, node n2 with pod q1 on
10.250.1.0/24, the nodes joined by an underlay veth (192.168.250.0/24) and routing each other's
pod block, flannel host-gw style. p1 serves a page; q1 answers GET /clientip. Lab "big": two nodes
with 50 pods each, all 9,900 pod pairs probed at once. Every namespace carries a random prefix
and is removed in the fixture's finalizer, failure or not.
"""
from __future__ import annotations

import os
import secrets
import selectors
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from lab import probe
from lab.engine import netns
from lab.probe import Endpoint

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root to build namespaces")]

PAGE_PORT = 80
CLIENTIP_PORT = 8080


def ip(*args: str, stdin: str | None = None) -> None:
    proc = subprocess.run(["ip", *args], input=stdin, text=True, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}\n{stdin or ''}")


class TinyHttpServer:
    """An HTTP/1.0 server in one thread, listening in a pod's namespace: '/' and '/clientip'."""

    def __init__(self, ns: str, address: str, port: int, pod: str):
        self.pod = pod
        self.sock = netns.socket_in(ns, socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.sock.listen(1024)
        self.sock.setblocking(False)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, name=f"tiny-http-{pod}", daemon=True)
        self.thread.start()

    def _answer(self, request: bytes, client: tuple[str, int]) -> bytes:
        path = request.split(b" ", 2)[1].decode() if request.count(b" ") >= 2 else "/"
        if path == "/clientip":
            status, body = "200 OK", f"{client[0]}:{client[1]}"
        elif path == "/":
            status, body = "200 OK", f"Welcome to the home page of host {self.pod}!\n"
        else:
            status, body = "404 Not Found", "404 page not found\n"
        return (f"HTTP/1.0 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}").encode()

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ, None)
        buffers: dict[socket.socket, tuple[bytearray, tuple[str, int]]] = {}
        try:
            while not self.stopping.is_set():
                for key, _ in sel.select(0.05):
                    if key.data is None:
                        try:
                            conn, client = self.sock.accept()
                        except BlockingIOError:
                            continue
                        conn.setblocking(False)
                        buffers[conn] = (bytearray(), client)
                        sel.register(conn, selectors.EVENT_READ, "conn")
                        continue
                    conn = key.fileobj
                    buf, client = buffers[conn]
                    try:
                        data = conn.recv(4096)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    buf += data
                    if b"\r\n\r\n" in buf or not data:
                        if data:
                            conn.setblocking(True)
                            conn.sendall(self._answer(bytes(buf), client))
                        sel.unregister(conn)
                        del buffers[conn]
                        conn.close()
        finally:
            for conn in buffers:
                conn.close()
            sel.close()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()


@dataclass
class Lab:
    prefix: str
    uts_dir: Path
    names: list[str] = field(default_factory=list)          # every namespace made
    pods: list[Endpoint] = field(default_factory=list)
    nodes: list[Endpoint] = field(default_factory=list)
    servers: list[TinyHttpServer] = field(default_factory=list)

    def ns(self, short: str) -> str:
        return f"{self.prefix}{short}"

    def endpoint(self, name: str) -> Endpoint:
        return next(e for e in self.pods + self.nodes if e.name == name)

    def destroy(self) -> None:
        for server in self.servers:
            server.stop()
        for name in self.names:
            netns.remove(name, str(self.uts_dir / name))
        leftovers = [n for n in os.listdir(netns.NETNS_DIR) if n.startswith(self.prefix)]
        assert not leftovers, f"namespaces left behind: {leftovers}"


def pod_mac(k: int, j: int) -> str:
    return f"02:50:00:{k:02x}:{j >> 8:02x}:{j & 0xff:02x}"


def bridge_mac(k: int) -> str:
    return f"02:50:01:00:00:{k:02x}"


def underlay_mac(k: int) -> str:
    return f"02:50:02:00:00:{k:02x}"


def build(tmp: Path, pods_per_node: list[int], pod_names=None) -> Lab:
    """Nodes n1..nK (bridge br0, 10.250.<k>.1/24, underlay 192.168.250.<k+1>) with pods on them.

    Neighbours are static (`nud permanent`), as some CNIs install them: the kernel's ARP table
    is one table for all namespaces, and its gc_thresh3 (1024 by default, settable only from
    the root namespace) can be exhausted by other labs running on the same machine, which
    would make dynamic resolution fail with ENOBUFS here. Permanent entries are exempt.
    """
    lab = Lab(prefix=f"prt{secrets.token_hex(3)}-", uts_dir=tmp)
    node_names = [f"n{k + 1}" for k in range(len(pods_per_node))]
    pod_names = pod_names or [[f"p{k + 1}-{j + 1}" for j in range(count)] for k, count in enumerate(pods_per_node)]
    specs = [(lab.ns(n), n, str(tmp / lab.ns(n))) for n in node_names + [p for ps in pod_names for p in ps]]
    sysctls = {lab.ns(n): [("net.ipv4.ip_forward", "1", False)] for n in node_names}
    lab.names = [name for name, _, _ in specs]
    multi = len(node_names) > 1
    try:
        for created in netns.create(specs, sysctls).values():
            created.close()
        for k, node in enumerate(node_names):
            pods = pod_names[k]
            cmds = ["link set lo up", f"link add br0 address {bridge_mac(k)} type bridge",
                    f"addr add 10.250.{k}.1/24 dev br0", "link set br0 up"]
            for j, pod in enumerate(pods):
                cmds += [f"link add v{j} type veth peer name eth0 address {pod_mac(k, j)} netns {lab.ns(pod)}",
                         f"link set v{j} master br0", f"link set v{j} up",
                         f"neigh replace 10.250.{k}.{10 + j} lladdr {pod_mac(k, j)} dev br0 nud permanent"]
            ip("-n", lab.ns(node), "-batch", "-", stdin="\n".join(cmds) + "\n")
            lab.nodes.append(Endpoint(node, "node", node, lab.ns(node), IPv4Address(f"192.168.250.{k + 1}")))
            for j, pod in enumerate(pods):
                address = f"10.250.{k}.{10 + j}"
                cmds = ["link set lo up", f"addr add {address}/24 dev eth0", "link set eth0 up",
                        f"route add default via 10.250.{k}.1",
                        f"neigh replace 10.250.{k}.1 lladdr {bridge_mac(k)} dev eth0 nud permanent"]
                cmds += [f"neigh replace 10.250.{k}.{10 + o} lladdr {pod_mac(k, o)} dev eth0 nud permanent"
                         for o in range(len(pods)) if o != j]
                ip("-n", lab.ns(pod), "-batch", "-", stdin="\n".join(cmds) + "\n")
                lab.pods.append(Endpoint(pod, "pod", node, lab.ns(pod), IPv4Address(address)))
        if multi:
            # The underlay: a bridge "ul" in the first node, a veth to each other node.
            hub = lab.ns(node_names[0])
            cmds = [f"link add ul address {underlay_mac(0)} type bridge", "addr add 192.168.250.1/24 dev ul",
                    "link set ul up"]
            for k in range(1, len(node_names)):
                cmds += [f"link add u{k} type veth peer name eth0 address {underlay_mac(k)} netns {lab.ns(node_names[k])}",
                         f"link set u{k} master ul", f"link set u{k} up"]
            ip("-n", hub, "-batch", "-", stdin="\n".join(cmds) + "\n")
            for k, node in enumerate(node_names):
                dev = "ul" if k == 0 else "eth0"
                cmds = [] if k == 0 else [f"addr add 192.168.250.{k + 1}/24 dev eth0", "link set eth0 up"]
                for o in range(len(node_names)):
                    if o != k:
                        cmds += [f"neigh replace 192.168.250.{o + 1} lladdr {underlay_mac(o)} dev {dev} nud permanent",
                                 f"route add 10.250.{o}.0/24 via 192.168.250.{o + 1}"]
                ip("-n", lab.ns(node), "-batch", "-", stdin="\n".join(cmds) + "\n")
    except BaseException:
        lab.destroy()
        raise
    return lab


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uts")
    lab = build(tmp, [4, 1], pod_names=[["p1", "p2", "p3", "p4"], ["q1"]])
    try:
        p1, q1 = lab.endpoint("p1"), lab.endpoint("q1")
        lab.servers.append(TinyHttpServer(p1.netns, str(p1.ip), PAGE_PORT, "p1"))
        lab.servers.append(TinyHttpServer(q1.netns, str(q1.ip), CLIENTIP_PORT, "q1"))
        expect = "Welcome to the home page of host p1!"
        lab.pods = [Endpoint(p.name, p.kind, p.node, p.netns, p.ip,
                             http_port=PAGE_PORT if p.name == "p1" else None,
                             http_expect=expect if p.name == "p1" else None,
                             clientip_port=CLIENTIP_PORT if p.name == "q1" else None) for p in lab.pods]
        yield lab
    finally:
        lab.destroy()


def all_pairs(lab: Lab):
    return probe.expected_pairs(lab.pods, lab.nodes, [], outside_reaches_pods=False)


def test_every_path_passes_without_nat(small):
    pairs = all_pairs(small)
    results = probe.probe(pairs)
    print("\n" + probe.matrix(results, [e.name for e in small.pods + small.nodes]))
    assert len(pairs) == 5 * 4 + 2 * 5
    icmp = [r for r in results if r.proto == "icmp"]
    http = [r for r in results if r.proto == "http"]
    assert len(icmp) == len(pairs)
    assert len(http) == 4 + 4 + 2 * 2        # to p1 and to q1, from 4 pods each and from 2 nodes
    failed = [probe.describe(r) for r in results if not r.passed]
    assert not failed, failed
    for r in icmp:
        assert r.ok and r.seen_source == r.src_ip and not r.nat and r.rtt_ms is not None, r
    for r in http:
        assert r.ok, r
        if r.dst == "q1":
            assert r.seen_source == r.src_ip, r      # /clientip: the server saw the pod's own address
        else:
            assert r.seen_source is None
    assert probe.summary(results)["failed"] == 0


def test_http_checks_status_and_body(small):
    p2, p1, q1 = small.endpoint("p2"), small.endpoint("p1"), small.endpoint("q1")
    wrong_text = Endpoint("p1", "pod", "n1", p1.netns, p1.ip, http_port=PAGE_PORT, http_expect="not on the page")
    closed_port = Endpoint("p1", "pod", "n1", p1.netns, p1.ip, http_port=81)
    wrong_path = Endpoint("q1", "pod", "n2", q1.netns, q1.ip, http_port=CLIENTIP_PORT)   # "/" is fine too
    results = probe.probe([(p2, wrong_text, True), (p2, closed_port, True), (p2, wrong_path, True)],
                          protos=("http",))
    errors = [r.error for r in results]
    assert errors[0] == "body lacks 'not on the page'"
    assert errors[1] == "connection refused"
    assert results[2].ok


class ScriptedServer:
    """Answers every connection on a port with `pieces` (pausing between them), then closes,
    `hold` seconds later; with pieces=None it never even accepts (the kernel completes the
    handshake anyway)."""

    def __init__(self, ns: str, address: str, port: int, pieces: list[bytes] | None, pause: float = 0.0,
                 hold: float = 0.0):
        self.sock = netns.socket_in(ns, socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((address, port))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.pieces, self.pause, self.hold = pieces, pause, hold
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set() and self.pieces is not None:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.recv(4096)
                for i, piece in enumerate(self.pieces):
                    if i:
                        time.sleep(self.pause)
                    conn.sendall(piece)
                time.sleep(self.hold)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()


def test_http_answers_end_by_length_or_at_eof_and_silence_times_out(small):
    p1, p2 = small.endpoint("p1"), small.endpoint("p2")
    page = b"Welcome to the home page of host p2!\n"
    head = b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(page)
    servers = [ScriptedServer(p2.netns, str(p2.ip), 9001, None),
               ScriptedServer(p2.netns, str(p2.ip), 9002, [b"HTTP/1.0 200 OK\r\n\r\n" + page]),
               ScriptedServer(p2.netns, str(p2.ip), 9003, [head + page[:10], page[10:]], pause=0.3),
               ScriptedServer(p2.netns, str(p2.ip), 9004, [head + page], hold=2.0)]
    try:
        targets = [Endpoint("p2", "pod", "n1", p2.netns, p2.ip, http_port=port, http_expect=page.decode().strip())
                   for port in (9001, 9002, 9003, 9004)]
        results = probe.probe([(p1, t, True) for t in targets], protos=("http",), timeout=0.8)
    finally:
        for server in servers:
            server.stop()
    assert [(r.ok, r.error) for r in results] == [
        (False, "timeout waiting for the response"),   # connected, asked, never answered
        (True, None),                                  # no Content-Length: the answer ended at EOF
        (True, None),                                  # the body's second half came 0.3 s later
        (True, None)], results                         # whole by its Content-Length: no wait for EOF
    assert results[2].rtt_ms >= 250


def test_a_cut_link_fails_exactly_the_paths_through_it(small):
    p3 = small.endpoint("p3")
    node = small.ns("n1")
    ip("-n", node, "link", "set", "v2", "down")     # p3's cable, unplugged at the node's bridge
    try:
        pairs = all_pairs(small)
        start = time.monotonic()
        results = probe.probe(pairs, protos=("icmp",))
        print(f"\nwith one failing pod: {time.monotonic() - start:.2f} s")
        print(probe.matrix(results, [e.name for e in small.pods + small.nodes]))
        for r in results:
            through_p3 = p3.name in (r.src, r.dst)
            assert r.ok is not through_p3, r
            if through_p3:
                assert r.error == "timeout" and not r.passed, r
            else:
                assert r.passed and r.error is None, r
        text = probe.matrix(results, [e.name for e in small.pods + small.nodes])
        assert f"pod p3 (n1) -> {small.endpoint('p1').ip} (p1) icmp: timeout" in text
    finally:
        ip("-n", node, "link", "set", "v2", "up")
    results = probe.probe(all_pairs(small), protos=("icmp",))
    assert all(r.passed for r in results), [probe.describe(r) for r in results if not r.passed]


def test_masquerade_on_the_way_is_reported_as_nat(small):
    q1 = small.endpoint("q1")
    node = small.ns("n2")
    rules = (f"table ip podlab_probe_test {{\n  chain post {{\n    type nat hook postrouting priority 100;\n"
             f"    ip daddr {q1.ip} masquerade\n  }}\n}}\n")
    subprocess.run(["ip", "netns", "exec", node, "nft", "-f", "-"], input=rules, text=True, check=True)
    try:
        results = probe.probe(all_pairs(small))
        print("\n" + probe.matrix(results, [e.name for e in small.pods + small.nodes]))
        for r in results:
            if r.dst == "q1":
                # Masquerade turns every source into n2's address on q1's link: 10.250.1.1.
                assert r.ok and r.nat and not r.passed, r
                assert r.seen_source == "10.250.1.1", r
                assert r.error == "NAT: receiver saw 10.250.1.1", r
            else:
                assert r.passed and not r.nat, r
        assert probe.summary(results)["nat"] == 2 * 6      # icmp + http from p1..p4, n1, n2
        assert "N" in probe.matrix(results, [e.name for e in small.pods + small.nodes])
    finally:
        subprocess.run(["ip", "netns", "exec", node, "nft", "delete", "table", "ip", "podlab_probe_test"],
                       check=True)


def test_only_the_given_addresses_are_probed(small):
    # A pair to an address nobody has: only that pair fails, and only as a timeout or unreachable.
    p1 = small.endpoint("p1")
    ghost = Endpoint("ghost", "pod", "n1", small.ns("p2"), IPv4Address("10.250.0.250"))
    results = probe.probe([(p1, ghost, True), (p1, small.endpoint("p2"), True)], timeout=0.3)
    assert not results[0].ok and results[0].seen_source is None
    # ARP for .250 goes unanswered: a timeout; or, when other labs on this machine have filled
    # the kernel's one ARP table (gc_thresh3), the send itself is refused and said so.
    assert results[0].error in ("timeout", "no buffer space (neighbour table full?)") \
        or "unreachable" in results[0].error, results[0]
    assert results[1].passed


def test_100_pods_all_pairs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uts-big")
    start = time.monotonic()
    lab = build(tmp, [50, 50])
    try:
        built = time.monotonic() - start
        pairs = probe.expected_pairs(lab.pods, [], [], outside_reaches_pods=False)
        assert len(pairs) == 9900
        start = time.monotonic()
        results = probe.probe(pairs)
        took = time.monotonic() - start
        print(f"\nbuilt 102 namespaces in {built:.2f} s; probed {len(pairs)} ICMP pairs in {took:.3f} s")
        text = probe.matrix(results, [e.name for e in lab.pods])
        print(text)
        failed = [probe.describe(r) for r in results if not r.passed]
        assert not failed, failed[:20]
        assert all(r.seen_source == r.src_ip for r in results)
        assert any("pods on n1 -> pods on n2" in line and "2500/2500 passed" in line for line in text.splitlines())
        # A second run finds the neighbour caches warm.
        start = time.monotonic()
        results = probe.probe(pairs)
        print(f"second run: {time.monotonic() - start:.3f} s")
        assert all(r.passed for r in results)
    finally:
        lab.destroy()


def test_router_errors_and_missing_namespaces_are_reported_in_words(small):
    p1, p2 = small.endpoint("p1"), small.endpoint("p2")
    node = small.ns("n1")
    ip("-n", node, "route", "add", "unreachable", "10.250.7.0/24")
    try:
        nowhere = Endpoint("nowhere", "pod", "n9", small.ns("p2"), IPv4Address("10.250.7.5"))
        gone = Endpoint("gone", "pod", "n1", small.ns("gone"), IPv4Address("10.250.0.99"))
        results = probe.probe([(p1, nowhere, True), (gone, p1, True), (p1, p2, True)], protos=("icmp",))
    finally:
        ip("-n", node, "route", "del", "unreachable", "10.250.7.0/24")
    assert results[0].error == "host unreachable (from 10.250.0.1)", results[0]
    assert results[1].error == f"cannot open a socket in namespace {small.ns('gone')}: no such file or directory"
    assert results[2].passed


def test_host_network_endpoints_share_the_node_namespace(small):
    # A hostNetwork pod is the node's namespace and address: pairs to it from its own node go over lo.
    n1 = small.endpoint("n1")
    hostnet = Endpoint("hostnet", "pod", "n1", n1.netns, n1.ip)
    pairs = [(n1, hostnet, True), (hostnet, small.endpoint("p1"), True), (small.endpoint("q1"), hostnet, True)]
    results = probe.probe(pairs)
    assert [(r.src, r.dst, r.proto) for r in results] == \
        [("n1", "hostnet", "icmp"), ("hostnet", "p1", "icmp"), ("hostnet", "p1", "http"), ("q1", "hostnet", "icmp")]
    for r in results:
        assert r.passed, r
        assert r.seen_source == (None if r.proto == "http" else r.src_ip), r   # p1's page has no /clientip
