"""One readable line per frame, with scapy doing the dissection: every frame decode.py does
not decode itself (IPv6, odd Ethernet types, truncated or unusual headers), and the reference
its unit tests compare decode.py's lines with.

scapy is imported on first use: it takes a good fraction of a second (and reads the root
namespace's interfaces), which a trace of ordinary IPv4 frames never needs to pay.
"""
from __future__ import annotations

import functools
from typing import Any

from lab.packets import bgp
from lab.packets.frames import VXLAN_PORTS
from lab.packets.result import Decoded


@functools.cache
def _scapy() -> dict[str, Any]:
    from scapy.layers.inet import ICMP, IP, TCP, UDP, icmpcodes, icmptypes
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import ARP, Ether
    from scapy.layers.vxlan import VXLAN
    return dict(Ether=Ether, IP=IP, ICMP=ICMP, TCP=TCP, UDP=UDP, ARP=ARP, IPv6=IPv6, VXLAN=VXLAN,
                icmptypes=icmptypes, icmpcodes=icmpcodes)


def decode(frame: bytes, vxlan_ports: frozenset[int] = VXLAN_PORTS) -> Decoded:
    s = _scapy()
    try:
        eth = s["Ether"](frame)
    except Exception as e:  # scapy raises many kinds on garbage; a capture must go on
        return Decoded(f"undecodable frame ({type(e).__name__}) len {len(frame)}")
    return _layer3(eth, s, vxlan_ports, len(frame))


def _layer3(eth: Any, s: dict[str, Any], vxlan_ports: frozenset[int], frame_len: int) -> Decoded:
    if eth.haslayer(s["IP"]):
        ip = eth[s["IP"]]
        inner = _vxlan_inner(ip, s, vxlan_ports)
        if inner is not None:
            outer = (f"outer {ip.src} > {ip.dst} UDP {ip[s['UDP']].dport} VNI {inner[0]}")
            d = _layer3(inner[1], s, frozenset(), len(inner[1]))
            return Decoded(f"{d.text} | {outer}", d.src, d.dst, d.proto, d.ttl, d.length, outer)
        return _ipv4(ip, s)
    if eth.haslayer(s["ARP"]):
        return _arp(eth[s["ARP"]])
    if eth.haslayer(s["IPv6"]):
        ip6 = eth[s["IPv6"]]
        upper = ip6.payload.name if ip6.payload else "no payload"
        return Decoded(f"{ip6.src} > {ip6.dst} IPv6 {upper} hlim {ip6.hlim} len {ip6.plen + 40}",
                       ip6.src, ip6.dst, "IPv6", ip6.hlim, ip6.plen + 40)
    etype = getattr(eth, "type", 0) or 0
    return Decoded(f"{eth.src} > {eth.dst} ethertype 0x{etype:04x} len {frame_len}")


def _vxlan_inner(ip: Any, s: dict[str, Any], vxlan_ports: frozenset[int]) -> tuple[int, Any] | None:
    if not ip.haslayer(s["UDP"]):
        return None
    udp = ip[s["UDP"]]
    if udp.haslayer(s["VXLAN"]):
        vx = udp[s["VXLAN"]]
    elif udp.dport in vxlan_ports and len(bytes(udp.payload)) >= 8 + 14:
        vx = s["VXLAN"](bytes(udp.payload))     # a port scapy does not bind by default
    else:
        return None
    inner = vx.payload
    if not isinstance(inner, s["Ether"]):
        try:
            inner = s["Ether"](bytes(inner))
        except Exception:
            return None
    return int(vx.vni), inner


def _ipv4(ip: Any, s: dict[str, Any]) -> Decoded:
    proto, detail = _transport(ip, s)
    src, dst = ip.src, ip.dst
    if proto in ("TCP", "UDP"):
        l4 = ip[s[proto]]
        src, dst = f"{ip.src}:{l4.sport}", f"{ip.dst}:{l4.dport}"
    frag = " DF" if ip.flags.DF else ""
    if ip.frag or ip.flags.MF:
        frag += f" frag {ip.frag * 8}{'+' if ip.flags.MF else ''}"
    text = f"{src} > {dst} {proto}{(' ' + detail) if detail else ''} ttl {ip.ttl} len {ip.len}{frag}"
    if proto == "TCP":
        text += _bgp(ip[s["TCP"]])
    return Decoded(text, ip.src, ip.dst, proto, int(ip.ttl), int(ip.len))


def _bgp(tcp: Any) -> str:
    """': BGP KEEPALIVE' after a segment to or from port 179 that carries data; '' otherwise."""
    if bgp.PORT not in (tcp.sport, tcp.dport):
        return ""
    # The segment's own bytes (IP's length already cut off any Ethernet padding): scapy's BGP
    # layers would have read only the first message.
    raw = bytes(tcp.original)
    header = tcp.dataofs * 4
    if not 20 <= header < len(raw):
        return ""
    return ": " + bgp.summary(raw[header:])


def _transport(ip: Any, s: dict[str, Any]) -> tuple[str, str]:
    if ip.frag:
        return f"proto {ip.proto}", "(fragment)"
    if ip.proto == 1 and ip.haslayer(s["ICMP"]):
        icmp = ip[s["ICMP"]]
        name = s["icmptypes"].get(icmp.type, f"type-{icmp.type}")
        if icmp.type in (0, 8):
            return "ICMP", f"{name} id {icmp.id} seq {icmp.seq}"
        code = s["icmpcodes"].get(icmp.type, {}).get(icmp.code, f"code-{icmp.code}")
        detail = f"{name} {code}"
        if icmp.type == 3 and icmp.code == 4:
            detail += f" mtu {icmp.nexthopmtu}"
        quoted = icmp.payload
        if quoted and hasattr(quoted, "src") and hasattr(quoted, "dst"):
            detail += f" (for {quoted.src} > {quoted.dst} proto {getattr(quoted, 'proto', '?')})"
        return "ICMP", detail
    if ip.proto == 6 and ip.haslayer(s["TCP"]):
        tcp = ip[s["TCP"]]
        detail = f"[{tcp.flags}] seq {tcp.seq}" + (f" ack {tcp.ack}" if tcp.flags.A else "")
        return "TCP", detail
    if ip.proto == 17 and ip.haslayer(s["UDP"]):
        return "UDP", ""
    return f"proto {ip.proto}", ""


def _arp(arp: Any) -> Decoded:
    if arp.op == 1:
        text = f"ARP who-has {arp.pdst} tell {arp.psrc}"
    elif arp.op == 2:
        text = f"ARP reply {arp.psrc} is-at {arp.hwsrc}"
    else:
        text = f"ARP op {arp.op} {arp.psrc} > {arp.pdst}"
    return Decoded(text, arp.psrc, arp.pdst, "ARP")
