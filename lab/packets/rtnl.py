"""The two rtnetlink queries a walk asks again and again, on a socket made inside a namespace.

`ip route get` (RTM_GETROUTE, optionally with the input interface and `fibmatch`) and
RTM_GETNSID are small requests; pyroute2 would open a socket and start its machinery for each,
in a helper thread that has joined the namespace. One plain NETLINK_ROUTE socket per namespace
(netns.socket_in: a socket keeps the namespace it was made in) answers them from the calling
thread in microseconds. Everything else is read through lab.inspect (lab.rtdump's dumps, on the
same socket when the caller has one).
"""
from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from lab.engine import netns as nsmod
from lab.engine.netlink import attr
from lab.rtdump import attrs

NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
RTM_NEWNSID, RTM_GETNSID = 88, 90
RTM_F_FIB_MATCH = 0x2000
RTA_DST, RTA_SRC, RTA_IIF, RTA_OIF, RTA_GATEWAY, RTA_PREFSRC, RTA_TABLE = 1, 2, 3, 4, 5, 7, 15
NETNSA_NSID, NETNSA_FD = 1, 3
_HDR = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")


@dataclass(frozen=True)
class RouteReply:
    error: int              # 0, or the errno the kernel answered with
    type: int = 0
    table: int = 0
    dst: str | None = None
    dst_len: int = 0
    oif: int | None = None
    gateway: str | None = None
    prefsrc: str | None = None
    flags: int = 0


class Rtnl:
    def __init__(self, ns: str | None = None, sock: socket.socket | None = None):
        """A socket made in namespace `ns`, or `sock` (a NETLINK_ROUTE socket made there)."""
        if sock is None:
            if ns is None:
                raise ValueError("Rtnl needs a namespace or a socket made in one")
            sock = nsmod.socket_in(ns, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
            sock.bind((0, 0))
        self.sock = sock
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def _ask(self, kind: int, body: bytes) -> tuple[int, int, bytes]:
        """(error, message type, payload) of the kernel's one answer to one request."""
        self.seq += 1
        self.sock.send(_HDR.pack(_HDR.size + len(body), kind, NLM_F_REQUEST, self.seq, 0) + body)
        while True:
            data = self.sock.recv(65536)
            offset = 0
            while offset + _HDR.size <= len(data):
                length, mtype, _flags, seq, _pid = _HDR.unpack_from(data, offset)
                payload = data[offset + _HDR.size:offset + length]
                offset += (length + 3) & ~3
                if seq != self.seq:
                    continue
                if mtype == NLMSG_ERROR:
                    return -struct.unpack_from("=i", payload)[0], mtype, payload
                return 0, mtype, payload

    def route_get(self, dst: str, src: str | None = None, iif: int | None = None,
                  fibmatch: bool = False) -> RouteReply:
        body = _RTMSG.pack(socket.AF_INET, 32, 32 if src else 0, 0, 0, 0, 0, 0,
                           RTM_F_FIB_MATCH if fibmatch else 0)
        body += attr(RTA_DST, IPv4Address(dst).packed)
        if src:
            body += attr(RTA_SRC, IPv4Address(src).packed)
        if iif:
            body += attr(RTA_IIF, struct.pack("=I", iif))
        error, mtype, payload = self._ask(RTM_GETROUTE, body)
        if error or mtype != RTM_NEWROUTE:
            return RouteReply(error or 22)
        _family, dst_len, _src_len, _tos, table, _proto, _scope, rtype, flags = _RTMSG.unpack_from(payload)
        a = attrs(payload[_RTMSG.size:])

        def ip(kind: int) -> str | None:
            return str(IPv4Address(a[kind])) if len(a.get(kind, b"")) == 4 else None
        return RouteReply(0, rtype, struct.unpack("=I", a[RTA_TABLE])[0] if RTA_TABLE in a else table,
                          ip(RTA_DST), dst_len, struct.unpack("=I", a[RTA_OIF])[0] if RTA_OIF in a else None,
                          ip(RTA_GATEWAY), ip(RTA_PREFSRC), flags)

    def nsid(self, fd: int) -> int | None:
        """The id this namespace gives the namespace open at `fd`, if it gave it one."""
        request = struct.pack("=B3x", socket.AF_UNSPEC) + attr(NETNSA_FD, struct.pack("=I", fd))
        error, mtype, payload = self._ask(RTM_GETNSID, request)
        if error or mtype != RTM_NEWNSID:
            return None
        raw = attrs(payload[4:]).get(NETNSA_NSID)
        value = struct.unpack("=i", raw)[0] if raw and len(raw) == 4 else -1
        return value if value >= 0 else None
