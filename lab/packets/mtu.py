"""`podlab mtu SRC DST`: the largest packet that crosses with DF set, and the link that limits it.

The search uses real probes: ICMP echo requests with DF set, from a raw socket in SRC's
namespace, several sizes at once per round (a k-ary search, so a silent drop costs one wait
per round, not one per size). A size crosses when its echo reply comes back; it fails on an
ICMP "fragmentation needed", a local EMSGSIZE, or silence. The limiting link is then named
by walking a packet one byte larger with the kernel's lookups (walk.py): it stops at the
interface whose MTU it exceeds (for VXLAN: the underlay MTU minus the 50 bytes of headers).

A "fragmentation needed" makes the source's kernel cache a smaller path MTU; the search
flushes the source namespace's route cache afterwards, so the lab is left as it was found.
"""
from __future__ import annotations

import select
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from lab.engine import netns as nsmod
from lab.errors import PodlabError
from lab.packets import endpoints, frames
from lab.packets.explain import request_packet, source_address
from lab.packets.view import LiveView
from lab.packets.walk import Walker

if TYPE_CHECKING:
    from lab.api import Lab

FAN_OUT = 8             # sizes probed per round
MIN_SIZE = 68           # the smallest MTU IPv4 guarantees (RFC 791)


@dataclass
class MtuResult:
    src: str
    dst: str
    src_ip: str
    dst_ip: str
    largest: int | None             # IP total length of the largest DF packet that crossed
    source_mtu: int | None          # the source's own interface MTU (nothing larger can leave)
    limit_where: str | None = None  # the lab object (node, pod, ...) holding the limiting link
    limit_netns: str | None = None
    limit_iface: str | None = None
    limit_mtu: int | None = None    # the largest packet that link lets through
    reason: str | None = None       # the walk's words for a packet one byte larger
    icmp: list[str] = field(default_factory=list)   # "fragmentation needed" answers seen
    probes: int = 0
    rounds: int = 0
    elapsed: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        head = f"mtu {self.src} ({self.src_ip}) -> {self.dst} ({self.dst_ip})"
        if self.largest is None:
            return (f"{head}: nothing crosses, not even {MIN_SIZE} bytes; "
                    f"'podlab trace {self.src} {self.dst}' shows where it stops")
        lines = [f"{head}: the largest packet that crosses with DF set is {self.largest} bytes "
                 f"(ping -M do -s {self.largest - 28})"]
        if self.limit_iface:
            lines.append(f"limited by {self.limit_where} {self.limit_iface} "
                         f"(lets {self.limit_mtu}-byte packets through)" + (f": {self.reason}" if self.reason else ""))
        for answer in self.icmp:
            lines.append(f"answer seen: {answer}")
        lines.append(f"{self.probes} probes in {self.rounds} rounds, {self.elapsed:.2f} s")
        return "\n".join(lines)


def flush_route_cache(ns: str) -> None:
    """Forget cached path MTUs in a namespace (what `ip route flush cache` does)."""
    def flush() -> None:
        with open("/proc/sys/net/ipv4/route/flush", "w") as f:
            f.write("1")
    nsmod.run_in(ns, flush)


