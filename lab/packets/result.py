"""The answers of the packet tools, as data: a decoded frame's line, and trace's and explain's
hops in order with a verdict.

The CLI prints `text()`, `-o json` prints `to_dict()`, the TUI and the graders read the fields.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Decoded:
    text: str
    src: str | None = None        # the (inner) IP addresses
    dst: str | None = None
    proto: str | None = None      # ICMP | TCP | UDP | ARP | IPv6 | ...
    ttl: int | None = None        # the (inner) TTL
    length: int | None = None     # the (inner) IP total length
    outer: str | None = None      # "outer 192.168.56.11 > 192.168.56.12 UDP 8472 VNI 1"


@dataclass
class Hop:
    netns: str
    target: str                # the lab object the namespace belongs to: pod, node, underlay/router, host
    iface: str
    direction: str             # "in" | "out"
    summary: str               # the headers at this point, one line (VXLAN: inner | outer)
    ttl: int | None
    decision: str | None       # for a namespace that sends it on: route; neighbour; FDB (or bridge FDB)
    time: float                # capture time (seconds since the epoch); 0.0 in explain, which sends nothing


@dataclass
class Trace:
    src: str
    dst: str
    proto: str
    hops: list[Hop]
    reply_hops: list[Hop]
    verdict: str               # "delivered" | "dropped"
    where: str | None          # the lab object (pod/node/underlay/host) where it stopped, when dropped
    reason: str | None         # the most likely reason, from that namespace's own state
    port: int | None = None
    size: int | None = None    # IP total length of the probe
    src_ip: str | None = None
    dst_ip: str | None = None
    where_netns: str | None = None
    replied: bool = False
    sent: bool = True          # False for explain
    elapsed: float | None = None     # seconds the trace (or walk) took
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        port = f":{self.port}" if self.port else ""
        head = "trace" if self.sent else "explain"
        lines = [f"{head} {self.proto} {self.src} ({self.src_ip or 'no address'}) -> {self.dst} ({self.dst_ip}{port}), "
                 f"{self.size} bytes" + ("" if self.sent else " — nothing sent: the kernel's own lookups")]
        lines += _hop_lines(self.hops, self.sent)
        if self.reply_hops:
            lines.append("reply:")
            lines += _hop_lines(self.reply_hops, self.sent)
        lines += [f"note: {n}" for n in self.notes]
        lines.append(self.verdict_text())
        return "\n".join(lines)

    def verdict_text(self) -> str:
        took = f" ({self.elapsed * 1000:.0f} ms)" if self.elapsed is not None else ""
        if self.verdict == "delivered":
            if self.reason:      # delivered, but the reply did not make it back
                return f"verdict: delivered, but the reply was dropped at {self.where}: {self.reason}{took}"
            if self.sent:
                return f"verdict: delivered{' and replied' if self.replied else ''}{took}"
            return f"verdict: delivered (the reply's path is walked above){took}" if self.reply_hops \
                else f"verdict: delivered{took}"
        where = f" at {self.where}" + (f" (netns {self.where_netns})" if self.where_netns else "")
        return f"verdict: dropped{where}: {self.reason or 'reason unknown'}{took}"


def _hop_lines(hops: list[Hop], timed: bool) -> list[str]:
    if not hops:
        return ["   (no hop seen)"]
    t0 = hops[0].time
    tw = max(len(h.target) for h in hops)
    iw = max(len(h.iface) for h in hops)
    lines = []
    for i, h in enumerate(hops, 1):
        when = f"+{(h.time - t0) * 1000:7.3f} ms  " if timed else ""
        lines.append(f"{i:>4}  {when}{h.target:<{tw}}  {h.iface:<{iw}}  {h.direction:<3}  {h.summary}")
        if h.decision:
            lines.append(" " * (6 + len(when)) + f"↳ {h.decision}")
    return lines
