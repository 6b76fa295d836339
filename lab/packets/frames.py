"""Frames at struct level: find the IPv4 packet in a frame (through VXLAN), build a marked
probe, and tell the probe, its reply and ICMP errors about it apart from all other traffic.

This is the hot path of a trace (every frame on every interface of the lab passes through
`classify`), so it uses struct, not scapy; decode.py makes the readable lines.
"""
from __future__ import annotations

import os
import random
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

ETH_HLEN = 14
ETH_P_IP, ETH_P_ARP, ETH_P_8021Q = 0x0800, 0x0806, 0x8100
IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP = 1, 6, 17
PROTO_NUMBERS = {"icmp": IPPROTO_ICMP, "tcp": IPPROTO_TCP, "udp": IPPROTO_UDP}
VXLAN_PORTS = frozenset({4789, 8472})
VXLAN_HLEN = 8
# What VXLAN adds around an inner IP packet: outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14.
VXLAN_OVERHEAD = 50
ICMP_ECHO_REPLY, ICMP_DEST_UNREACH, ICMP_ECHO, ICMP_TIME_EXCEEDED, ICMP_PARAMPROB = 0, 3, 8, 11, 12
ICMP_ERRORS = (ICMP_DEST_UNREACH, ICMP_TIME_EXCEEDED, ICMP_PARAMPROB)
IP_DF = 0x4000
TCP_SYN, TCP_RST, TCP_ACK = 0x02, 0x04, 0x10
TAG = b"podlab-trace:"
DEFAULT_TTL = 64


@dataclass(frozen=True)
class Outer:
    """The underlay header of a VXLAN-encapsulated frame."""
    src: str
    dst: str
    sport: int
    dport: int
    vni: int
    ttl: int


@dataclass(frozen=True)
class IPv4:
    """One IPv4 packet found in a frame: its bytes, and the VXLAN header it travelled in, if any."""
    data: bytes
    outer: Outer | None = None
    dst_mac: str = ""          # of the frame that carried it (the inner frame when encapsulated)

    @property
    def ihl(self) -> int:
        return (self.data[0] & 0x0F) * 4

    @property
    def ttl(self) -> int:
        return self.data[8]

    @property
    def proto(self) -> int:
        return self.data[9]

    @property
    def ip_id(self) -> int:
        return struct.unpack_from("!H", self.data, 4)[0]

    @property
    def length(self) -> int:
        return struct.unpack_from("!H", self.data, 2)[0]

    @property
    def src(self) -> str:
        return str(IPv4Address(self.data[12:16]))

    @property
    def dst(self) -> str:
        return str(IPv4Address(self.data[16:20]))

    @property
    def payload(self) -> bytes:
        return self.data[self.ihl:]


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _ethernet_payload(frame: bytes) -> tuple[int, bytes] | None:
    if len(frame) < ETH_HLEN:
        return None
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    offset = ETH_HLEN
    if ethertype == ETH_P_8021Q and len(frame) >= ETH_HLEN + 4:
        (ethertype,) = struct.unpack_from("!H", frame, 16)
        offset += 4
    return ethertype, frame[offset:]


def is_arp(frame: bytes) -> bool:
    found = _ethernet_payload(frame)
    return found is not None and found[0] == ETH_P_ARP


def ipv4_in(frame: bytes, vxlan_ports: frozenset[int] = VXLAN_PORTS) -> IPv4 | None:
    """The IPv4 packet a frame carries; for VXLAN, the inner one (with the outer header noted)."""
    found = _ethernet_payload(frame)
    if found is None or found[0] != ETH_P_IP:
        return None
    data = found[1]
    if len(data) < 20 or data[0] >> 4 != 4:
        return None
    pkt = IPv4(data, dst_mac=_mac(frame[0:6]))
    if pkt.proto != IPPROTO_UDP:
        return pkt
    udp = pkt.payload
    if len(udp) < 8 + VXLAN_HLEN + ETH_HLEN + 20:
        return pkt
    sport, dport = struct.unpack_from("!HH", udp, 0)
    if dport not in vxlan_ports or not udp[8] & 0x08:      # the I flag: a valid VNI follows
        return pkt
    vni = int.from_bytes(udp[12:15], "big")
    inner_frame = udp[8 + VXLAN_HLEN:]
    inner = _ethernet_payload(inner_frame)
    if inner is None or inner[0] != ETH_P_IP or len(inner[1]) < 20:
        return pkt
    outer = Outer(pkt.src, pkt.dst, sport, dport, vni, pkt.ttl)
    return IPv4(inner[1], outer, dst_mac=_mac(inner_frame[0:6]))


