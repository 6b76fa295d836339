"""One readable line per frame.

  10.244.0.2 > 10.244.1.2 ICMP echo-request id 4660 seq 1 ttl 64 len 84
  10.244.0.2:40312 > 10.244.1.3:80 TCP [S] seq 1 ttl 63 len 60
  10.244.0.2 > 10.244.1.2 ICMP echo-request id 4660 seq 1 ttl 63 len 84 | outer 192.168.56.11 > 192.168.56.12 UDP
      8472 VNI 1   (one line)
  ARP who-has 10.244.0.1 tell 10.244.0.2

A VXLAN frame shows the inner packet first (what the pods sent) and the underlay header after
the bar, so lines of one flow read alike on every hop.

A TCP segment to or from port 179 that carries data ends with its BGP messages (lab.packets.bgp):

  172.18.0.2:179 > 172.18.0.3:40312 TCP [PA] seq 1 ack 1 ttl 64 len 71 DF: BGP KEEPALIVE

The frames a lab carries (Ethernet, one 802.1Q tag, IPv4, ICMP, TCP, UDP, VXLAN, ARP) are
decoded here with struct, into exactly the line scapy's dissection gives (dissect.py; the
unit tests hold the two to each other). Anything else, or anything unusual about those
headers, goes to dissect.py: importing scapy takes a good fraction of a second, which a trace
of ordinary frames never needs to pay. So does BGP, which is rare (a KEEPALIVE each 30 s a
session) and scapy.contrib.bgp knows in full.
"""
from __future__ import annotations

import socket
import struct

from lab.packets import dissect
from lab.packets.frames import VXLAN_PORTS
from lab.packets.result import Decoded

BGP_PORT = 179
ETH_P_IP, ETH_P_ARP, ETH_P_8021Q = 0x0800, 0x0806, 0x8100
IP_MF, IP_DF = 0x2000, 0x4000
# The ports scapy binds VXLAN to, whatever the lab uses (decoding must say what scapy says).
SCAPY_VXLAN_DPORTS = frozenset({4789, 4790, 6633, 8472, 48879})
SCAPY_VXLAN_SPORTS = frozenset({4789, 4790, 6633, 8472})
VXLAN_FLAG_NEXT_PROTOCOL, VXLAN_FLAG_GBP = 0x04, 0x80     # VXLAN-GPE, group policy: other fields
VXLAN_ETHERNET = (0, 3)         # GPE next-protocol values scapy reads as an Ethernet frame
ICMP_EXTENSIONS_FROM = 144      # RFC 4884: scapy looks for extensions in ICMP errors this long
TCP_FLAGS = "FSRPAUECN"         # bit order, as scapy names them
ICMP_TYPES = {0: "echo-reply", 3: "dest-unreach", 4: "source-quench", 5: "redirect", 8: "echo-request",
              11: "time-exceeded", 12: "parameter-problem"}
ICMP_CODES = {
    3: {0: "network-unreachable", 1: "host-unreachable", 2: "protocol-unreachable", 3: "port-unreachable",
        4: "fragmentation-needed", 5: "source-route-failed", 6: "network-unknown", 7: "host-unknown",
        9: "network-prohibited", 10: "host-prohibited", 11: "TOS-network-unreachable",
        12: "TOS-host-unreachable", 13: "communication-prohibited", 14: "host-precedence-violation",
        15: "precedence-cutoff"},
    5: {0: "network-redirect", 1: "host-redirect", 2: "TOS-network-redirect", 3: "TOS-host-redirect"},
    11: {0: "ttl-zero-during-transit", 1: "ttl-zero-during-reassembly"},
    12: {0: "ip-header-bad", 1: "required-option-missing"},
}
ICMP_QUOTING = (3, 4, 5, 11, 12)        # errors (and redirects) that carry the packet they are about

_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBB")
_ARP = struct.Struct("!HHBBH6s4s6s4s")


def decode(frame: bytes, vxlan_ports: frozenset[int] = VXLAN_PORTS) -> Decoded:
    found = _ethernet(frame, vxlan_ports)
    if found is not None:
        return found
    return dissect.decode(frame, vxlan_ports)


