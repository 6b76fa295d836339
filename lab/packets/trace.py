"""`podlab trace SRC DST`: one real, marked probe, watched on every interface that could carry it.

Packet sockets are opened in the lab's namespaces first (all of them in a small lab; the
source, destination, nodes, underlay and outside hosts in a large one), then a raw socket in
SRC's namespace sends one probe: an IPv4 packet with a random IP ID, DF set, and a random
ICMP identifier/sequence or TCP/UDP source port, ICMP/UDP payloads carrying a random tag.
Every frame that carries it (inside VXLAN too), its reply, or an ICMP error about it becomes
a hop; hops are ordered by the kernel's capture time stamps. The walk of explain.py adds the
decision of every namespace that sent it on, and names the cause when it stops.
"""
from __future__ import annotations

import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from lab.engine import netns as nsmod
from lab.errors import PodlabError
from lab.packets import capture, decode, endpoints, frames
from lab.packets.explain import request_packet, source_address, walk_both
from lab.packets.mtu import flush_route_cache
from lab.packets.result import Hop, Trace
from lab.packets.verdict import Evidence, judge
from lab.packets.view import LiveView
from lab.packets.walk import Packet

if TYPE_CHECKING:
    from lab.api import Lab

__all__ = ["Hop", "Trace", "trace"]

WATCH_ALL_LIMIT = 64        # labs with more namespaces watch only those a probe can cross
GRACE = 0.005               # after the answer reaches the source: what is still in the queues
QUIET = 0.75                # nothing of the probe's (or ARP) for this long: it is not coming


@dataclass
class Seen:
    frame: capture.Frame
    pkt: frames.IPv4
    kind: str               # request | reply | error


def watched(lab: Lab, src_ns: str, dst_ns: str | None) -> list[str]:
    namespaces = list(dict.fromkeys(t.netns for t in lab.targets().values()))
    if len(namespaces) <= WATCH_ALL_LIMIT:
        return namespaces
    a = lab.addresses
    keep = {src_ns, a.underlay_netns, *(n.netns for n in a.nodes), *(h.netns for h in a.outside)}
    if dst_ns:
        keep.add(dst_ns)
    return [n for n in namespaces if n in keep]