class _Prober:
    """Echo requests of many sizes at once from one namespace; answers matched by sequence."""

    def __init__(self, ns: str, src_ip: str, dst_ip: str):
        self.src_ip, self.dst_ip = src_ip, dst_ip
        self.send = nsmod.socket_in(ns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.recv = nsmod.socket_in(ns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.recv.setblocking(False)
        self.base = frames.Mark.new("icmp")
        self.count = 0
        self.answers: list[str] = []
        self.frag_needed = False

    def close(self) -> None:
        self.send.close()
        self.recv.close()

    def round(self, sizes: list[int], timeout: float) -> dict[int, bool]:
        """size -> crossed, for one round of probes sent together."""
        marks: dict[int, tuple[int, frames.Mark]] = {}
        result: dict[int, bool] = {}
        for size in sizes:
            self.count += 1
            mark = frames.Mark("icmp", (self.base.ip_id + self.count) % 65535 + 1, self.base.ident,
                               (self.base.seq + self.count) % 65536, None, self.base.tag)
            try:
                self.send.sendto(frames.build(mark, self.src_ip, self.dst_ip, size), (self.dst_ip, 0))
            except OSError:        # EMSGSIZE: larger than the source's own interface
                result[size] = False
                continue
            marks[mark.seq] = (size, mark)
        deadline = time.monotonic() + timeout
        while len(result) < len(sizes) and time.monotonic() < deadline:
            ready, _, _ = select.select([self.recv], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            while True:
                try:
                    data = self.recv.recv(65535)
                except (BlockingIOError, InterruptedError):
                    break
                self._take(frames.IPv4(data), marks, result)
        for size in sizes:
            result.setdefault(size, False)
        return result

    def _take(self, pkt: frames.IPv4, marks: dict[int, tuple[int, frames.Mark]], result: dict[int, bool]) -> None:
        for size, mark in marks.values():
            if size in result:
                continue
            if frames.is_reply(pkt, mark):
                result[size] = True
            elif frames.is_error(pkt, mark):
                result[size] = False
                mtu = frames.frag_needed_mtu(pkt)
                self.frag_needed = self.frag_needed or mtu is not None
                text = f"{pkt.src} answered {size} bytes with {frames.icmp_error_text(pkt)}"
                if text not in self.answers:
                    self.answers.append(text)


def _search(prober: _Prober, low: int, high: int, timeout: float) -> tuple[int | None, int]:
    """(largest size that crossed in [low, high], rounds); `low` is checked with `high` first."""
    first = prober.round(sorted({low, high}), timeout)
    rounds = 1
    if first.get(high):
        return high, rounds
    if not first.get(low):
        return None, rounds
    lo, hi = low, high - 1           # lo crosses; everything above hi fails
    while lo < hi:
        span = hi - lo
        sizes = sorted({lo + max(1, (span * i) // FAN_OUT) for i in range(1, FAN_OUT + 1)} - {lo})
        got = prober.round(sizes, timeout)
        rounds += 1
        crossed = [s for s in sizes if got[s]]
        failed = [s for s in sizes if not got[s]]
        if crossed:
            lo = max(crossed)
        if failed:
            hi = min([f for f in failed if f > lo], default=hi + 1) - 1
    return lo, rounds


def path_mtu(lab: Lab, src: str, dst: str, timeout: float = 0.3) -> MtuResult:
    started = time.monotonic()
    s, d = endpoints.pair(lab, src, dst)
    view = LiveView(lab)
    try:
        result = _measure(view, s, d, timeout)
        if result.largest is not None:
            _name_limit(view, result, s.netns)
    finally:
        view.close()
    result.elapsed = time.monotonic() - started
    return result


def _measure(view: LiveView, s: endpoints.End, d: endpoints.End, timeout: float) -> MtuResult:
    assert s.netns is not None
    src_ip = source_address(view, s, d.ip)
    out = view.route(s.netns, d.ip, src_ip or None)
    link = view.state(s.netns).link(out.dev) if out.dev else None
    if link is None or not src_ip:
        raise PodlabError(f"{s.name} has no route to {d.ip}: 'podlab explain {s.name} {d.name}' shows why")
    result = MtuResult(s.name, d.name, src_ip, d.ip, None, link.mtu)
    prober = _Prober(s.netns, src_ip, d.ip)
    try:
        result.largest, result.rounds = _search(prober, min(MIN_SIZE + 16, link.mtu), link.mtu, timeout)
    finally:
        prober.close()
        if prober.frag_needed:
            flush_route_cache(s.netns)
    result.probes, result.icmp = prober.count, prober.answers
    return result


def _name_limit(view: LiveView, result: MtuResult, src_ns: str) -> None:
    """The link that stops a packet one byte larger than the largest that crossed."""
    assert result.largest is not None
    if result.largest == result.source_mtu:
        first = view.route(src_ns, result.dst_ip, result.src_ip)
        result.limit_netns, result.limit_iface, result.limit_mtu = src_ns, first.dev, result.source_mtu
        result.limit_where = view.owner(src_ns)
        result.reason = "the source's own interface: nothing larger can leave it"
        return
    walked = Walker(view).run(src_ns, request_packet(result.src_ip, result.dst_ip, "icmp", None,
                                                     result.largest + 1))
    if not walked.delivered and walked.iface:
        result.limit_netns, result.limit_iface, result.limit_mtu = walked.ns, walked.iface, walked.mtu
        result.limit_where = view.owner(walked.ns or "")
        result.reason = walked.reason
        return
    result.reason = ("the kernel's lookups let a larger packet through, so something else drops it "
                     f"(walk: {walked.reason or 'delivered'}); 'podlab trace {result.src} {result.dst} "
                     f"--size {result.largest + 1}' shows where")