# ---------------------------------------------------------------- checksums and probes

def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@dataclass(frozen=True)
class Mark:
    """What makes one probe recognisable anywhere on its path, and its answers too.

    The IP ID and the payload tag survive forwarding and encapsulation; the ICMP
    identifier/sequence or TCP/UDP source port and TCP sequence identify the answers.
    """
    proto: str                 # icmp | tcp | udp
    ip_id: int
    ident: int                 # ICMP identifier, or the TCP/UDP source port
    seq: int                   # ICMP sequence, or the TCP sequence number
    dport: int | None          # TCP/UDP destination port
    tag: bytes

    @classmethod
    def new(cls, proto: str, port: int | None = None) -> Mark:
        if proto not in PROTO_NUMBERS:
            raise ValueError(f"unknown protocol {proto!r}")
        rnd = random.SystemRandom()
        ident = rnd.randrange(1, 65536) if proto == "icmp" else rnd.randrange(33000, 61000)
        seq = rnd.randrange(1, 65536) if proto == "icmp" else rnd.randrange(1, 2 ** 32)
        return cls(proto, rnd.randrange(1, 65536), ident, seq, port, TAG + os.urandom(6).hex().encode())


def header_size(proto: str) -> int:
    return 20 + {"icmp": 8, "tcp": 20, "udp": 8}[proto]


def min_size(proto: str) -> int:
    """The smallest probe: headers, plus the tag for ICMP and UDP (a TCP SYN carries no payload)."""
    return header_size(proto) + (0 if proto == "tcp" else len(TAG) + 12)


def default_size(proto: str) -> int:
    """ping's default for ICMP (84 bytes); the smallest probe otherwise."""
    return 84 if proto == "icmp" else min_size(proto)


def build(mark: Mark, src: str, dst: str, size: int | None = None, ttl: int = DEFAULT_TTL,
          df: bool = True) -> bytes:
    """The whole IPv4 packet of a probe, `size` bytes long (IP total length)."""
    size = size or default_size(mark.proto)
    if size < min_size(mark.proto):
        raise ValueError(f"a {mark.proto} probe needs at least {min_size(mark.proto)} bytes")
    s, d = IPv4Address(src).packed, IPv4Address(dst).packed
    pad = size - header_size(mark.proto)
    body = (mark.tag + b"\0" * pad)[:pad] if mark.proto != "tcp" else b"\0" * pad
    proto = PROTO_NUMBERS[mark.proto]
    if mark.proto == "icmp":
        head = struct.pack("!BBHHH", ICMP_ECHO, 0, 0, mark.ident, mark.seq)
        l4 = struct.pack("!BBHHH", ICMP_ECHO, 0, checksum(head + body), mark.ident, mark.seq) + body
    else:
        pseudo = s + d + struct.pack("!BBH", 0, proto, size - 20)
        if mark.proto == "tcp":
            head = struct.pack("!HHIIBBHHH", mark.ident, mark.dport or 0, mark.seq, 0, 5 << 4, TCP_SYN,
                               64240, 0, 0)
            csum = checksum(pseudo + head + body)
            l4 = head[:16] + struct.pack("!H", csum) + head[18:] + body
        else:
            head = struct.pack("!HHHH", mark.ident, mark.dport or 0, size - 20, 0)
            csum = checksum(pseudo + head + body) or 0xFFFF
            l4 = head[:6] + struct.pack("!H", csum) + body
    flags = IP_DF if df else 0
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, size, mark.ip_id, flags, ttl, proto, 0, s, d)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return ip + l4


# ---------------------------------------------------------------- recognising probes

