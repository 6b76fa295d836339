"""Reachability probes: the Kubernetes network model as a pass/fail matrix, in one process.

ICMP: one raw ICMP socket per (namespace, address) taking part, made inside its namespace and
bound to the endpoint's address. It sends the echo requests of the sources there and, because a
raw socket gets a copy of every ICMP packet delivered to its address, it is also the observer of
the targets there: the echo request's source address, as the receiver saw it, proves (or
disproves) that nothing NATed the path. No ping process, no server. Each pair is one echo
request: identifier = a random per-run base + index // 65536, sequence = index % 65536, and the
payload carries a random run tag and the index again (NAT may rewrite the identifier, never
the payload), so strays and other pings are ignored.

HTTP: non-blocking TCP connects from sockets made in the source's namespace, at most
HTTP_CONCURRENCY at once. A target running the echo workload answers GET /clientip with
"<ip>:<port>" as it saw the client, which gives the same no-NAT proof for TCP.

Only the target addresses given are ever sent to; the root namespace is never used.
"""
from __future__ import annotations

import errno
import functools
import itertools
import os
import random
import resource
import selectors
import socket
import struct
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address

from lab.addressing import AddressPlan
from lab.engine import netns as nsmod
from lab.model import Topology

PROTOS = ("icmp", "http")
HTTP_CONCURRENCY = 256
HTTP_MAX_RESPONSE = 256 * 1024
GRID_LIMIT = 30                  # more endpoints than this: a per-node summary instead of a grid
FAILURE_LIST_LIMIT = 60
SOCKET_BUFFER = 4 * 1024 * 1024  # raw sockets hold a burst of replies while we are still sending
SEND_CHUNK = 128                 # sends per socket between two looks at the receive queues

ICMP_ECHO_REPLY, ICMP_DEST_UNREACH, ICMP_ECHO, ICMP_TIME_EXCEEDED = 0, 3, 8, 11
SOL_RAW, ICMP_FILTER = 255, 1
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
MAGIC = b"podlab-probe"
UNREACHABLE = {0: "network unreachable", 1: "host unreachable", 2: "protocol unreachable",
               3: "port unreachable", 4: "fragmentation needed", 9: "network administratively prohibited",
               10: "host administratively prohibited", 13: "administratively prohibited"}


@dataclass(frozen=True)
class Endpoint:
    """Something that sends or receives: a pod, a node or an outside host."""
    name: str
    kind: str                        # "pod" | "node" | "outside"
    node: str | None                 # the pod's node; the node itself for nodes; None for outside hosts
    netns: str                       # namespace under /run/netns (hostNetwork pods: the node's)
    ip: IPv4Address
    http_port: int | None = None     # a port serving HTTP, if any
    http_expect: str | None = None   # text the page must contain
    clientip_port: int | None = None  # echo workload port answering GET /clientip, if any

    @property
    def serves_http(self) -> bool:
        return self.http_port is not None or self.clientip_port is not None


@dataclass(frozen=True)
class PathResult:
    src: str
    dst: str
    proto: str                       # "icmp" | "http"
    ok: bool
    expected: bool                   # whether the network model requires this path to work
    seen_source: str | None          # the source address the receiver saw
    src_ip: str                      # the sender's address: seen_source must equal it (no NAT)
    rtt_ms: float | None
    error: str | None
    dst_ip: str = ""
    src_kind: str = "pod"
    src_node: str | None = None
    dst_kind: str = "pod"
    dst_node: str | None = None

    @property
    def nat(self) -> bool:
        return self.seen_source is not None and self.seen_source != self.src_ip

    @property
    def passed(self) -> bool:
        """An expected path must work without NAT; a path the model does not require is informational."""
        return (self.ok and not self.nat) if self.expected else True


Pair = tuple[Endpoint, Endpoint, bool]


# ---------------------------------------------------------------- pairs

