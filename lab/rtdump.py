"""Netlink dumps read with struct: links, addresses, routes, neighbours and FDB entries (what
lab.inspect reads back from a namespace), and whether nf_tables holds any table.

pyroute2 decodes every attribute of every message into objects: importing it costs 0.1-0.3 s
and decoding a node's dump tens of milliseconds, which every `trace`, `inspect` and TUI screen
paid. Here a dump is one request on a plain netlink socket, and only the attributes podlab
uses are decoded, into the values pyroute2 gives them (addresses as text, MACs as lowercase
aa:bb:..., missing attributes as None), so lab.inspect builds the same Snapshot from either.
The socket must be made in the namespace to read (netns.socket_in, or a helper thread that
joined it): a socket keeps the namespace it was made in.
"""
from __future__ import annotations

import itertools
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

NETLINK_ROUTE, NETLINK_NETFILTER = 0, 12
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP, NLM_F_DUMP_INTR = 0x1, 0x300, 0x10
NLA_TYPE_MASK = 0x3FFF          # without NLA_F_NESTED / NLA_F_NET_BYTEORDER
RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE, RTM_GETNEIGH = 18, 22, 26, 30
AF_UNSPEC, AF_INET, AF_BRIDGE = 0, 2, 7

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER = 1, 3, 4, 5, 10
IFLA_LINKINFO, IFLA_IFALIAS, IFLA_LINK_NETNSID = 18, 20, 37
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_VXLAN_ID, IFLA_VXLAN_LINK, IFLA_VXLAN_LOCAL, IFLA_VXLAN_LEARNING, IFLA_VXLAN_PORT = 1, 3, 4, 7, 15
IFA_ADDRESS = 1
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_MULTIPATH, RTA_TABLE = 1, 4, 5, 6, 7, 9, 15
_RTNEXTHOP = struct.Struct("=HBBi")   # rtnh_len, rtnh_flags, rtnh_hops (weight - 1), rtnh_ifindex
NDA_DST, NDA_LLADDR, NDA_MASTER = 1, 2, 9
NFNL_SUBSYS_NFTABLES, NFT_MSG_GETTABLE = 10, 1

BUFFER = 1 << 20                # the kernel fills a dump message up to ~32 KiB; a few fit
DUMP_RETRIES = 3                # a dump interrupted by a concurrent change is asked again

_HDR = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")
_IFADDR = struct.Struct("=BBBBi")
_RTMSG = struct.Struct("=BBBBBBBBI")
_NDMSG = struct.Struct("=BxxxiHBB")
_NFGEN = struct.Struct("=BBH")
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")


class DumpInterrupted(OSError):
    """The namespace kept changing while it was read: no consistent dump after a few tries."""


# ---------------------------------------------------------------- messages and attributes

def attrs(data: bytes | memoryview, offset: int = 0) -> dict[int, bytes]:
    """The attributes of one message body from `offset` on, by type (the last of a type wins)."""
    out: dict[int, bytes] = {}
    end = len(data)
    while offset + 4 <= end:
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        out[kind & NLA_TYPE_MASK] = bytes(data[offset + 4:offset + length])
        offset += (length + 3) & ~3
    return out


def mac(raw: bytes | None) -> str | None:
    return ":".join(f"{b:02x}" for b in raw) if raw is not None else None


def ip(raw: bytes | None) -> str | None:
    """An address attribute as text (IPv4 or IPv6, as the attribute's length says)."""
    if raw is None:
        return None
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    if len(raw) == 16:
        return socket.inet_ntop(socket.AF_INET6, raw)     # inet_ntop, as pyroute2 writes them too
    return None


def text(raw: bytes | None) -> str | None:
    return raw.split(b"\0", 1)[0].decode(errors="replace") if raw is not None else None


def u32(raw: bytes | None) -> int | None:
    return _U32.unpack_from(raw)[0] if raw is not None and len(raw) >= 4 else None


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
    sock.send(_HDR.pack(_HDR.size + len(body), kind, NLM_F_REQUEST | NLM_F_DUMP | flags, seq, 0) + body)
    out: list[tuple[int, bytes]] = []
    interrupted = False
    while True:
        data = sock.recv(BUFFER)
        offset = 0
        while offset + _HDR.size <= len(data):
            length, mtype, mflags, mseq, _pid = _HDR.unpack_from(data, offset)
            if length < _HDR.size:
                return out, interrupted
            payload = data[offset + _HDR.size:offset + length]
            offset += (length + 3) & ~3
            if mseq != seq:
                continue                  # an answer to an earlier request on this socket
            interrupted = interrupted or bool(mflags & NLM_F_DUMP_INTR)
            if mtype == NLMSG_DONE:
                return out, interrupted
            if mtype == NLMSG_ERROR:
                code = -_I32.unpack_from(payload)[0]
                if code:
                    raise OSError(code, f"netlink dump of message type {kind}: {os.strerror(code)}")
                return out, interrupted
            out.append((mtype, payload))