def _ports(pkt: IPv4) -> tuple[int, int] | None:
    l4 = pkt.payload
    return struct.unpack_from("!HH", l4, 0) if len(l4) >= 4 else None


def is_request(pkt: IPv4, mark: Mark) -> bool:
    if pkt.ip_id != mark.ip_id or pkt.proto != PROTO_NUMBERS[mark.proto]:
        return False
    l4 = pkt.payload
    if mark.proto == "icmp":
        return len(l4) >= 8 and l4[0] == ICMP_ECHO and struct.unpack_from("!HH", l4, 4) == (mark.ident, mark.seq)
    ports = _ports(pkt)
    # The destination port is not checked: a Service's DNAT rewrites it on the way (port -> targetPort).
    if ports is None or ports[0] != mark.ident:
        return False
    return mark.proto == "udp" or (len(l4) >= 8 and struct.unpack_from("!I", l4, 4)[0] == mark.seq)


def is_reply(pkt: IPv4, mark: Mark) -> bool:
    l4 = pkt.payload
    if pkt.proto != PROTO_NUMBERS[mark.proto]:
        return False
    if mark.proto == "icmp":
        return (len(l4) >= 8 and l4[0] == ICMP_ECHO_REPLY
                and struct.unpack_from("!HH", l4, 4) == (mark.ident, mark.seq) and l4[8:].startswith(mark.tag))
    ports = _ports(pkt)
    # Only our source port is checked: before a Service's DNAT is undone the answer comes from targetPort.
    if ports is None or ports[1] != mark.ident:
        return False
    if mark.proto == "udp":
        return True
    # A SYN-ACK (port open) or a RST (port closed) answering our SYN: it acknowledges seq + 1.
    return len(l4) >= 14 and struct.unpack_from("!I", l4, 8)[0] == (mark.seq + 1) % 2 ** 32 \
        and bool(l4[13] & (TCP_ACK | TCP_RST))


def quoted(pkt: IPv4) -> IPv4 | None:
    """The packet an ICMP error quotes (its header and the first bytes after it)."""
    l4 = pkt.payload
    if pkt.proto != IPPROTO_ICMP or len(l4) < 8 + 20 or l4[0] not in ICMP_ERRORS:
        return None
    inner = l4[8:]
    return IPv4(inner) if inner[0] >> 4 == 4 else None


def is_error(pkt: IPv4, mark: Mark) -> bool:
    """An ICMP error (unreachable, fragmentation needed, TTL exceeded) about our probe."""
    q = quoted(pkt)
    return q is not None and q.ip_id == mark.ip_id and q.proto == PROTO_NUMBERS[mark.proto]


def classify(pkt: IPv4 | None, mark: Mark) -> str | None:
    """'request', 'reply', 'error' or None (not ours)."""
    if pkt is None:
        return None
    if is_request(pkt, mark):
        return "request"
    if is_reply(pkt, mark):
        return "reply"
    if is_error(pkt, mark):
        return "error"
    return None


def icmp_error_text(pkt: IPv4) -> str:
    """'fragmentation needed (mtu 1450)', 'host unreachable', 'TTL exceeded' ..."""
    l4 = pkt.payload
    kind, code = l4[0], l4[1]
    if kind == ICMP_TIME_EXCEEDED:
        return "TTL exceeded"
    if kind == ICMP_PARAMPROB:
        return "parameter problem"
    names = {0: "network unreachable", 1: "host unreachable", 2: "protocol unreachable", 3: "port unreachable",
             4: "fragmentation needed", 9: "network administratively prohibited",
             10: "host administratively prohibited", 13: "administratively prohibited"}
    text = names.get(code, f"unreachable (code {code})")
    if code == 4:
        text += f" (mtu {struct.unpack_from('!H', l4, 6)[0]})"
    return text


def frag_needed_mtu(pkt: IPv4) -> int | None:
    l4 = pkt.payload
    if pkt.proto == IPPROTO_ICMP and len(l4) >= 8 and l4[0] == ICMP_DEST_UNREACH and l4[1] == 4:
        return struct.unpack_from("!H", l4, 6)[0]
    return None