def line(frame: bytes, vxlan_ports: frozenset[int] = VXLAN_PORTS) -> str:
    return decode(frame, vxlan_ports).text


def quick(frame: bytes, vxlan_ports: frozenset[int] = VXLAN_PORTS) -> Decoded | None:
    """The struct decoding alone: None where scapy must decide."""
    return _ethernet(frame, vxlan_ports)


# Each step returns None for what it does not know for sure: the whole frame then goes to scapy.

def _ethernet(frame: bytes, vxlan_ports: frozenset[int]) -> Decoded | None:
    if len(frame) < 14:
        return None
    (etype,) = struct.unpack_from("!H", frame, 12)
    offset = 14
    if etype == ETH_P_8021Q:
        if len(frame) < 18:
            return None
        (etype,) = struct.unpack_from("!H", frame, 16)
        offset = 18
    if etype == ETH_P_IP:
        return _ipv4(frame[offset:], vxlan_ports)
    if etype == ETH_P_ARP:
        return _arp(frame[offset:])
    return None


def _ipv4(data: bytes, vxlan_ports: frozenset[int]) -> Decoded | None:
    if len(data) < 20:
        return None
    ver_ihl, _tos, total, _id, flags_frag, ttl, proto, _csum, s, d = _IPV4.unpack_from(data)
    # Options, and lengths that disagree with the bytes, are scapy's to judge.
    if ver_ihl != 0x45 or not 20 <= total <= len(data):
        return None
    src, dst = socket.inet_ntoa(s), socket.inet_ntoa(d)
    frag = flags_frag & 0x1FFF
    l4 = data[20:total]
    if proto == 17 and not frag:
        inner = _vxlan(src, dst, l4, vxlan_ports)
        if inner is not None:
            return inner or None       # False: a VXLAN frame scapy must decode
    transport = _transport(proto, frag, l4)
    if transport is None:
        return None
    name, detail, ports = transport
    if ports is not None:
        where_from, where_to = f"{src}:{ports[0]}", f"{dst}:{ports[1]}"
    else:
        where_from, where_to = src, dst
    flags = " DF" if flags_frag & IP_DF else ""
    if frag or flags_frag & IP_MF:
        flags += f" frag {frag * 8}{'+' if flags_frag & IP_MF else ''}"
    text = f"{where_from} > {where_to} {name}{(' ' + detail) if detail else ''} ttl {ttl} len {total}{flags}"
    return Decoded(text, src, dst, name, ttl, total)


def _transport(proto: int, frag: int, l4: bytes) -> tuple[str, str, tuple[int, int] | None] | None:
    """(protocol name, detail, (sport, dport) for TCP/UDP), as dissect._transport words them."""
    if frag:
        return f"proto {proto}", "(fragment)", None
    if proto == 1:
        return _icmp(l4)
    if proto == 6:
        return _tcp(l4)
    if proto == 17:
        if len(l4) < 8:
            return None
        sport, dport, length = struct.unpack_from("!HHH", l4)
        if not 8 <= length <= len(l4):
            return None
        return "UDP", "", (sport, dport)
    return None        # other protocols: scapy knows which it dissects further (GRE, IP in IP, ...)


def _icmp(l4: bytes) -> tuple[str, str, None] | None:
    if len(l4) < 8:
        return None
    kind, code = l4[0], l4[1]
    if kind in (0, 8):
        ident, seq = struct.unpack_from("!HH", l4, 4)
        return "ICMP", f"{ICMP_TYPES[kind]} id {ident} seq {seq}", None
    if kind not in ICMP_QUOTING:
        return None
    # RFC 4884 lengths and extensions change what scapy takes for the quoted packet.
    if kind in (3, 11, 12) and (l4[5] or len(l4) >= ICMP_EXTENSIONS_FROM):
        return None
    detail = f"{ICMP_TYPES[kind]} {ICMP_CODES.get(kind, {}).get(code, f'code-{code}')}"
    if kind == 3 and code == 4:
        detail += f" mtu {struct.unpack_from('!H', l4, 6)[0]}"
    quoted = l4[8:]
    if quoted:
        if len(quoted) < 20 or quoted[0] >> 4 != 4 or quoted[0] & 0x0F < 5:
            return None
        detail += f" (for {socket.inet_ntoa(quoted[12:16])} > {socket.inet_ntoa(quoted[16:20])} proto {quoted[9]})"
    return "ICMP", detail, None


