"""The two rtnetlink queries a walk asks again and again, on a socket made inside a namespace.

`ip route get` (RTM_GETROUTE, optionally with the input interface and `fibmatch`) and
RTM_GETNSID are small requests; pyroute2 would open a socket and start its machinery for each,
in a helper thread that has joined the namespace. One plain NETLINK_ROUTE socket per namespace
(netns.socket_in: a socket keeps the namespace it was made in) answers them from the calling
thread in microseconds. Everything else is read through lab.inspect (lab.netlink.dump's dumps,
on the same socket when the caller has one).
"""
from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from ipaddress import IPv4Address

from lab.engine import netns as nsmod
from lab.netlink import wire
from lab.netlink.wire import as_i32, as_u32, attrs


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
            sock = nsmod.socket_in(ns, socket.AF_NETLINK, socket.SOCK_RAW, wire.NETLINK_ROUTE)
            sock.bind((0, 0))
        self.sock = sock
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def _ask(self, kind: int, body: bytes) -> tuple[int, int, bytes]:
        """(error, message type, payload) of the kernel's one answer to one request."""
        self.seq += 1
        self.sock.send(wire.message(kind, wire.NLM_F_REQUEST, self.seq, body))
        while True:
            for mtype, _flags, seq, payload in wire.messages(self.sock.recv(65536)):
                if seq != self.seq:
                    continue
                if mtype == wire.NLMSG_ERROR:
                    return wire.error_code(payload), mtype, payload
                return 0, mtype, payload

    def route_get(self, dst: str, src: str | None = None, iif: int | None = None,
                  fibmatch: bool = False) -> RouteReply:
        body = wire.RTMSG.pack(wire.AF_INET, 32, 32 if src else 0, 0, 0, 0, 0, 0,
                               wire.RTM_F_FIB_MATCH if fibmatch else 0)
        body += wire.ip4(wire.RTA_DST, IPv4Address(dst))
        if src:
            body += wire.ip4(wire.RTA_SRC, IPv4Address(src))
        if iif:
            body += wire.u32(wire.RTA_IIF, iif)
        error, mtype, payload = self._ask(wire.RTM_GETROUTE, body)
        if error or mtype != wire.RTM_NEWROUTE:
            return RouteReply(error or errno.EINVAL)
        _family, dst_len, _src_len, _tos, table, _proto, _scope, rtype, flags = wire.RTMSG.unpack_from(payload)
        a = attrs(payload, wire.RTMSG.size)

        def ip(kind: int) -> str | None:
            return str(IPv4Address(a[kind])) if len(a.get(kind, b"")) == 4 else None
        return RouteReply(0, rtype, as_u32(a.get(wire.RTA_TABLE)) if wire.RTA_TABLE in a else table,
                          ip(wire.RTA_DST), dst_len, as_u32(a.get(wire.RTA_OIF)),
                          ip(wire.RTA_GATEWAY), ip(wire.RTA_PREFSRC), flags)

    def nsid(self, fd: int) -> int | None:
        """The id this namespace gives the namespace open at `fd`, if it gave it one."""
        request = wire.RTGENMSG.pack(wire.AF_UNSPEC) + wire.u32(wire.NETNSA_FD, fd)
        error, mtype, payload = self._ask(wire.RTM_GETNSID, request)
        if error or mtype != wire.RTM_NEWNSID:
            return None
        value = as_i32(attrs(payload, wire.RTGENMSG.size).get(wire.NETNSA_NSID))
        return value if value is not None and value >= 0 else None   # negative: no id given