def open_socket(family: int = NETLINK_ROUTE) -> socket.socket:
    """A netlink socket in the calling thread's namespace."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, family)
    sock.bind((0, 0))
    return sock


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
    for _, payload in dump(sock, RTM_GETLINK, _IFINFO.pack(AF_UNSPEC, 0, 0, 0, 0)):
        _family, _type, index, flags, _change = _IFINFO.unpack_from(payload)
        a = attrs(payload, _IFINFO.size)
        info = attrs(a[IFLA_LINKINFO]) if IFLA_LINKINFO in a else {}
        kind = text(info.get(IFLA_INFO_KIND))
        netnsid = a.get(IFLA_LINK_NETNSID)
        link = LinkMsg(index, flags, text(a.get(IFLA_IFNAME)), u32(a.get(IFLA_MTU)), mac(a.get(IFLA_ADDRESS)),
                       u32(a.get(IFLA_MASTER)), u32(a.get(IFLA_LINK)),
                       _I32.unpack_from(netnsid)[0] if netnsid is not None and len(netnsid) >= 4 else None,
                       text(a.get(IFLA_IFALIAS)), kind)
        if kind == "vxlan" and IFLA_INFO_DATA in info:
            d = attrs(info[IFLA_INFO_DATA])
            port = d.get(IFLA_VXLAN_PORT)
            learning = d.get(IFLA_VXLAN_LEARNING)
            link.vxlan = VxlanMsg(u32(d.get(IFLA_VXLAN_ID)), ip(d.get(IFLA_VXLAN_LOCAL)),
                                  struct.unpack("!H", port[:2])[0] if port and len(port) >= 2 else None,
                                  learning[0] if learning else None, u32(d.get(IFLA_VXLAN_LINK)))
        out.append(link)
    return out


@dataclass
class AddrMsg:
    index: int
    prefixlen: int
    address: str | None            # IFA_ADDRESS


def addresses(sock: socket.socket, family: int = AF_INET) -> list[AddrMsg]:
    out = []
    for _, payload in dump(sock, RTM_GETADDR, _IFADDR.pack(family, 0, 0, 0, 0)):
        fam, prefixlen, _flags, _scope, index = _IFADDR.unpack_from(payload)
        if fam == family:
            out.append(AddrMsg(index, prefixlen, ip(attrs(payload, _IFADDR.size).get(IFA_ADDRESS))))
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
    while len(view) >= _RTNEXTHOP.size:
        length, flags, hops, index = _RTNEXTHOP.unpack_from(view)
        if length < _RTNEXTHOP.size:
            break
        nested = attrs(view[:length], _RTNEXTHOP.size)
        out.append((ip(nested.get(RTA_GATEWAY)), index, hops + 1, flags))
        view = view[(length + 3) & ~3:]
    return tuple(out)


def routes(sock: socket.socket, family: int = AF_INET) -> list[RouteMsg]:
    out = []
    for _, payload in dump(sock, RTM_GETROUTE, _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)):
        fam, dst_len, _src_len, _tos, table, proto, scope, rtype, flags = _RTMSG.unpack_from(payload)
        if fam != family:
            continue
        a = attrs(payload, _RTMSG.size)
        out.append(RouteMsg(u32(a.get(RTA_TABLE)) if RTA_TABLE in a else table, ip(a.get(RTA_DST)), dst_len,
                            rtype, scope, proto, flags, u32(a.get(RTA_OIF)), ip(a.get(RTA_GATEWAY)),
                            ip(a.get(RTA_PREFSRC)), u32(a.get(RTA_PRIORITY)), _nexthops(a.get(RTA_MULTIPATH))))
    return out


@dataclass
class NeighMsg:
    index: int
    state: int
    flags: int
    dst: str | None                # NDA_DST: the neighbour's address, or a VXLAN FDB entry's remote VTEP
    lladdr: str | None
    master: int | None


def neighbours(sock: socket.socket, family: int = AF_INET) -> list[NeighMsg]:
    """The neighbour table (AF_INET), or the bridge and VXLAN forwarding databases (AF_BRIDGE)."""
    out = []
    for _, payload in dump(sock, RTM_GETNEIGH, _NDMSG.pack(family, 0, 0, 0, 0)):
        fam, index, state, flags, _type = _NDMSG.unpack_from(payload)
        if fam != family:
            continue
        a = attrs(payload, _NDMSG.size)
        out.append(NeighMsg(index, state, flags, ip(a.get(NDA_DST)), mac(a.get(NDA_LLADDR)),
                            u32(a.get(NDA_MASTER))))
    return out


# ---------------------------------------------------------------- nf_tables

def nft_has_tables(sock: socket.socket) -> bool:
    """Whether nf_tables holds any table (of any family) in the socket's namespace; `sock` is a
    NETLINK_NETFILTER socket. No nf_tables in the kernel: an error, which means none."""
    try:
        for _ in dump(sock, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE, _NFGEN.pack(AF_UNSPEC, 0, 0)):
            return True
    except OSError:
        return False
    return False