def expected_pairs(pods: Sequence[Endpoint], nodes: Sequence[Endpoint], outside: Sequence[Endpoint],
                   outside_reaches_pods: bool) -> list[Pair]:
    """The paths the Kubernetes network model requires.

    Every pod reaches every other pod, on its node and across nodes, without NAT; every node
    reaches every pod (the model requires its own node's pods; every podlab mode routes the
    others too). Outside hosts appear only when the design says they reach pods (seed 000's
    VPC routes); otherwise they are left out rather than expected to fail.
    """
    pairs: list[Pair] = [(a, b, True) for a in pods for b in pods if a.name != b.name]
    pairs += [(n, p, True) for n in nodes for p in pods]
    if outside_reaches_pods:
        pairs += [(h, p, True) for h in outside for p in pods]
    return pairs


def endpoints_from_plan(topo: Topology, plan: AddressPlan) -> tuple[list[Endpoint], list[Endpoint], list[Endpoint]]:
    """(pods, nodes, outside) Endpoints of a lab, with the built-in workloads' HTTP ports.

    Ports follow the workloads' conventions: nginx-like "http" on its first port (80), the
    echo workload (agnhost netexec) on its first port (8080), answering /clientip.
    """
    nodes = [Endpoint(n.name, "node", n.name, n.netns, n.ip) for n in plan.nodes]
    by_name = {p.name: p for p in topo.pods}
    pods = []
    for addr in plan.pods:
        http_port = http_expect = clientip_port = None
        for c in by_name[addr.name].containers:
            if c.workload == "http" and http_port is None:
                http_port = c.ports[0] if c.ports else 80
                http_expect = f"Welcome to the home page of host {addr.name}!"
            elif c.workload == "echo" and clientip_port is None:
                clientip_port = c.ports[0] if c.ports else 8080
        pods.append(Endpoint(addr.name, "pod", addr.node, addr.netns, addr.ip,
                             http_port, http_expect, clientip_port))
    outside = [Endpoint(h.name, "outside", None, h.netns, h.ip) for h in plan.outside]
    return pods, nodes, outside


# ---------------------------------------------------------------- ICMP packets

_text = functools.lru_cache(maxsize=1 << 16)(str)   # IPv4Address -> "10.244.0.3", once per address


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071).

    The ones' complement sum of 16-bit words is the number the bytes spell modulo 0xFFFF
    (2**16 = 1 mod 0xFFFF), with 0xFFFF standing for zero when any bit is set.
    """
    if len(data) % 2:
        data += b"\0"
    total = int.from_bytes(data, "big") % 0xFFFF
    if total == 0 and any(data):
        total = 0xFFFF
    return ~total & 0xFFFF


def build_echo(ident: int, seq: int, payload: bytes) -> bytes:
    """An ICMP echo request (type 8): header with checksum, then the payload."""
    head = struct.pack("!BBHHH", ICMP_ECHO, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ICMP_ECHO, 0, checksum(head + payload), ident, seq) + payload


@dataclass(frozen=True)
class IcmpPacket:
    src: str
    dst: str
    type: int
    code: int
    ident: int
    seq: int
    payload: bytes
    checksum_ok: bool = True
    quoted: IcmpPacket | None = None   # for errors: the echo request they quote


def parse_packet(data: bytes, _quoted: bool = False) -> IcmpPacket | None:
    """Parse an IPv4 packet as a raw socket returns it; None unless it is ICMP we can read."""
    if len(data) < 20 or data[0] >> 4 != 4 or data[9] != socket.IPPROTO_ICMP:
        return None
    ihl = (data[0] & 0x0F) * 4
    icmp = data[ihl:]
    if len(icmp) < 8:
        return None
    kind, code, _sum, ident, seq = struct.unpack_from("!BBHHH", icmp)
    src, dst = socket.inet_ntoa(data[12:16]), socket.inet_ntoa(data[16:20])
    quoted = None
    if not _quoted and kind in (ICMP_DEST_UNREACH, ICMP_TIME_EXCEEDED):
        quoted = parse_packet(icmp[8:], _quoted=True)
    # A quoted packet may be cut short, so its checksum cannot be checked.
    ok = True if _quoted else checksum(icmp) == 0
    return IcmpPacket(src, dst, kind, code, ident, seq, icmp[8:], ok, quoted)


# ---------------------------------------------------------------- sockets

def _raise_nofile(needed: int) -> None:
    """Let the process hold `needed` more descriptors (raw sockets per namespace, HTTP connections)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 64
    want = in_use + needed + 64
    if want <= soft:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
    except (ValueError, OSError):
        if hard > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _bind_or_not(sock: socket.socket, ip: str | None) -> None:
    """Send from the endpoint's own address (a node has several: the bridge's, the underlay's)."""
    if ip is None:
        return
    try:
        sock.bind((ip, 0))
    except OSError as e:
        if e.errno != errno.EADDRNOTAVAIL:
            raise
        # The address is not in that namespace (someone removed it): send from whatever the
        # routes pick, and the receiver will report the difference.


