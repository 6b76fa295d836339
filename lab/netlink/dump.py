"""Netlink dumps read with struct: links, addresses, routes, neighbours and FDB entries (what
lab.inspect reads back from a namespace), and whether nf_tables holds any table.

pyroute2 decodes every attribute of every message into objects: importing it costs 0.1-0.3 s
and decoding a node's dump tens of milliseconds, which every `trace`, `inspect` and TUI screen
paid. Here a dump is one request on a plain netlink socket, and only the attributes podlab
uses are decoded, into the values pyroute2 gives them (wire.as_ip and the like), so
lab.inspect builds the same Snapshot from either. The socket must be made in the namespace to
read (wire.open_socket in a helper thread that joined it, or netns.socket_in): a socket keeps
the namespace it was made in.
"""
from __future__ import annotations

import itertools
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from lab.netlink import wire
from lab.netlink.wire import as_i32, as_ip, as_mac, as_text, as_u32, attrs

BUFFER = 1 << 20                # the kernel fills a dump message up to ~32 KiB; a few fit
DUMP_RETRIES = 3                # a dump interrupted by a concurrent change is asked again


class DumpInterrupted(OSError):
    """The namespace kept changing while it was read: no consistent dump after a few tries."""


def dump(sock: socket.socket, kind: int, body: bytes, flags: int = 0) -> Iterator[tuple[int, bytes]]:
    """(message type, payload) of every message the kernel dumps for one request."""
    for _ in range(DUMP_RETRIES):
        messages, interrupted = _dump_once(sock, kind, body, flags)
        if not interrupted:
            return iter(messages)
    raise DumpInterrupted(f"netlink dump of message type {kind} kept being interrupted by changes")


_sequence = itertools.count(1)     # next() is atomic: threads reading other namespaces share it


def _dump_once(sock: socket.socket, kind: int, body: bytes, flags: int) -> tuple[list[tuple[int, bytes]], bool]:
    seq = next(_sequence) & 0xFFFFFFFF
    sock.send(wire.message(kind, wire.NLM_F_REQUEST | wire.NLM_F_DUMP | flags, seq, body))
    out: list[tuple[int, bytes]] = []
    interrupted = False
    while True:
        for mtype, mflags, mseq, payload in wire.messages(sock.recv(BUFFER)):
            if mseq != seq:
                continue                  # an answer to an earlier request on this socket
            interrupted = interrupted or bool(mflags & wire.NLM_F_DUMP_INTR)
            if mtype == wire.NLMSG_DONE:
                return out, interrupted
            if mtype == wire.NLMSG_ERROR:
                code = wire.error_code(payload)
                if code:
                    raise OSError(code, f"netlink dump of message type {kind}: {os.strerror(code)}")
                return out, interrupted
            out.append((mtype, payload))


# ---------------------------------------------------------------- rtnetlink dumps

@dataclass
class VxlanMsg:
    id: int | None
    local: str | None
    port: int | None
    learning: int | None
    link: int | None               # the underlay device's index


@dataclass
class LinkMsg:
    index: int
    flags: int
    name: str | None
    mtu: int | None
    address: str | None
    master: int | None
    link: int | None               # IFLA_LINK: a veth's peer index
    link_netnsid: int | None       # IFLA_LINK_NETNSID: set when the peer is in another namespace
    alias: str | None
    kind: str | None               # IFLA_INFO_KIND
    vxlan: VxlanMsg | None = None


def links(sock: socket.socket) -> list[LinkMsg]:
    out = []
    for _, payload in dump(sock, wire.RTM_GETLINK, wire.ifinfomsg()):
        _family, _type, index, flags, _change = wire.IFINFO.unpack_from(payload)
        a = attrs(payload, wire.IFINFO.size)
        info = attrs(a[wire.IFLA_LINKINFO]) if wire.IFLA_LINKINFO in a else {}
        kind = as_text(info.get(wire.IFLA_INFO_KIND))
        link = LinkMsg(index, flags, as_text(a.get(wire.IFLA_IFNAME)), as_u32(a.get(wire.IFLA_MTU)),
                       as_mac(a.get(wire.IFLA_ADDRESS)), as_u32(a.get(wire.IFLA_MASTER)),
                       as_u32(a.get(wire.IFLA_LINK)), as_i32(a.get(wire.IFLA_LINK_NETNSID)),
                       as_text(a.get(wire.IFLA_IFALIAS)), kind)
        if kind == "vxlan" and wire.IFLA_INFO_DATA in info:
            d = attrs(info[wire.IFLA_INFO_DATA])
            port = d.get(wire.IFLA_VXLAN_PORT)
            learning = d.get(wire.IFLA_VXLAN_LEARNING)
            link.vxlan = VxlanMsg(as_u32(d.get(wire.IFLA_VXLAN_ID)), as_ip(d.get(wire.IFLA_VXLAN_LOCAL)),
                                  struct.unpack("!H", port[:2])[0] if port and len(port) >= 2 else None,
                                  learning[0] if learning else None, as_u32(d.get(wire.IFLA_VXLAN_LINK)))
        out.append(link)
    return out


