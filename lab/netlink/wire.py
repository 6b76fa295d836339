"""Netlink on the wire: constants, struct layouts, attributes, message framing.

The one copy of every number podlab speaks to the kernel (linux/netlink.h, rtnetlink.h,
if_link.h, neighbour.h, pkt_sched.h, nfnetlink.h); writer, dump and query import it. Stdlib
only and nothing computed at import, so every reader of the kernel can afford it.
"""
from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ipaddress import IPv4Address

# ---------------------------------------------------------------- netlink families and framing

NETLINK_ROUTE, NETLINK_NETFILTER = 0, 12
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP_INTR = 0x1, 0x4, 0x10
NLM_F_DUMP = 0x300                                      # NLM_F_ROOT | NLM_F_MATCH
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
CREATE = NLM_F_CREATE | NLM_F_EXCL                      # `ip ... add`: fails with EEXIST if it is there
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF                                  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER

# ---------------------------------------------------------------- rtnetlink message types

RTM_NEWLINK, RTM_GETLINK, RTM_SETLINK = 16, 18, 19
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
RTM_SETNEIGHTBL = 67
# A link's IPv4 settings (net.ipv4.conf.<dev>.*) and neighbour parameters (net.ipv4.neigh.<dev>.*)
# by netlink: linux/if_link.h IFLA_AF_SPEC, linux/ip.h IPV4_DEVCONF_*, linux/neighbour.h.
IFLA_AF_SPEC, IFLA_INET_CONF = 26, 1
IPV4_DEVCONF = {"forwarding": 1, "proxy_arp": 3, "rp_filter": 8, "arp_notify": 22, "route_localnet": 26}
NDTA_NAME, NDTA_PARMS, NDTPA_IFINDEX, NDTPA_PROXY_DELAY = 1, 6, 1, 13
RTM_NEWQDISC = 36
RTM_NEWNSID, RTM_GETNSID = 88, 90
RTM_F_FIB_MATCH = 0x2000                                # route get: the FIB entry, not the result

AF_UNSPEC, AF_INET, AF_BRIDGE = 0, 2, 7
IFF_UP = 0x1
IFF_RUNNING = 0x40

# ---------------------------------------------------------------- attributes

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER = 1, 3, 4, 5, 10
IFLA_PROTINFO, IFLA_LINKINFO, IFLA_IFALIAS, IFLA_NET_NS_FD = 12, 18, 20, 28
IFLA_NUM_TX_QUEUES, IFLA_NUM_RX_QUEUES, IFLA_LINK_NETNSID = 31, 32, 37
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFLA_VXLAN_ID, IFLA_VXLAN_LINK, IFLA_VXLAN_LOCAL, IFLA_VXLAN_LEARNING, IFLA_VXLAN_PORT = 1, 3, 4, 7, 15
IFLA_BRPORT_MODE = 4            # hairpin
IFLA_BR_MCAST_SNOOPING = 23     # in a bridge's IFLA_INFO_DATA
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_SRC, RTA_IIF, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC = 1, 2, 3, 4, 5, 6, 7
RTA_MULTIPATH, RTA_TABLE = 9, 15
RTN_UNICAST, RTN_BLACKHOLE = 1, 6
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_HOST, RT_SCOPE_NOWHERE = 0, 253, 254, 255
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3                 # what `ip route add` uses
RTPROT_BIRD = 12                # BIRD's routes: `ip route` prints `proto bird`
RTNH_F_ONLINK = 4
NDA_DST, NDA_LLADDR, NDA_MASTER = 1, 2, 9
NUD_PERMANENT = 0x80
NTF_SELF = 0x02
NETNSA_NSID, NETNSA_FD = 1, 3
TCA_KIND, TCA_OPTIONS = 1, 2
TC_H_ROOT = 0xFFFFFFFF
NFNL_SUBSYS_NFTABLES, NFT_MSG_GETTABLE = 10, 1

# ---------------------------------------------------------------- struct layouts

HEADER = struct.Struct("=IHHII")        # nlmsghdr: length, type, flags, seq, pid
IFINFO = struct.Struct("=BxHiII")       # ifinfomsg: family, type, index, flags, change
IFADDR = struct.Struct("=BBBBI")        # ifaddrmsg: family, prefixlen, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")     # rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
NDMSG = struct.Struct("=BxxxiHBB")      # ndmsg: family, index, state, flags, type
RTNEXTHOP = struct.Struct("=HBBi")      # rtnexthop: len, flags, hops (weight - 1), ifindex
RTGENMSG = struct.Struct("=B3x")        # rtgenmsg, padded as RTM_GETNSID wants it
NFGENMSG = struct.Struct("=BBH")        # nfgenmsg: family, version, res_id
_ATTR = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")


