"""Just enough rtnetlink to build a lab, batched.

Bringing up a lab is thousands of small requests. Each request is a few struct.pack calls,
and many requests travel in one send(2): the kernel handles a netlink request synchronously
inside send, so requests are applied in the order they are sent (across sockets too). Only
the last request of a batch asks for an acknowledgement (failures are reported anyway).
Reading the kernel back (inspection) is lab.rtdump's job.
"""
from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address

# message types and flags (linux/rtnetlink.h, linux/netlink.h)
RTM_NEWLINK, RTM_GETLINK, RTM_SETLINK = 16, 18, 19
RTM_NEWADDR = 20
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
RTM_NEWNEIGH = 28
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE, NLM_F_APPEND = 0x100, 0x200, 0x400, 0x800
NLA_F_NESTED = 0x8000
CREATE = NLM_F_CREATE | NLM_F_EXCL

AF_UNSPEC, AF_INET, AF_BRIDGE = 0, 2, 7
IFF_UP = 0x1
IFF_RUNNING = 0x40

# attributes
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER = 1, 3, 4, 10
IFLA_PROTINFO, IFLA_LINKINFO, IFLA_IFALIAS, IFLA_NET_NS_FD = 12, 18, 20, 28
IFLA_NUM_TX_QUEUES, IFLA_NUM_RX_QUEUES = 31, 32
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFLA_VXLAN_ID, IFLA_VXLAN_LINK, IFLA_VXLAN_LOCAL, IFLA_VXLAN_LEARNING, IFLA_VXLAN_PORT = 1, 3, 4, 7, 15
IFLA_BRPORT_MODE = 4            # hairpin
IFLA_BR_MCAST_SNOOPING = 23     # in a bridge's IFLA_INFO_DATA
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PREFSRC, RTA_TABLE = 1, 4, 5, 7, 15
RTN_UNICAST, RTN_BLACKHOLE = 1, 6
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_HOST, RT_SCOPE_NOWHERE = 0, 253, 254, 255
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3                 # what `ip route add` uses
RTNH_F_ONLINK = 4
NDA_DST, NDA_LLADDR = 1, 2
NUD_PERMANENT = 0x80
NTF_SELF = 0x02


def attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def nested(kind: int, *attrs: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(attrs))


def u8(kind: int, v: int) -> bytes:
    return attr(kind, struct.pack("=B", v))


def u32(kind: int, v: int) -> bytes:
    return attr(kind, struct.pack("=I", v))


def be16(kind: int, v: int) -> bytes:
    return attr(kind, struct.pack("!H", v))


def string(kind: int, s: str) -> bytes:
    return attr(kind, s.encode() + b"\0")


def ip4(kind: int, a: IPv4Address) -> bytes:
    return attr(kind, a.packed)


def mac(kind: int, m: str) -> bytes:
    return attr(kind, bytes.fromhex(m.replace(":", "")))


# A veth made without queue counts gets one queue per possible CPU and is then cut down to
# one while registered, which waits for an RCU grace period (synchronize_net): ~1 ms or more
# per veth on a busy machine. Asking for one queue from the start skips the wait.
ONE_QUEUE = u32(IFLA_NUM_TX_QUEUES, 1) + u32(IFLA_NUM_RX_QUEUES, 1)


def ifinfomsg(index: int = 0, family: int = AF_UNSPEC, flags: int = 0, change: int = 0) -> bytes:
    return struct.pack("=BxHiII", family, 0, index, flags, change)


def ifaddrmsg(prefixlen: int, index: int, scope: int = RT_SCOPE_UNIVERSE) -> bytes:
    return struct.pack("=BBBBI", AF_INET, prefixlen, 0, scope, index)


def rtmsg(dst_len: int, scope: int, rtype: int, flags: int = 0, protocol: int = RTPROT_BOOT) -> bytes:
    return struct.pack("=BBBBBBBBI", AF_INET, dst_len, 0, 0, RT_TABLE_MAIN, protocol, scope, rtype, flags)