def _send(ns: str, packet: bytes, dst: str) -> OSError | None:
    """Send the probe from a raw socket in `ns` (IPPROTO_RAW: our header, DF and IP ID as built)."""
    sock = nsmod.socket_in(ns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    try:
        sock.sendto(packet, (dst, 0))
        return None
    except OSError as e:
        return e
    finally:
        sock.close()


def _collect(sniffers: list[capture.Sniffer], mark: frames.Mark, ports: frozenset[int], src_ns: str,
             timeout: float, quiet: float) -> list[Seen]:
    seen: list[Seen] = []
    start = last = time.monotonic()
    answered_at: float | None = None
    while True:
        now = time.monotonic()
        if answered_at is not None and now - answered_at >= GRACE:
            break
        if now - start >= timeout or (answered_at is None and now - last >= quiet):
            break
        wait = GRACE if answered_at is not None else min(0.05, quiet)
        ready, _, _ = select.select(sniffers, [], [], wait)
        for sniffer in ready:
            for f in sniffer.drain():
                kind = frames.classify(frames.ipv4_in(f.data, ports), mark)
                if kind is None:
                    if frames.is_arp(f.data):
                        last = time.monotonic()    # a next hop is being resolved: the probe waits for it
                    continue
                seen.append(Seen(f, frames.ipv4_in(f.data, ports), kind))   # type: ignore[arg-type]
                last = time.monotonic()
                if kind != "request" and f.netns == src_ns and f.direction == "in" and answered_at is None:
                    answered_at = last
    for sniffer in sniffers:          # whatever is still queued belongs to the same moment
        for f in sniffer.drain():
            pkt = frames.ipv4_in(f.data, ports)
            kind = frames.classify(pkt, mark)
            if kind is not None and pkt is not None:
                seen.append(Seen(f, pkt, kind))
    return seen


def _rank(view: LiveView, ns: str, iface: str, direction: str) -> int:
    """Frames of one skb share a stamp: a port's 'in' comes before its bridge's, eth0's before
    flannel.1's (decapsulation), and a bridge's or VXLAN device's 'out' before its port's or eth0's."""
    link = view.state(ns).link(iface)
    upper = link is not None and link.kind in ("bridge", "vxlan")
    return (1 if upper else 0) if direction == "in" else (0 if upper else 1)


def _hops(items: list[Seen], view: LiveView, walks: list[list[Hop]], ports: frozenset[int]) -> list[Hop]:
    """Captured frames as hops, in capture order; each carries the walk's decision for its place
    (a later walk, resumed after a rewrite, decides the places it reaches)."""
    decisions: dict[tuple[str, str, str], str | None] = {}
    order: dict[tuple[str, str, str], int] = {}
    for n, walked in enumerate(walks):
        decisions.update({(h.netns, h.iface, h.direction): h.decision for h in walked})
        order.update({(h.netns, h.iface, h.direction): n * 1000 + i for i, h in enumerate(walked)})
    items = sorted(items, key=lambda s: (s.frame.stamp_ns,
                                         _rank(view, s.frame.netns, s.frame.iface, s.frame.direction),
                                         order.get((s.frame.netns, s.frame.iface, s.frame.direction), 99)))
    hops = []
    for s in items:
        f = s.frame
        hops.append(Hop(f.netns, view.owner(f.netns), f.iface, f.direction, decode.line(f.data, ports),
                        s.pkt.ttl, decisions.get((f.netns, f.iface, f.direction)), f.time))
    return hops


def trace(lab: Lab, src: str, dst: str, proto: str = "icmp", port: int | None = None, size: int | None = None,
          timeout: float = 2.0) -> Trace:
    """Send one marked probe from SRC to DST and report its path, its reply's, and a verdict."""
    started = time.monotonic()
    proto, port, size = endpoints.check_probe(proto, port, size)
    if not 0 < timeout <= 60:
        raise PodlabError(f"--timeout {timeout}: give 0.1 to 60 seconds")
    s, d = endpoints.pair(lab, src, dst)
    view = LiveView(lab)
    closing: threading.Thread | None = None
    try:
        src_ip = source_address(view, s, d.ip)
        if not src_ip:
            raise PodlabError(f"SRC {src}: it has no address to send from and no route to {d.ip}; "
                              f"'podlab explain {src} {dst}' shows why")
        mark = frames.Mark.new(proto, port)
        ports = capture.vxlan_ports(lab)
        stamps = capture.KernelStamps(s.netns)     # asked first: the kernel turns stamping on meanwhile
        try:
            sniffers = capture.open_sniffers(watched(lab, s.netns, d.netns))
        except BaseException:
            stamps.close()
            raise
        try:
            stamps_on = stamps.wait()
            stamps.close()      # the sniffers keep stamping on from here
            send_error = _send(s.netns, frames.build(mark, src_ip, d.ip, size), d.ip)
            seen = [] if send_error else _collect(sniffers, mark, ports, s.netns, timeout, min(QUIET, timeout))
        finally:
            stamps.close()
            # The sockets close (~30 ms of RCU grace periods, waited out together) while the walk runs.
            closing = capture.close_all(sniffers)
        if any(frames.frag_needed_mtu(x.pkt) for x in seen if x.kind == "error"):
            flush_route_cache(s.netns)   # the probe taught the source a path MTU: forget it again
        pkt = request_packet(src_ip, d.ip, proto, port, size, sport=None if proto == "icmp" else mark.ident)
        result = _result(view, s, d, pkt, seen, send_error, ports)
        if not stamps_on:
            result.notes.append("podlab could not confirm that the kernel stamps frames as it delivers them "
                                "(a datagram over lo in the source did not come back in time): the hops may be "
                                "in the order they were read rather than the order they were seen")
    finally:
        view.close()
        if closing is not None:
            closing.join()
    result.elapsed = time.monotonic() - started
    return result


def _rewritten(requests: list[Seen], pkt: Packet) -> tuple[Seen, Packet] | None:
    """The first capture of the probe with another destination than it was sent to, and the packet
    as it is from there on."""
    for x in sorted(requests, key=lambda x: x.frame.stamp_ns):
        l4 = x.pkt.payload
        dport = struct.unpack_from("!H", l4, 2)[0] if pkt.proto != "icmp" and len(l4) >= 4 else None
        if x.pkt.dst != pkt.dst or (dport is not None and dport != pkt.dport):
            return x, replace(pkt, dst=x.pkt.dst, dport=dport, ttl=x.pkt.ttl)
    return None


def _result(view: LiveView, s: endpoints.End, d: endpoints.End, pkt: Packet, seen: list[Seen],
            send_error: OSError | None, ports: frozenset[int]) -> Trace:
    """Hops from the captures, decisions from the walk, and the verdict from both."""
    requests = [x for x in seen if x.kind == "request"]
    walked, walked_back = walk_both(view, s.netns or "", pkt)
    walks = [walked.hops]
    notes = []
    rewrite = _rewritten(requests, pkt)
    if rewrite is not None:      # DNAT on the way (a Service): walk on from there, as the packet went
        x, moved = rewrite
        f = x.frame
        walked, walked_back = walk_both(view, f.netns, moved, f.iface if f.direction == "in" else None, True)
        walks.append(walked.hops)
        port = f":{pkt.dport}" if pkt.dport else ""
        notes.append(f"{view.owner(f.netns)} rewrote the destination {pkt.dst}{port} to {moved.dst}"
                     f"{f':{moved.dport}' if moved.dport else ''} (DNAT, as kube-proxy does for a Service)")
    back = walked_back.hops if walked_back else []
    hops = _hops(requests, view, walks, ports)
    reply_hops = _hops([x for x in seen if x.kind != "request"], view, [back], ports)
    errors = [x.pkt for x in sorted(seen, key=lambda x: x.frame.stamp_ns) if x.kind == "error"]
    evidence = Evidence(src_ns=s.netns or "", dst_ns=d.netns or (walked.ns if walked.delivered else None),
                        hops=hops, reply_hops=reply_hops, errors=errors, send_error=send_error,
                        walked=walked, walked_back=walked_back, size=pkt.length, proto=pkt.proto, port=pkt.dport,
                        answered=any(x.kind == "reply" and x.frame.netns == s.netns and x.frame.direction == "in"
                                     for x in seen))
    v = judge(view, evidence)
    v.notes = notes + v.notes
    return Trace(src=s.name, dst=d.name, proto=pkt.proto, hops=hops, reply_hops=reply_hops, verdict=v.verdict,
                 where=view.owner(v.ns) if v.ns else None, reason=v.reason, port=pkt.dport, size=pkt.length,
                 src_ip=pkt.src, dst_ip=pkt.dst, where_netns=v.ns if v.reason else None, replied=v.replied,
                 sent=True, notes=v.notes)