def _sockets_in(name: str, kind: int, proto: int, ips: Sequence[str | None]) -> list[socket.socket]:
    """Sockets made (and bound) in namespace `name`, one helper thread for all of them."""
    def make() -> list[socket.socket]:
        made: list[socket.socket] = []
        try:
            for ip in ips:
                s = socket.socket(socket.AF_INET, kind, proto)
                made.append(s)
                _bind_or_not(s, ip)
                s.setblocking(False)
        except BaseException:
            for s in made:
                s.close()
            raise
        return made
    return nsmod.run_in(name, make)


def _tune_raw(sock: socket.socket) -> None:
    # IP_RECVERR: sendto reports ENOBUFS (a full neighbour table) instead of dropping silently.
    sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
    # Only echo, echo reply and the errors that quote a request: nothing else wakes us.
    wanted = (ICMP_ECHO_REPLY, ICMP_ECHO, ICMP_DEST_UNREACH, ICMP_TIME_EXCEEDED)
    sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("I", 0xFFFFFFFF & ~sum(1 << t for t in wanted)))
    for force, plain in ((getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF),
                         (getattr(socket, "SO_SNDBUFFORCE", 32), socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, SOCKET_BUFFER)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, SOCKET_BUFFER)


def _drain_errors(sock: socket.socket) -> None:
    """Empty the error queue IP_RECVERR fills, so it never eats the receive buffer."""
    for _ in range(1024):
        try:
            sock.recvmsg(1, 1024, socket.MSG_ERRQUEUE)
        except OSError:
            return


def _check_privilege(e: OSError) -> None:
    """Not being root fails every pair alike: say so once instead of drawing a matrix of ✗."""
    if e.errno in (errno.EPERM, errno.EACCES):
        raise PermissionError(e.errno, "probing needs root: it opens raw sockets inside the lab's "
                                       f"network namespaces ({e.strerror})") from e


def _errno_text(code: int) -> str:
    return {errno.ECONNREFUSED: "connection refused", errno.ETIMEDOUT: "timeout",
            errno.EHOSTUNREACH: "host unreachable", errno.ENETUNREACH: "network unreachable",
            errno.ECONNRESET: "connection reset", errno.EADDRNOTAVAIL: "address not available",
            errno.EPERM: "operation not permitted", errno.EACCES: "permission denied",
            errno.ENOBUFS: "no buffer space (neighbour table full?)",
            }.get(code, os.strerror(code).lower())


# ---------------------------------------------------------------- ICMP probing

@dataclass
class _IcmpOutcome:
    ok: bool = False
    seen: str | None = None
    rtt_ms: float | None = None
    error: str | None = None


