"""A trace's verdict: what the captures prove, and the likeliest reason where they stop.

The captures say how far the probe got; the walk (the kernel's own lookups, as explain does
them) says why: when the walk stops in the namespace where the probe was last seen, or in
the next one along the link it left by, its reason stands. An ICMP error about the probe
names the namespace that refused it. Otherwise the namespace is looked at once more (nft
rules), and the answer says what was checked.
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field

from lab.packets import frames, nft
from lab.packets.result import Hop
from lab.packets.view import View
from lab.packets.walk import Outcome


@dataclass
class Evidence:
    src_ns: str
    dst_ns: str | None
    hops: list[Hop]                # the request, in capture order
    reply_hops: list[Hop]          # its answer (reply, RST, ICMP error), in capture order
    errors: list[frames.IPv4]      # ICMP errors about the probe
    send_error: OSError | None     # the source's kernel refused to send it
    walked: Outcome                # explain's walk of the request
    walked_back: Outcome | None    # and of the reply
    size: int = 84
    proto: str = "icmp"
    port: int | None = None
    answered: bool = False         # a reply (not an ICMP error) reached the source


@dataclass
class Verdict:
    verdict: str                   # delivered | dropped
    ns: str | None                 # where it stopped (request, or reply when delivered)
    reason: str | None
    replied: bool = False
    notes: list[str] = field(default_factory=list)


def send_error_text(e: OSError, view: View, ev: Evidence) -> str:
    walked_here = not ev.walked.delivered and ev.walked.ns == ev.src_ns and ev.walked.reason
    if e.errno == errno.EMSGSIZE:
        if walked_here and "MTU" in str(ev.walked.reason):
            return str(ev.walked.reason)
        return f"packet larger than the MTU: the kernel refuses to send {ev.size} bytes with DF set"
    if e.errno == errno.ENOBUFS:
        return ("the kernel's neighbour (ARP) table is full (ENOBUFS): it is shared by every namespace; "
                "see net.ipv4.neigh.default.gc_thresh3")
    if walked_here:
        return str(ev.walked.reason)
    return f"the source's kernel refuses to send it: {os.strerror(e.errno or 0).lower()}"


def _error_source(ev: Evidence) -> tuple[str | None, str | None]:
    """(namespace that sent the first ICMP error, its words), from the error's first 'out' hop."""
    if not ev.errors:
        return None, None
    first = ev.errors[0]
    text = frames.icmp_error_text(first)
    sender = next((h.netns for h in ev.reply_hops if "ICMP dest-unreach" in h.summary
                   or "ICMP time-exceeded" in h.summary or "ICMP parameter-problem" in h.summary), None)
    return sender, f"{text} (ICMP from {first.src})"


def _rejected(error: frames.IPv4) -> bool:
    """An ICMP error a router sends when a rule rejects a packet, not when a lookup fails."""
    l4 = error.payload
    return len(l4) >= 2 and l4[0] == frames.ICMP_DEST_UNREACH and l4[1] in (3, 9, 10, 13)


def _next_namespace(ev: Evidence, last: Hop) -> str | None:
    """Where the walk says a frame leaving by `last` arrives."""
    hops = ev.walked.hops
    for i, h in enumerate(hops):
        if (h.netns, h.iface, h.direction) == (last.netns, last.iface, last.direction) and i + 1 < len(hops):
            return hops[i + 1].netns
    return None


def _never_left(view: View, ev: Evidence) -> str:
    """Sent, yet not seen leaving: it waits for (or lost) the next hop's ARP answer, or a filter took it."""
    first = ev.walked.hops[0] if ev.walked.hops else None
    nft_words = _nft_reason(view, ev.src_ns, first, ev) if first else None
    if nft_words:
        return nft_words
    decision = first.decision if first and first.decision else ""
    if "ARP resolves" in decision or "neigh" not in decision:
        return (f"it never left {view.owner(ev.src_ns)}: the next hop's address was not resolved in time (ARP); "
                f"if this happens everywhere, the kernel's neighbour table, shared by all namespaces, may be "
                f"full (dmesg: 'neighbor table overflow', net.ipv4.neigh.default.gc_thresh3)")
    return f"it never left {view.owner(ev.src_ns)}, though its route and neighbour entry would send it"