@dataclass
class AddrMsg:
    index: int
    prefixlen: int
    address: str | None            # IFA_ADDRESS


def addresses(sock: socket.socket, family: int = wire.AF_INET) -> list[AddrMsg]:
    out = []
    for _, payload in dump(sock, wire.RTM_GETADDR, wire.IFADDR.pack(family, 0, 0, 0, 0)):
        fam, prefixlen, _flags, _scope, index = wire.IFADDR.unpack_from(payload)
        if fam == family:
            out.append(AddrMsg(index, prefixlen, as_ip(attrs(payload, wire.IFADDR.size).get(wire.IFA_ADDRESS))))
    return out


@dataclass
class RouteMsg:
    table: int                     # RTA_TABLE, or the header's 8-bit table
    dst: str | None
    dst_len: int
    type: int
    scope: int
    proto: int
    flags: int
    oif: int | None
    gateway: str | None
    prefsrc: str | None
    priority: int | None = None    # the metric `ip route` shows
    nexthops: tuple[tuple[str | None, int, int, int], ...] = ()   # multipath: (gateway, oif, weight, flags)


def _nexthops(raw: bytes | None) -> tuple[tuple[str | None, int, int, int], ...]:
    out = []
    view = memoryview(raw or b"")
    while len(view) >= wire.RTNEXTHOP.size:
        length, flags, hops, index = wire.RTNEXTHOP.unpack_from(view)
        if length < wire.RTNEXTHOP.size:
            break
        nested = attrs(view[:length], wire.RTNEXTHOP.size)
        out.append((as_ip(nested.get(wire.RTA_GATEWAY)), index, hops + 1, flags))
        view = view[(length + 3) & ~3:]
    return tuple(out)


def routes(sock: socket.socket, family: int = wire.AF_INET) -> list[RouteMsg]:
    out = []
    for _, payload in dump(sock, wire.RTM_GETROUTE, wire.RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)):
        fam, dst_len, _src_len, _tos, table, proto, scope, rtype, flags = wire.RTMSG.unpack_from(payload)
        if fam != family:
            continue
        a = attrs(payload, wire.RTMSG.size)
        out.append(RouteMsg(as_u32(a.get(wire.RTA_TABLE)) if wire.RTA_TABLE in a else table,
                            as_ip(a.get(wire.RTA_DST)), dst_len, rtype, scope, proto, flags,
                            as_u32(a.get(wire.RTA_OIF)), as_ip(a.get(wire.RTA_GATEWAY)),
                            as_ip(a.get(wire.RTA_PREFSRC)), as_u32(a.get(wire.RTA_PRIORITY)),
                            _nexthops(a.get(wire.RTA_MULTIPATH))))
    return out


@dataclass
class NeighMsg:
    index: int
    state: int
    flags: int
    dst: str | None                # NDA_DST: the neighbour's address, or a VXLAN FDB entry's remote VTEP
    lladdr: str | None
    master: int | None


def neighbours(sock: socket.socket, family: int = wire.AF_INET) -> list[NeighMsg]:
    """The neighbour table (AF_INET), or the bridge and VXLAN forwarding databases (AF_BRIDGE)."""
    out = []
    for _, payload in dump(sock, wire.RTM_GETNEIGH, wire.ndmsg(family, 0, 0)):
        fam, index, state, flags, _type = wire.NDMSG.unpack_from(payload)
        if fam != family:
            continue
        a = attrs(payload, wire.NDMSG.size)
        out.append(NeighMsg(index, state, flags, as_ip(a.get(wire.NDA_DST)), as_mac(a.get(wire.NDA_LLADDR)),
                            as_u32(a.get(wire.NDA_MASTER))))
    return out


# ---------------------------------------------------------------- nf_tables

def nft_has_tables(sock: socket.socket) -> bool:
    """Whether nf_tables holds any table (of any family) in the socket's namespace; `sock` is a
    NETLINK_NETFILTER socket. No nf_tables in the kernel: an error, which means none."""
    try:
        for _ in dump(sock, (wire.NFNL_SUBSYS_NFTABLES << 8) | wire.NFT_MSG_GETTABLE,
                      wire.NFGENMSG.pack(wire.AF_UNSPEC, 0, 0)):
            return True
    except OSError:
        return False
    return False