def _tcp(l4: bytes) -> tuple[str, str, tuple[int, int]] | None:
    if len(l4) < 20:
        return None
    sport, dport, seq, ack, offset_byte, low_flags = _TCP.unpack_from(l4)
    header = (offset_byte >> 4) * 4
    if header < 20 or header > len(l4) or not _options_well_formed(l4[20:header]):
        return None
    if BGP_PORT in (sport, dport) and len(l4) > header:
        return None                     # BGP messages: dissect.py names them (scapy.contrib.bgp)
    flags = ((offset_byte & 1) << 8) | low_flags
    names = "".join(name for bit, name in enumerate(TCP_FLAGS) if flags & (1 << bit))
    detail = f"[{names}] seq {seq}" + (f" ack {ack}" if flags & 0x10 else "")
    return "TCP", detail, (sport, dport)


def _options_well_formed(options: bytes) -> bool:
    """Every option inside the header, none with a length below 2 (scapy's parse of anything
    else is its own)."""
    i = 0
    while i < len(options):
        kind = options[i]
        if kind == 0:                   # end of options: the rest is padding
            return not any(options[i + 1:])
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(options) or options[i + 1] < 2 or i + options[i + 1] > len(options):
            return False
        i += options[i + 1]
    return True


def _vxlan(src: str, dst: str, udp: bytes, vxlan_ports: frozenset[int]) -> Decoded | bool | None:
    """The inner frame of a VXLAN packet, with the outer header after the bar; None if it is no
    VXLAN packet (plain UDP), False if it is one only scapy can decode."""
    if len(udp) < 8:
        return None
    sport, dport, length = struct.unpack_from("!HHH", udp)
    bound = dport in SCAPY_VXLAN_DPORTS or sport in SCAPY_VXLAN_SPORTS
    if not bound and dport not in vxlan_ports:
        return None
    if not 8 <= length <= len(udp):
        return False
    payload = udp[8:length]
    if not bound and len(payload) < 8 + 14:
        return None                     # too short for VXLAN on a port scapy does not bind: UDP
    if len(payload) < 8 + 14:
        return False
    flags = payload[0]
    if flags & VXLAN_FLAG_NEXT_PROTOCOL and (flags & VXLAN_FLAG_GBP or payload[3] not in VXLAN_ETHERNET):
        return False                    # a longer header, or no Ethernet frame inside
    vni = int.from_bytes(payload[4:7], "big")
    inner = _ethernet(payload[8:], frozenset())
    if inner is None:
        return False
    outer = f"outer {src} > {dst} UDP {dport} VNI {vni}"
    return Decoded(f"{inner.text} | {outer}", inner.src, inner.dst, inner.proto, inner.ttl, inner.length, outer)


def _arp(data: bytes) -> Decoded | None:
    if len(data) < _ARP.size:
        return None
    hwtype, ptype, hwlen, plen, op, hwsrc, psrc_raw, _hwdst, pdst_raw = _ARP.unpack_from(data)
    if (hwtype, ptype, hwlen, plen) != (1, ETH_P_IP, 6, 4):
        return None
    psrc, pdst = socket.inet_ntoa(psrc_raw), socket.inet_ntoa(pdst_raw)
    if op == 1:
        text = f"ARP who-has {pdst} tell {psrc}"
    elif op == 2:
        text = f"ARP reply {psrc} is-at {':'.join(f'{b:02x}' for b in hwsrc)}"
    else:
        text = f"ARP op {op} {psrc} > {pdst}"
    return Decoded(text, psrc, pdst, "ARP")
