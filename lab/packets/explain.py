"""`podlab explain SRC DST`: where a packet would go, and why, without sending anything.

The walk (walk.py) asks the kernel of each namespace in turn; the reply's path is walked
too when the request arrives. The answer has the same shape as a trace: hops carry their
decisions and computed TTLs, times are 0.
"""
from __future__ import annotations

import time
from ipaddress import IPv4Address
from typing import TYPE_CHECKING

from lab.packets import endpoints
from lab.packets.result import Trace
from lab.packets.view import LiveView, View
from lab.packets.walk import Outcome, Packet, Walker

if TYPE_CHECKING:
    from lab.api import Lab


def source_address(view: View, src: endpoints.End, dst_ip: str) -> str:
    """The address the source sends from: a pod's own; for a node, the one its route picks
    (a node reaches remote pods from its flannel.1 address, as `ping` from a node does)."""
    if src.target is not None and src.target.kind == "pod" and src.ip:
        return src.ip
    if src.netns:
        answer = view.route(src.netns, dst_ip)
        if answer.prefsrc:
            return answer.prefsrc
    return src.ip


def request_packet(src_ip: str, dst_ip: str, proto: str, port: int | None, size: int,
                   sport: int | None = None) -> Packet:
    return Packet(src_ip, dst_ip, proto, size, sport=sport, dport=port)


def walk_both(view: View, src_ns: str, pkt: Packet, iif: str | None = None,
              resume: bool = False) -> tuple[Outcome, Outcome | None]:
    """The request's walk (from its source, or resumed in `src_ns` on `iif`), and the reply's from
    wherever the request was delivered."""
    out = Walker(view).resume(src_ns, iif, pkt) if resume else Walker(view).run(src_ns, pkt)
    if not out.delivered or out.ns is None:
        return out, None
    return out, Walker(view).run(out.ns, pkt.reply())


def explain(lab: Lab, src: str, dst: str, proto: str = "icmp", port: int | None = None,
            size: int | None = None, view: View | None = None) -> Trace:
    started = time.monotonic()
    proto, port, size = endpoints.check_probe(proto, port, size)
    s, d = endpoints.pair(lab, src, dst, sending=False)
    live = LiveView(lab) if view is None else None
    walker_view: View = live or view      # type: ignore[assignment]
    try:
        src_ip = source_address(walker_view, s, d.ip)
        pkt = request_packet(src_ip, d.ip, proto, port, size)
        out, back = walk_both(walker_view, s.netns, pkt)
        result = as_trace(walker_view, s, d, pkt, out, back, time.monotonic() - started)
        if IPv4Address(d.ip) in lab.topology.service_cidr:
            result.notes.append(f"{d.ip} is in the service CIDR: kube-proxy's nft rules rewrite it to an endpoint "
                                f"(DNAT) before routing, which explain does not follow; 'podlab trace' follows "
                                f"the real packet")
        return result
    finally:
        if live is not None:
            live.close()


def as_trace(view: View, s: endpoints.End, d: endpoints.End, pkt: Packet, out: Outcome, back: Outcome | None,
             elapsed: float) -> Trace:
    verdict, where, reason = "dropped", out.ns, out.reason
    if out.delivered:
        verdict = "delivered"
        where, reason = (None, None) if back is None or back.delivered else (back.ns, back.reason)
    return Trace(src=s.name, dst=d.name, proto=pkt.proto, hops=out.hops, reply_hops=back.hops if back else [],
                 verdict=verdict, where=view.owner(where) if where else None, reason=reason, port=pkt.dport,
                 size=pkt.length, src_ip=pkt.src, dst_ip=pkt.dst, where_netns=where if reason else None,
                 replied=bool(back and back.delivered), sent=False, elapsed=elapsed)