def _probe_icmp(pairs: Sequence[Pair], timeout: float) -> list[_IcmpOutcome]:
    n = len(pairs)
    out = [_IcmpOutcome() for _ in range(n)]
    if not n:
        return out
    tag = MAGIC + os.urandom(8)
    ident_count = (n - 1) // 65536 + 1
    if ident_count > 65536:
        raise ValueError(f"{n} pairs is more than one ICMP probe run can number")
    base = random.randrange(0, 65536 - ident_count + 1)

    keys = sorted({(e.netns, _text(e.ip)) for s, d, _ in pairs for e in (s, d)})
    _raise_nofile(len(keys))
    socks: dict[tuple[str, str], socket.socket] = {}
    sel = selectors.DefaultSelector()
    unusable: dict[str, str] = {}
    try:
        for name, group in itertools.groupby(keys, key=lambda k: k[0]):
            ips = [ip for _, ip in group]
            try:
                made = _sockets_in(name, socket.SOCK_RAW, socket.IPPROTO_ICMP, ips)
            except OSError as e:
                _check_privilege(e)
                unusable[name] = f"cannot open a socket in namespace {name}: {_errno_text(e.errno or 0)}"
                continue
            for ip, s in zip(ips, made):
                socks[(name, ip)] = s
                _tune_raw(s)
                sel.register(s, selectors.EVENT_READ, (name, ip))
        # A source whose namespace is gone cannot send; a target's only loses its observer.
        todo = []
        for i, (src, _, _) in enumerate(pairs):
            if src.netns in unusable:
                out[i].error = unusable[src.netns]
            else:
                todo.append(i)
        _icmp_loop(pairs, todo, out, socks, sel, tag, base, timeout)
    finally:
        sel.close()
        for s in socks.values():
            s.close()
    return out


