"""HTTP probing: a GET per (source, target port), many at once, from sockets in the sources' namespaces.

A target running the nginx-like workload must answer with its page; one running the echo
workload answers GET /clientip with "<ip>:<port>" as it saw the client, which gives the same
no-NAT proof for TCP as the ICMP probe's observer.

This is most of `podlab check`'s work (9,900 requests for 100 pods), so every request costs as
few system calls and as little Python as it can:
- sockets are made in batches, one helper thread visiting each namespace of a batch;
- the request is sent right after connect(): on a veth the handshake has usually completed inside
  connect(), and if it has not, send() says EAGAIN and we wait for writability;
- epoll directly, file descriptor -> request; closing a socket takes it out of the epoll set;
- an answer is complete when its Content-Length is in, without waiting for the server's FIN
  (answers without one end at EOF);
- all requests share one timeout, so the oldest running request has the nearest deadline.
"""
from __future__ import annotations

import errno
import itertools
import select
import socket
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from lab.probe.model import Endpoint, Pair
from lab.probe.sockets import cannot_open, errno_text, raise_nofile, sockets_in_each

HTTP_CONCURRENCY = 256           # connections open at once
HTTP_MAX_RESPONSE = 256 * 1024   # an answer longer than this is judged on what came so far
SOCKET_BATCH = 1024              # sockets made per visit of the helper thread
USER_AGENT = "podlab-probe"


@dataclass(slots=True)
class Request:
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


def requests_for(i: int, src: Endpoint, dst: Endpoint) -> list[Request]:
    reqs = []
    if dst.http_port is not None:
        reqs.append(Request(i, src, dst, dst.http_port, "/", dst.http_expect, False))
    if dst.clientip_port is not None:
        reqs.append(Request(i, src, dst, dst.clientip_port, "/clientip", None, True))
    return reqs


def _content_length(head: bytes) -> int | None:
    at = head.lower().find(b"\ncontent-length:")
    if at < 0:
        return None
    value = head[at + 16:].split(b"\n", 1)[0].strip()
    return int(value) if value.isdigit() else None


def complete(incoming: bytearray) -> bool:
    """Whether the answer so far is whole by its Content-Length (without one: only EOF says so)."""
    end = incoming.find(b"\r\n\r\n")
    if end < 0:
        return False
    length = _content_length(bytes(incoming[:end]))
    return length is not None and len(incoming) - end - 4 >= length


def judge(req: Request, now: float) -> None:
    """Set ok / error / seen from the answer received: status 200, the expected text, the client's address."""
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
    body_text = body.decode("utf-8", "replace")
    if req.expect is not None and req.expect not in body_text:
        req.error = f"body lacks {req.expect!r}"
        return
    if req.clientip:
        host, _, port = body_text.strip().rpartition(":")
        if not host or not port.isdigit():
            req.error = f"bad /clientip answer {body_text.strip()[:40]!r}"
            return
        req.seen = host.strip("[]")
    req.ok = True


def probe_http(pairs: Sequence[Pair], indexes: Sequence[int], timeout: float,
               concurrency: int = HTTP_CONCURRENCY) -> dict[int, list[Request]]:
    """The requests of each pair in `indexes` (to each HTTP port of its target), with their outcome."""
    by_pair = {i: requests_for(i, pairs[i][0], pairs[i][1]) for i in indexes}
    # Sorted by namespace: a batch of sockets is made in few namespace visits.
    pending = deque(sorted((r for reqs in by_pair.values() for r in reqs), key=lambda r: (r.src.netns, r.pair)))
    if pending:
        raise_nofile(concurrency + SOCKET_BATCH)
        _Client(timeout, concurrency).run(pending)
    return by_pair