def _nft_reason(view: View, ns: str, hop: Hop, ev: Evidence) -> str | None:
    chains = view.nft_rules(ns)
    if not chains:
        return None
    w = ev.walked.hops[0] if ev.walked.hops else None
    src, dst = (w.summary.split(" ")[0].split(":")[0], w.summary.split(" ")[2].split(":")[0]) if w else ("", "")
    pkt = nft.Packet(src, dst, ev.proto, None, ev.port, hop.iface if hop.direction == "in" else None)
    for hooks in (["prerouting", "forward", "postrouting"], ["prerouting", "input"], ["output", "postrouting"]):
        v = nft.judge(chains, hooks, pkt)
        if v is not None:
            return v.text()
    tables = sorted({f"{c.family} {c.table}" for c in chains})
    return f"nft tables here ({', '.join(tables)}) may drop it: 'podlab exec {view.owner(ns)} -- nft list ruleset'"


def judge(view: View, ev: Evidence) -> Verdict:
    if ev.send_error is not None:
        return Verdict("dropped", ev.src_ns, send_error_text(ev.send_error, view, ev))
    # An answer proves delivery even where the destination was rewritten on the way (a Service's DNAT).
    delivered = ev.answered or any(h.netns == ev.dst_ns and h.direction == "in" for h in ev.hops) or \
        any(h.direction == "out" and h.netns == ev.dst_ns for h in ev.reply_hops)
    replied = any(h.netns == ev.src_ns and h.direction == "in" for h in ev.reply_hops)
    err_ns, err_text = _error_source(ev)
    notes = [f"{view.owner(err_ns) if err_ns else 'a router'} answered: {err_text}"] if err_text else []
    if delivered:
        answer = next((h.summary for h in ev.reply_hops if h.netns == ev.dst_ns and h.direction == "out"), "")
        if ev.proto == "tcp" and " TCP [R" in answer:
            notes.append(f"the destination answered with a TCP reset: nothing listens on port {ev.port}")
        elif ev.proto == "tcp" and " TCP [SA" in answer:
            notes.append(f"the destination accepted the connection on port {ev.port} (SYN-ACK)")
        if replied:
            return Verdict("delivered", None, None, True, notes)
        return _reply_lost(view, ev, notes)
    return _request_lost(view, ev, err_ns, err_text, notes)


def _reply_lost(view: View, ev: Evidence, notes: list[str]) -> Verdict:
    back = ev.walked_back
    last = ev.reply_hops[-1] if ev.reply_hops else None
    if back is not None and not back.delivered:
        seen = {h.netns for h in ev.reply_hops} | ({ev.dst_ns} if ev.dst_ns else set())
        if back.ns in seen or last is None:
            return Verdict("delivered", back.ns, back.reason, False, notes)
    if last is None:
        what = {"icmp": "no echo reply left it", "tcp": f"nothing answered on TCP port {ev.port}",
                "udp": f"nothing answered on UDP port {ev.port} (no reply, no port unreachable)"}[ev.proto]
        return Verdict("delivered", ev.dst_ns, what, False, notes)
    reason = _nft_reason(view, last.netns, last, ev) or \
        f"the reply went no further than {last.iface} ({last.direction})"
    return Verdict("delivered", last.netns, reason, False, notes)


def _request_lost(view: View, ev: Evidence, err_ns: str | None, err_text: str | None,
                  notes: list[str]) -> Verdict:
    walked = ev.walked
    if not ev.hops:
        if not walked.delivered and walked.ns == ev.src_ns:
            return Verdict("dropped", ev.src_ns, walked.reason, False, notes)
        return Verdict("dropped", ev.src_ns, _never_left(view, ev), False, notes)
    last = ev.hops[-1]
    candidates = {last.netns}
    if last.direction == "out":
        nxt = _next_namespace(ev, last)
        if nxt:
            candidates.add(nxt)
    if err_ns is not None:
        candidates.add(err_ns)
    if err_ns is not None and err_text is not None and _rejected(ev.errors[0]):
        # A lookup never answers "port unreachable" or "prohibited" on the way: a filter rule does.
        tables = sorted({f"{c.family} {c.table}" for c in view.nft_rules(err_ns)})
        where = f" (nft tables there: {', '.join(tables)})" if tables else ""
        return Verdict("dropped", err_ns, f"a filter rule rejected it: {err_text}{where}", False, notes)
    if not walked.delivered and walked.ns in candidates:
        return Verdict("dropped", walked.ns, walked.reason, False, notes)
    if err_ns is not None and err_text is not None:
        return Verdict("dropped", err_ns, err_text, False, notes)
    if not walked.delivered:
        notes.append(f"explain expected it to stop at {view.owner(walked.ns or '')}: {walked.reason}")
    where = last.netns if last.direction == "in" else (_next_namespace(ev, last) or last.netns)
    reason = _nft_reason(view, where, last, ev) or (
        f"it reached {last.iface} ({last.direction}) and went no further; the routes, neighbours and FDB "
        f"here would send it on, so look for a filter (nft/iptables), rp_filter, or a full neighbour table")
    return Verdict("dropped", where, reason, False, notes)