def _icmp_loop(pairs: Sequence[Pair], todo: Sequence[int], out: list[_IcmpOutcome],
               socks: dict[tuple[str, str], socket.socket],
               sel: selectors.BaseSelector, tag: bytes, base: int, timeout: float) -> None:
    n = len(pairs)
    sent_at = [0.0] * n
    waiting: set[int] = set()          # sent and neither answered nor refused yet
    queues: dict[tuple[str, str], deque[int]] = defaultdict(deque)

    def enqueue(indexes: Iterable[int]) -> None:
        for i in indexes:
            src = pairs[i][0]
            queues[(src.netns, _text(src.ip))].append(i)
            waiting.add(i)

    def flush() -> tuple[bool, bool]:
        """Send up to SEND_CHUNK requests per socket: (more are queued, something was sent)."""
        more = sent_any = False
        for key, queue in queues.items():
            sock = socks[key]
            for _ in range(min(SEND_CHUNK, len(queue))):
                i = queue[0]
                packet = build_echo(base + (i >> 16), i & 0xFFFF, tag + struct.pack("!I", i))
                try:
                    sock.sendto(packet, (_text(pairs[i][1].ip), 0))
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as e:
                    out[i].error = _errno_text(e.errno or 0)
                    if e.errno != errno.ENOBUFS:
                        waiting.discard(i)   # refused outright; ENOBUFS may pass in the retry round
                else:
                    sent_at[i] = time.monotonic()
                    sent_any = True
                queue.popleft()
            more = more or bool(queue)
        return more, sent_any

    def index_of(ident: int, seq: int, payload: bytes) -> int | None:
        # The payload's index is the authority: NAT may rewrite the identifier (masquerade
        # does, to keep conntrack tuples apart), never the payload. A quote in an ICMP error
        # may be cut short of it; then identifier and sequence say which pair it was.
        if len(payload) >= len(tag) + 4 and payload.startswith(tag):
            i = struct.unpack_from("!I", payload, len(tag))[0]
            return i if i < n else None
        i = ((ident - base) << 16) + seq
        return i if 0 <= ident - base and i < n and not payload else None

    def handle(data: bytes, netns_name: str, now: float) -> bool:
        pkt = parse_packet(data)
        if pkt is None or not pkt.checksum_ok:
            return False
        if pkt.type == ICMP_ECHO:
            i = index_of(pkt.ident, pkt.seq, pkt.payload)
            if i is not None and pairs[i][1].netns == netns_name and out[i].seen is None:
                out[i].seen = pkt.src
            return i is not None
        if pkt.type == ICMP_ECHO_REPLY:
            i = index_of(pkt.ident, pkt.seq, pkt.payload)
            if i is not None and pairs[i][0].netns == netns_name and not out[i].ok:
                out[i].ok, out[i].error = True, None
                out[i].rtt_ms = (now - sent_at[i]) * 1000.0
                waiting.discard(i)
            return i is not None
        q = pkt.quoted
        if q is not None and q.type == ICMP_ECHO:
            i = index_of(q.ident, q.seq, q.payload if len(q.payload) >= len(tag) + 4 else b"")
            if i is not None and pairs[i][0].netns == netns_name and not out[i].ok \
                    and q.dst == _text(pairs[i][1].ip):
                reason = UNREACHABLE.get(pkt.code, f"unreachable code {pkt.code}") \
                    if pkt.type == ICMP_DEST_UNREACH else "TTL exceeded"
                out[i].error = f"{reason} (from {pkt.src})"
                waiting.discard(i)
                return True
        return False

    # One retry round for what is still silent, once the first round goes quiet (first packets
    # lost while ARP resolves) or its time is up; late answers to the first round still count.
    # ICMP errors and refused sends are answers, not retried.
    quiet = min(0.2, timeout / 4)
    enqueue(todo)
    last_activity = time.monotonic()
    deadline = last_activity + timeout
    retried = False
    while True:
        more, sent_any = flush()
        now = time.monotonic()
        if sent_any:
            last_activity = now
            deadline = max(deadline, now + timeout)
        if not waiting and not more:
            break
        if not more and (now >= deadline or (not retried and now - last_activity >= quiet)):
            if retried:
                break
            retried = True
            enqueue(sorted(waiting))
            deadline = now + timeout
            continue
        until = deadline if retried else min(deadline, last_activity + quiet)
        wait = 0.0 if more else min(max(0.0, until - now) + 0.001, 0.05)
        for key, _ in sel.select(wait):
            sock, name = key.fileobj, key.data[0]
            errors = 0
            while True:
                try:
                    data = sock.recv(65535)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    # IP_RECVERR's report of an ICMP error (the ICMP packet itself arrives too).
                    _drain_errors(sock)
                    errors += 1
                    if errors > 64:
                        break
                    continue
                if handle(data, name, time.monotonic()):
                    last_activity = time.monotonic()
    for i in todo:
        if not out[i].ok and out[i].error is None:
            out[i].error = "timeout"


# ---------------------------------------------------------------- HTTP probing

@dataclass
class _Request:
    pair: int
    src: Endpoint
    dst: Endpoint
    port: int
    path: str
    expect: str | None
    clientip: bool
    sock: socket.socket | None = None
    started: float = 0.0
    deadline: float = 0.0
    outgoing: bytes = b""
    incoming: bytearray = field(default_factory=bytearray)
    ok: bool = False
    seen: str | None = None
    rtt_ms: float | None = None
    error: str | None = None


def _requests_for(i: int, src: Endpoint, dst: Endpoint) -> list[_Request]:
    reqs = []
    if dst.http_port is not None:
        reqs.append(_Request(i, src, dst, dst.http_port, "/", dst.http_expect, False))
    if dst.clientip_port is not None:
        reqs.append(_Request(i, src, dst, dst.clientip_port, "/clientip", None, True))
    return reqs


def _finish_http(req: _Request, now: float) -> None:
    req.rtt_ms = (now - req.started) * 1000.0
    head, sep, body = bytes(req.incoming).partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = bytes(req.incoming).partition(b"\n\n")
    status_line = head.split(b"\n", 1)[0].decode("latin-1").strip()
    parts = status_line.split()
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        req.error = "no HTTP response" if not req.incoming else f"bad HTTP response {status_line[:40]!r}"
        return
    if parts[1] != "200":
        req.error = f"HTTP {parts[1]}"
        return
    text = body.decode("utf-8", "replace")
    if req.expect is not None and req.expect not in text:
        req.error = f"body lacks {req.expect!r}"
        return
    if req.clientip:
        host, _, port = text.strip().rpartition(":")
        if not host or not port.isdigit():
            req.error = f"bad /clientip answer {text.strip()[:40]!r}"
            return
        req.seen = host.strip("[]")
    req.ok = True