class _Client:
    """One run: at most `concurrency` requests in flight, each connected, sent, read and judged."""

    def __init__(self, timeout: float, concurrency: int):
        self.timeout = timeout
        self.concurrency = concurrency
        self.epoll = select.epoll()
        self.active: dict[int, Request] = {}      # file descriptor -> request
        self.by_age: deque[Request] = deque()     # started, oldest first: the nearest deadline leads
        self.stock: deque[Request] = deque()      # have their socket, not started yet
        self.messages: dict[tuple[str, str], bytes] = {}   # (path, target address) -> the request

    def run(self, pending: deque[Request]) -> None:
        try:
            while pending or self.stock or self.active:
                while len(self.active) < self.concurrency and (self.stock or pending):
                    if not self.stock:
                        self.make_sockets(pending)
                        continue
                    self.start(self.stock.popleft())
                if self.active:
                    self.wait()
        finally:
            for r in list(self.active.values()) + list(self.stock):
                self.done(r)
            self.epoll.close()

    def make_sockets(self, pending: deque[Request]) -> None:
        batch = [pending.popleft() for _ in range(min(SOCKET_BATCH, len(pending)))]
        groups = [(name, list(reqs)) for name, reqs in itertools.groupby(batch, key=lambda r: r.src.netns)]
        made = sockets_in_each([(name, socket.SOCK_STREAM, 0, [r.src.address for r in reqs])
                                for name, reqs in groups])
        for (name, reqs), result in zip(groups, made):
            if isinstance(result, OSError):
                for r in reqs:
                    r.error = cannot_open(name, result)
                continue
            for r, sock in zip(reqs, result):
                r.sock = sock
                self.stock.append(r)

    def message(self, r: Request) -> bytes:
        key = (r.path, r.dst.address)
        m = self.messages.get(key)
        if m is None:
            m = f"GET {r.path} HTTP/1.0\r\nHost: {key[1]}\r\nUser-Agent: {USER_AGENT}\r\n\r\n".encode()
            self.messages[key] = m
        return m

    def start(self, r: Request) -> None:
        sock = r.sock
        assert sock is not None
        fd = sock.fileno()
        r.outgoing = self.message(r)
        r.started = time.monotonic()
        r.deadline = r.started + self.timeout
        self.active[fd] = r
        self.by_age.append(r)
        code = sock.connect_ex((r.dst.address, r.port))
        if code not in (0, errno.EINPROGRESS):
            return self.done(r, errno_text(code))
        self.send(r, fd, registered=False)

    def send(self, r: Request, fd: int, registered: bool) -> None:
        try:
            sent = r.sock.send(r.outgoing)   # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):   # still connecting
            if not registered:
                self.epoll.register(fd, select.EPOLLOUT)
            return
        except OSError as e:                          # e.g. refused: the connect failed
            return self.done(r, errno_text(e.errno or 0))
        r.outgoing = r.outgoing[sent:]
        if r.outgoing:
            if not registered:
                self.epoll.register(fd, select.EPOLLOUT)
        elif registered:
            self.epoll.modify(fd, select.EPOLLIN)
        else:
            self.epoll.register(fd, select.EPOLLIN)

    def receive(self, r: Request) -> None:
        try:
            data = r.sock.recv(65536)   # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            if r.incoming:   # a reset after the whole answer (the server did not read all we sent)
                judge(r, time.monotonic())
                if r.ok:
                    return self.done(r)
                r.ok, r.seen = False, None
            return self.done(r, errno_text(e.errno or 0))
        if data:
            r.incoming += data
            if len(r.incoming) <= HTTP_MAX_RESPONSE and not complete(r.incoming):
                return
        judge(r, time.monotonic())
        self.done(r)

    def wait(self) -> None:
        """Handle what is ready, at the latest when the oldest request is due; then expire the overdue."""
        by_age, active = self.by_age, self.active
        while by_age and by_age[0].sock is None:
            by_age.popleft()
        nearest = max(0.0, by_age[0].deadline - time.monotonic()) if by_age else 0.0
        for fd, _events in self.epoll.poll(nearest):
            r = active.get(fd)
            if r is None:
                continue
            if r.outgoing:
                self.send(r, fd, registered=True)
            else:
                self.receive(r)
        now = time.monotonic()
        while by_age and (by_age[0].sock is None or by_age[0].deadline <= now):
            r = by_age.popleft()
            if r.sock is not None:
                self.done(r, "timeout" if r.outgoing else "timeout waiting for the response")

    def done(self, r: Request, error: str | None = None) -> None:
        if error is not None:
            r.error = error
        if r.sock is not None:
            self.active.pop(r.sock.fileno(), None)
            r.sock.close()   # which also takes it out of the epoll set
            r.sock = None