def ndmsg(family: int, index: int, state: int, flags: int = 0) -> bytes:
    return struct.pack("=BxxxiHBB", family, index, state, flags, 0)


@dataclass
class Request:
    """One netlink request and what to call it if it fails (a string, or a function making
    one: naming thousands of requests that succeed would cost more than sending them)."""
    type: int
    flags: int
    body: bytes
    what: str | Callable[[], str]

    def encode(self, seq: int, ack: bool = True) -> bytes:
        flags = self.flags | NLM_F_REQUEST | (NLM_F_ACK if ack else 0)
        return struct.pack("=IHHII", 16 + len(self.body), self.type, flags, seq, 0) + self.body


class NetlinkError(OSError):
    def __init__(self, code: int, what: str | Callable[[], str]):
        what = what() if callable(what) else what
        super().__init__(code, f"{what}: {os.strerror(code)}")
        self.what = what


# Adding what exists already is success: steps are idempotent.
_BENIGN = {errno.EEXIST}


class Channel:
    """A netlink socket in one namespace, sending requests in batches."""

    BATCH_BYTES = 48 * 1024

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((0, 0))
        self._seq = 0
        self._pending: list[tuple[int, Request]] = []
        self._buffer: list[bytes] = []
        self._size = 0

    def queue(self, req: Request) -> None:
        self._seq += 1
        # No acknowledgement asked for: the kernel still answers a request that fails (with its
        # sequence number), and flush() asks one for the last request of the batch only. The
        # kernel handles a batch in order, so that one answer means all before it are done:
        # one recv(2) per batch instead of one per request.
        data = req.encode(self._seq, ack=False)
        self._pending.append((self._seq, req))
        self._buffer.append(data)
        self._size += len(data)
        if self._size >= self.BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Send what is queued and wait until the kernel has handled all of it; raise on the
        first failure."""
        if not self._buffer:
            return
        last = bytearray(self._buffer[-1])
        struct.pack_into("=H", last, 6, struct.unpack_from("=H", last, 6)[0] | NLM_F_ACK)
        self._buffer[-1] = bytes(last)
        self.sock.send(b"".join(self._buffer))
        sent = {seq: req for seq, req in self._pending}
        final = self._pending[-1][0]
        self._buffer, self._pending, self._size = [], [], 0
        failure: NetlinkError | None = None
        done = False
        while not done:
            data = self.sock.recv(1 << 20)
            offset = 0
            while offset < len(data):
                length, mtype, _flags, seq, _pid = struct.unpack_from("=IHHII", data, offset)
                if mtype == NLMSG_ERROR and seq in sent:
                    code = -struct.unpack_from("=i", data, offset + 16)[0]
                    req = sent.pop(seq)
                    if code and code not in _BENIGN and failure is None:
                        failure = NetlinkError(code, req.what)
                    done = done or seq == final
                offset += (length + 3) & ~3
        if failure:
            raise failure

    def close(self) -> None:
        self.sock.close()


def links_running(sock: socket.socket, indexes: list[int], batch: int = 256) -> set[int]:
    """Which of these links the kernel reports running: operationally up, which for a veth means
    the kernel's link watcher has also started its transmit queue (until then it drops packets)."""
    running: set[int] = set()
    for start in range(0, len(indexes), batch):
        chunk = indexes[start:start + batch]
        sock.send(b"".join(Request(RTM_GETLINK, 0, ifinfomsg(i), "").encode(n + 1, ack=False)
                           for n, i in enumerate(chunk)))
        pending = len(chunk)
        while pending:
            data = sock.recv(1 << 20)
            offset = 0
            while offset < len(data):
                length, mtype = struct.unpack_from("=IH", data, offset)
                if mtype == RTM_NEWLINK:
                    index, flags = struct.unpack_from("=iI", data, offset + 20)
                    if flags & IFF_RUNNING:
                        running.add(index)
                    pending -= 1
                elif mtype == NLMSG_ERROR:
                    pending -= 1      # a link that is gone is not running
                offset += (length + 3) & ~3
    return running
