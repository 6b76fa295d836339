"""Just enough rtnetlink to build a lab, batched.

Bringing up a lab is thousands of small requests. Each request is a few struct.pack calls,
and many requests travel in one send(2): the kernel handles a netlink request synchronously
inside send, so requests are applied in the order they are sent (across sockets too). Only
the last request of a batch asks for an acknowledgement (failures are reported anyway).
Reading the kernel back (inspection) is lab.netlink.dump's job.
"""
from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from lab.netlink import wire

# A veth made without queue counts gets one queue per possible CPU and is then cut down to
# one while registered, which waits for an RCU grace period (synchronize_net): ~1 ms or more
# per veth on a busy machine. Asking for one queue from the start skips the wait.
ONE_QUEUE = wire.u32(wire.IFLA_NUM_TX_QUEUES, 1) + wire.u32(wire.IFLA_NUM_RX_QUEUES, 1)


@dataclass
class Request:
    """One netlink request and what to call it if it fails (a string, or a function making
    one: naming thousands of requests that succeed would cost more than sending them).

    `exists_ok`: whether the kernel's EEXIST means this request is done. Only where the
    kernel answers EEXIST for this very object and nothing else (an address: the same local
    address and prefix on the same device); elsewhere what is in the way may differ from what
    was asked (a route to the same destination via another gateway, a link of that name), so
    EEXIST fails like any error. `gone_ok`: a deletion whose object is not there (ENOENT,
    ESRCH: removed by hand meanwhile) is done."""
    type: int
    flags: int
    body: bytes
    what: str | Callable[[], str]
    exists_ok: bool = False
    gone_ok: bool = False

    def encode(self, seq: int, ack: bool = True) -> bytes:
        flags = self.flags | wire.NLM_F_REQUEST | (wire.NLM_F_ACK if ack else 0)
        return wire.HEADER.pack(wire.HEADER.size + len(self.body), self.type, flags, seq, 0) + self.body


_GONE = (errno.ENOENT, errno.ESRCH)


class NetlinkError(OSError):
    def __init__(self, code: int, what: str | Callable[[], str]):
        what = what() if callable(what) else what
        super().__init__(code, f"{what}: {os.strerror(code)}")
        self.what = what


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
        struct.pack_into("=H", last, 6, struct.unpack_from("=H", last, 6)[0] | wire.NLM_F_ACK)
        self._buffer[-1] = bytes(last)
        self.sock.send(b"".join(self._buffer))
        sent = {seq: req for seq, req in self._pending}
        final = self._pending[-1][0]
        self._buffer, self._pending, self._size = [], [], 0
        failure: NetlinkError | None = None
        done = False
        while not done:
            for mtype, _flags, seq, payload in wire.messages(self.sock.recv(1 << 20)):
                if mtype == wire.NLMSG_ERROR and seq in sent:
                    code = wire.error_code(payload)
                    req = sent.pop(seq)
                    if code and failure is None and not (code == errno.EEXIST and req.exists_ok) \
                            and not (code in _GONE and req.gone_ok):
                        failure = NetlinkError(code, req.what)
                    done = done or seq == final
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
        sock.send(b"".join(Request(wire.RTM_GETLINK, 0, wire.ifinfomsg(i), "").encode(n + 1, ack=False)
                           for n, i in enumerate(chunk)))
        pending = len(chunk)
        while pending:
            for mtype, _flags, _seq, payload in wire.messages(sock.recv(1 << 20)):
                if mtype == wire.RTM_NEWLINK:
                    index, flags = struct.unpack_from("=iI", payload, 4)   # ifinfomsg: ifi_index, ifi_flags
                    if flags & wire.IFF_RUNNING:
                        running.add(index)
                    pending -= 1
                elif mtype == wire.NLMSG_ERROR:
                    pending -= 1      # a link that is gone is not running
    return running


def link_index(sock: socket.socket, name: str) -> int | None:
    """The ifindex of the link called `name` in the socket's namespace; None if there is none."""
    sock.send(Request(wire.RTM_GETLINK, 0, wire.ifinfomsg() + wire.string(wire.IFLA_IFNAME, name), "").encode(1, ack=False))
    while True:
        for mtype, _flags, _seq, payload in wire.messages(sock.recv(1 << 16)):
            if mtype == wire.RTM_NEWLINK:
                return struct.unpack_from("=i", payload, 4)[0]
            if mtype == wire.NLMSG_ERROR:
                return None