def _probe_http(pairs: Sequence[Pair], indexes: Sequence[int], timeout: float,
                concurrency: int = HTTP_CONCURRENCY) -> dict[int, list[_Request]]:
    by_pair: dict[int, list[_Request]] = {i: _requests_for(i, pairs[i][0], pairs[i][1]) for i in indexes}
    # Sorted by namespace so each refill makes its sockets in few helper threads.
    pending = deque(sorted((r for reqs in by_pair.values() for r in reqs),
                           key=lambda r: (r.src.netns, r.pair)))
    if not pending:
        return by_pair
    _raise_nofile(concurrency)
    sel = selectors.DefaultSelector()
    active: set[int] = set()
    refill_at = max(1, concurrency // 4)

    def done(req: _Request, error: str | None = None) -> None:
        if error is not None:
            req.error = error
        if req.sock is not None:
            try:
                sel.unregister(req.sock)
            except (KeyError, ValueError):
                pass
            req.sock.close()
            req.sock = None
        active.discard(id(req))

    def start(batch: list[_Request]) -> None:
        for name, group in itertools.groupby(batch, key=lambda r: r.src.netns):
            reqs = list(group)
            try:
                made = _sockets_in(name, socket.SOCK_STREAM, 0, [_text(r.src.ip) for r in reqs])
            except OSError as e:
                _check_privilege(e)
                for r in reqs:
                    r.error = f"cannot open a socket in namespace {name}: {_errno_text(e.errno or 0)}"
                continue
            for r, sock in zip(reqs, made):
                r.sock = sock
                r.started = time.monotonic()
                r.deadline = r.started + timeout
                r.outgoing = f"GET {r.path} HTTP/1.0\r\nHost: {r.dst.ip}\r\nUser-Agent: podlab-probe\r\n\r\n".encode()
                active.add(id(r))
                code = sock.connect_ex((_text(r.dst.ip), r.port))
                if code in (0, errno.EINPROGRESS):
                    sel.register(sock, selectors.EVENT_WRITE, r)
                else:
                    done(r, _errno_text(code))

    def on_event(r: _Request, mask: int) -> None:
        sock = r.sock
        assert sock is not None
        if mask & selectors.EVENT_WRITE:
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                return done(r, _errno_text(code))
            try:
                sent = sock.send(r.outgoing)
            except (BlockingIOError, InterruptedError):
                return None
            except OSError as e:
                return done(r, _errno_text(e.errno or 0))
            r.outgoing = r.outgoing[sent:]
            if not r.outgoing:
                sel.modify(sock, selectors.EVENT_READ, r)
            return None
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as e:
            if r.incoming:   # a reset after the whole answer (the server did not read all we sent)
                _finish_http(r, time.monotonic())
                if r.ok:
                    return done(r)
                r.ok, r.seen = False, None
            return done(r, _errno_text(e.errno or 0))
        if data and len(r.incoming) + len(data) <= HTTP_MAX_RESPONSE:
            r.incoming += data
            return None
        if data:
            r.incoming += data
        _finish_http(r, time.monotonic())
        return done(r)

    try:
        while pending or active:
            free = concurrency - len(active)
            if pending and (free >= refill_at or free >= len(pending) or not active):
                start([pending.popleft() for _ in range(min(free, len(pending)))])
            now = time.monotonic()
            reqs = [k.data for k in sel.get_map().values()]
            if not reqs:
                continue
            nearest = min(r.deadline for r in reqs)
            for key, mask in sel.select(max(0.0, min(nearest - now, 0.05))):
                on_event(key.data, mask)
            now = time.monotonic()
            for r in [k.data for k in sel.get_map().values()]:
                if now >= r.deadline:
                    done(r, "timeout" if r.outgoing else "timeout waiting for the response")
    finally:
        for r in [k.data for k in sel.get_map().values()]:
            done(r)
        sel.close()
    return by_pair


# ---------------------------------------------------------------- the probe

def probe(pairs: Sequence[Pair], protos: Sequence[str] = PROTOS, timeout: float = 1.0) -> list[PathResult]:
    """Probe (src, dst, expected) triples: ICMP for every pair, HTTP where dst serves HTTP.

    Results come in pair order, ICMP before HTTP for each pair.
    """
    unknown = set(protos) - set(PROTOS)
    if unknown:
        raise ValueError(f"unknown protocol(s) {sorted(unknown)}; known: {', '.join(PROTOS)}")
    icmp = _probe_icmp(pairs, timeout) if "icmp" in protos else None
    http = _probe_http(pairs, [i for i, (_, d, _) in enumerate(pairs) if d.serves_http], timeout) \
        if "http" in protos else {}
    results: list[PathResult] = []
    for i, (src, dst, expected) in enumerate(pairs):
        common = dict(src=src.name, dst=dst.name, expected=expected, src_ip=_text(src.ip), dst_ip=_text(dst.ip),
                      src_kind=src.kind, src_node=src.node, dst_kind=dst.kind, dst_node=dst.node)
        if icmp is not None:
            o = icmp[i]
            results.append(_with_nat(PathResult(proto="icmp", ok=o.ok, seen_source=o.seen, rtt_ms=o.rtt_ms,
                                                error=o.error, **common)))
        if i in http:
            reqs = http[i]
            seen = next((r.seen for r in reqs if r.seen is not None), None)
            errors = [f"{r.path} {r.error}" if len(reqs) > 1 else r.error for r in reqs if not r.ok]
            rtts = [r.rtt_ms for r in reqs if r.rtt_ms is not None]
            results.append(_with_nat(PathResult(
                proto="http", ok=all(r.ok for r in reqs), seen_source=seen,
                rtt_ms=max(rtts) if rtts else None, error="; ".join(e or "failed" for e in errors) or None,
                **common)))
    return results


def _with_nat(r: PathResult) -> PathResult:
    if r.ok and r.nat:
        return replace(r, error=f"NAT: receiver saw {r.seen_source}")
    return r


# ---------------------------------------------------------------- reports

def summary(results: Sequence[PathResult]) -> dict:
    """Counts for JSON output: total, passed, failed, nat, and the same per protocol."""
    def counts(rs: Sequence[PathResult]) -> dict:
        return {"total": len(rs), "passed": sum(r.passed for r in rs), "failed": sum(not r.passed for r in rs),
                "nat": sum(r.nat for r in rs), "expected": sum(r.expected for r in rs)}
    out = counts(results)
    out["by_proto"] = {p: counts([r for r in results if r.proto == p])
                       for p in PROTOS if any(r.proto == p for r in results)}
    return out


def describe(r: PathResult) -> str:
    """One path in words: 'pod web-1 (node2) -> 10.244.0.3 (web-2) icmp: timeout'."""
    where = f" ({r.src_node})" if r.src_kind == "pod" and r.src_node else ""
    what = r.error or ("NAT" if r.nat else "failed")
    return f"{r.src_kind} {r.src}{where} -> {r.dst_ip or '?'} ({r.dst}) {r.proto}: {what}"


CELL_LEGEND = ("✓ all probes passed   ✗ a required path failed   N NAT: the receiver saw another source\n"
               "○ not required, not reachable   · not probed / self")


def _cell(rs: Sequence[PathResult]) -> str:
    if not rs:
        return "·"
    if any(r.nat for r in rs):
        return "N"
    if any(not r.passed for r in rs):
        return "✗"
    if any(not r.ok for r in rs):
        return "○"
    return "✓"


def _failures(results: Sequence[PathResult]) -> list[str]:
    failed = [r for r in results if not r.passed]
    lines = [f"  {describe(r)}" for r in failed[:FAILURE_LIST_LIMIT]]
    if len(failed) > FAILURE_LIST_LIMIT:
        lines.append(f"  ... and {len(failed) - FAILURE_LIST_LIMIT} more")
    return lines


def matrix(results: Sequence[PathResult], names: Sequence[str]) -> str:
    """Rows = sources, columns = destinations; a per-node summary above GRID_LIMIT endpoints."""
    wanted = set(names)
    results = [r for r in results if r.src in wanted and r.dst in wanted]
    lines = _grid(results, names) if len(names) <= GRID_LIMIT else _group_summary(results, names)
    s = summary(results)
    lines.append("")
    lines.append(f"{s['passed']}/{s['total']} paths passed, {s['failed']} failed, {s['nat']} NATed")
    fails = _failures(results)
    if fails:
        lines.append("Failures:")
        lines += fails
    return "\n".join(lines)


def _grid(results: Sequence[PathResult], names: Sequence[str]) -> list[str]:
    cells: dict[tuple[str, str], list[PathResult]] = defaultdict(list)
    for r in results:
        cells[(r.src, r.dst)].append(r)
    num_w = len(str(len(names)))
    label_w = max((len(n) for n in names), default=0) + num_w + 1
    col_w = max(num_w, 1) + 1
    lines = [" " * label_w + " " + "".join(f"{j + 1:>{col_w}}" for j in range(len(names)))]
    for i, src in enumerate(names):
        row = "".join(f"{_cell(cells.get((src, dst), ())):>{col_w}}" for dst in names)
        lines.append(f"{i + 1:>{num_w}} {src:<{label_w - num_w - 1}} {row}")
    lines.append("")
    lines.append("rows send, columns receive (columns numbered as the rows); " + CELL_LEGEND.split("\n")[0])
    lines.append(CELL_LEGEND.split("\n")[1])
    return lines


def _group(kind: str, name: str, node: str | None) -> str:
    if kind == "pod":
        return f"pods on {node}" if node else "pods"
    if kind == "node":
        return f"node {name}"
    return "outside hosts"


def _group_summary(results: Sequence[PathResult], names: Sequence[str]) -> list[str]:
    order = {n: i for i, n in enumerate(names)}
    stats: dict[tuple[str, str], dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0]))
    rank: dict[str, int] = {}
    for r in results:
        g_src = _group(r.src_kind, r.src, r.src_node)
        g_dst = _group(r.dst_kind, r.dst, r.dst_node)
        rank.setdefault(g_src, order[r.src])
        rank.setdefault(g_dst, order[r.dst])
        c = stats[(g_src, g_dst)][r.proto]
        c[0] += r.passed
        c[1] += 1
        c[2] += r.nat
    lines = [f"{len(names)} endpoints: per-group summary (rows send, columns receive)"]
    keys = sorted(stats, key=lambda k: (rank[k[0]], rank[k[1]]))
    rows = []
    for a, b in keys:
        per = stats[(a, b)]
        passed = sum(c[0] for c in per.values())
        total = sum(c[1] for c in per.values())
        parts = ", ".join(f"{p} {c[0]}/{c[1]}" + (f" ({c[2]} NAT)" if c[2] else "")
                          for p, c in sorted(per.items(), key=lambda kv: PROTOS.index(kv[0])))
        rows.append(("✓" if passed == total else "✗", f"{a} -> {b}", f"{passed}/{total}", parts))
    width = max((len(r[1]) for r in rows), default=0)
    count_width = max((len(r[2]) for r in rows), default=0)
    lines += [f"{mark} {path:<{width}}  {count:>{count_width}} passed  [{parts}]" for mark, path, count, parts in rows]
    return lines