def ifinfomsg(index: int = 0, family: int = AF_UNSPEC, flags: int = 0, change: int = 0) -> bytes:
    return IFINFO.pack(family, 0, index, flags, change)


def ifaddrmsg(prefixlen: int, index: int, scope: int = RT_SCOPE_UNIVERSE) -> bytes:
    return IFADDR.pack(AF_INET, prefixlen, 0, scope, index)


def rtmsg(dst_len: int, scope: int, rtype: int, flags: int = 0, protocol: int = RTPROT_BOOT) -> bytes:
    """An IPv4 route of the main table, as `ip route add` sends it."""
    return RTMSG.pack(AF_INET, dst_len, 0, 0, RT_TABLE_MAIN, protocol, scope, rtype, flags)


def ndmsg(family: int, index: int, state: int, flags: int = 0) -> bytes:
    return NDMSG.pack(family, index, state, flags, 0)


# ---------------------------------------------------------------- attributes packed

def attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return _ATTR.pack(length, kind) + payload + b"\0" * (-length % 4)


def nested(kind: int, *attrs: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(attrs))


def u8(kind: int, v: int) -> bytes:
    return attr(kind, bytes((v,)))


def u32(kind: int, v: int) -> bytes:
    return attr(kind, _U32.pack(v))


def u64(kind: int, v: int) -> bytes:
    return attr(kind, struct.pack("=Q", v))


def be16(kind: int, v: int) -> bytes:
    return attr(kind, struct.pack("!H", v))


def string(kind: int, s: str) -> bytes:
    return attr(kind, s.encode() + b"\0")


def ip4(kind: int, a: IPv4Address) -> bytes:
    return attr(kind, a.packed)


def mac(kind: int, m: str) -> bytes:
    return attr(kind, bytes.fromhex(m.replace(":", "")))


# ---------------------------------------------------------------- attributes read

def attrs(data: bytes | memoryview, offset: int = 0) -> dict[int, bytes]:
    """The attributes of one message body from `offset` on, by type (the last of a type wins)."""
    out: dict[int, bytes] = {}
    end = len(data)
    while offset + 4 <= end:
        length, kind = _ATTR.unpack_from(data, offset)
        if length < 4:
            break
        out[kind & NLA_TYPE_MASK] = bytes(data[offset + 4:offset + length])
        offset += (length + 3) & ~3
    return out


# Decoded as pyroute2 gives them (addresses as text, MACs as lowercase aa:bb:..., absent as
# None), so what lab.inspect builds is the same whichever decoder read the kernel.

def as_mac(raw: bytes | None) -> str | None:
    return ":".join(f"{b:02x}" for b in raw) if raw is not None else None


def as_ip(raw: bytes | None) -> str | None:
    """An address attribute as text (IPv4 or IPv6, as the attribute's length says)."""
    if raw is None:
        return None
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    if len(raw) == 16:
        return socket.inet_ntop(socket.AF_INET6, raw)     # inet_ntop, as pyroute2 writes them too
    return None


def as_text(raw: bytes | None) -> str | None:
    return raw.split(b"\0", 1)[0].decode(errors="replace") if raw is not None else None


def as_u32(raw: bytes | None) -> int | None:
    return _U32.unpack_from(raw)[0] if raw is not None and len(raw) >= 4 else None


def as_i32(raw: bytes | None) -> int | None:
    return _I32.unpack_from(raw)[0] if raw is not None and len(raw) >= 4 else None


# ---------------------------------------------------------------- messages

def message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return HEADER.pack(HEADER.size + len(body), kind, flags, seq, 0) + body


def messages(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(type, flags, seq, payload) of each message in one read."""
    offset, end = 0, len(data)
    while offset + HEADER.size <= end:
        length, mtype, mflags, seq, _pid = HEADER.unpack_from(data, offset)
        if length < HEADER.size:    # would never end; the kernel does not send it
            raise OSError(errno.EBADMSG, f"malformed netlink message (length {length})")
        yield mtype, mflags, seq, data[offset + HEADER.size:offset + length]
        offset += (length + 3) & ~3


def error_code(payload: bytes) -> int:
    """The errno of an NLMSG_ERROR message (0: an acknowledgement)."""
    return -_I32.unpack_from(payload)[0]


def open_socket(family: int = NETLINK_ROUTE) -> socket.socket:
    """A netlink socket in the calling thread's namespace (a socket keeps the namespace it
    was made in)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, family)
    sock.bind((0, 0))
    return sock
