"""ICMP echo requests built and IPv4/ICMP packets read, as raw sockets send and return them."""
from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

ICMP_ECHO_REPLY, ICMP_DEST_UNREACH, ICMP_ECHO, ICMP_TIME_EXCEEDED = 0, 3, 8, 11
UNREACHABLE = {0: "network unreachable", 1: "host unreachable", 2: "protocol unreachable",
               3: "port unreachable", 4: "fragmentation needed", 9: "network administratively prohibited",
               10: "host administratively prohibited", 13: "administratively prohibited"}


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071).

    The ones' complement sum of 16-bit words is the number the bytes spell modulo 0xFFFF
    (2**16 = 1 mod 0xFFFF), with 0xFFFF standing for zero when any bit is set.
    """
    if len(data) % 2:
        data += b"\0"
    total = int.from_bytes(data, "big") % 0xFFFF
    if total == 0 and any(data):
        total = 0xFFFF
    return ~total & 0xFFFF


def build_echo(ident: int, seq: int, payload: bytes) -> bytes:
    """An ICMP echo request (type 8): header with checksum, then the payload."""
    head = struct.pack("!BBHHH", ICMP_ECHO, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ICMP_ECHO, 0, checksum(head + payload), ident, seq) + payload


@dataclass(frozen=True)
class IcmpPacket:
    src: str
    dst: str
    type: int
    code: int
    ident: int
    seq: int
    payload: bytes
    checksum_ok: bool = True
    quoted: IcmpPacket | None = None   # for errors: the echo request they quote


def parse_packet(data: bytes, _quoted: bool = False) -> IcmpPacket | None:
    """Parse an IPv4 packet as a raw socket returns it; None unless it is ICMP we can read."""
    if len(data) < 20 or data[0] >> 4 != 4 or data[9] != socket.IPPROTO_ICMP:
        return None
    ihl = (data[0] & 0x0F) * 4
    icmp = data[ihl:]
    if len(icmp) < 8:
        return None
    kind, code, _sum, ident, seq = struct.unpack_from("!BBHHH", icmp)
    src, dst = socket.inet_ntoa(data[12:16]), socket.inet_ntoa(data[16:20])
    quoted = None
    if not _quoted and kind in (ICMP_DEST_UNREACH, ICMP_TIME_EXCEEDED):
        quoted = parse_packet(icmp[8:], _quoted=True)
    # A quoted packet may be cut short, so its checksum cannot be checked.
    ok = True if _quoted else checksum(icmp) == 0
    return IcmpPacket(src, dst, kind, code, ident, seq, icmp[8:], ok, quoted)
