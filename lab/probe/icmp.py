"""ICMP probing: one echo request per pair, from raw sockets that also watch the receivers.

One raw ICMP socket per (namespace, address) taking part, made inside its namespace and bound
to the endpoint's address. It sends the echo requests of the sources there and, because a raw
socket gets a copy of every ICMP packet delivered to its address, it is also the observer of the
targets there: the echo request's source address, as the receiver saw it, proves (or disproves)
that nothing NATed the path. No ping process, no server. Each pair is one echo request:
identifier = a random per-run base + index // 65536, sequence = index % 65536, and the payload
carries a random run tag and the index again (NAT may rewrite the identifier, never the
payload), so strays and other pings are ignored.
"""
from __future__ import annotations

import errno
import itertools
import os
import random
import selectors
import socket
import struct
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lab.probe.icmp_packets import (ICMP_DEST_UNREACH, ICMP_ECHO, ICMP_ECHO_REPLY, ICMP_TIME_EXCEEDED, UNREACHABLE,
                                    build_echo, parse_packet)
from lab.probe.model import Pair
from lab.probe.sockets import cannot_open, errno_text, raise_nofile, sockets_in_each

SOCKET_BUFFER = 4 * 1024 * 1024  # raw sockets hold a burst of replies while we are still sending
SEND_CHUNK = 128                 # sends per socket between two looks at the receive queues
SOL_RAW, ICMP_FILTER = 255, 1
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
MAGIC = b"podlab-probe"

@dataclass
class IcmpOutcome:
    ok: bool = False
    seen: str | None = None
    rtt_ms: float | None = None
    error: str | None = None


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


def probe_icmp(pairs: Sequence[Pair], timeout: float) -> list[IcmpOutcome]:
    """One outcome per pair, in pair order."""
    n = len(pairs)
    out = [IcmpOutcome() for _ in range(n)]
    if not n:
        return out
    tag = MAGIC + os.urandom(8)
    ident_count = (n - 1) // 65536 + 1
    if ident_count > 65536:
        raise ValueError(f"{n} pairs is more than one ICMP probe run can number")
    base = random.randrange(0, 65536 - ident_count + 1)

    keys = sorted({(e.netns, e.address) for s, d, _ in pairs for e in (s, d)})
    raise_nofile(len(keys))
    groups = [(name, [ip for _, ip in group]) for name, group in itertools.groupby(keys, key=lambda k: k[0])]
    socks: dict[tuple[str, str], socket.socket] = {}
    sel = selectors.DefaultSelector()
    unusable: dict[str, str] = {}
    try:
        made = sockets_in_each([(name, socket.SOCK_RAW, socket.IPPROTO_ICMP, ips) for name, ips in groups])
        for (name, ips), result in zip(groups, made):
            if isinstance(result, OSError):
                unusable[name] = cannot_open(name, result)
                continue
            for ip, s in zip(ips, result):
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


def _icmp_loop(pairs: Sequence[Pair], todo: Sequence[int], out: list[IcmpOutcome],
               socks: dict[tuple[str, str], socket.socket],
               sel: selectors.BaseSelector, tag: bytes, base: int, timeout: float) -> None:
    n = len(pairs)
    sent_at = [0.0] * n
    waiting: set[int] = set()          # sent and neither answered nor refused yet
    queues: dict[tuple[str, str], deque[int]] = defaultdict(deque)

    def enqueue(indexes: Iterable[int]) -> None:
        for i in indexes:
            src = pairs[i][0]
            queues[(src.netns, src.address)].append(i)
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
                    sock.sendto(packet, (pairs[i][1].address, 0))
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as e:
                    out[i].error = errno_text(e.errno or 0)
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
                    and q.dst == pairs[i][1].address:
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
