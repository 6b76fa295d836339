"""When has the kernel really finished a teardown?

Removing a network namespace (unmounting it, or ending the last process in it) returns at
once; the kernel deletes its devices, routes and sockets later, in a work queue that handles
dead namespaces in order, a batch at a time. To time a teardown to the end, a sentinel
namespace is released right after it, and we wait until the kernel has deleted the
sentinel's devices: by then every namespace released before it has been cleaned up too.

The sentinel is a veth pair between two namespaces of our own that have no name (no mount,
only file descriptors), made by a helper thread: nothing outside them is touched.
Stdlib only: the Mininet peer (Debian's /usr/bin/python3) uses it too.
"""
from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import threading
import time

CLONE_NEWNET = 0x40000000
RTM_NEWLINK, RTM_GETLINK, NLMSG_ERROR = 16, 18, 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL = 1, 4, 0x400, 0x200
IFLA_IFNAME, IFLA_LINKINFO, IFLA_NET_NS_FD = 3, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
_libc = ctypes.CDLL(None, use_errno=True)


def _attr(kind: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\0" * (-n % 4)


def _request(sock: socket.socket, mtype: int, flags: int, body: bytes) -> int:
    """Send one request, return its error code (0 = success)."""
    sock.send(struct.pack("=IHHII", 16 + len(body), mtype, flags | NLM_F_REQUEST | NLM_F_ACK, 1, 0) + body)
    while True:
        data = sock.recv(65536)
        offset = 0
        while offset < len(data):
            length, kind = struct.unpack_from("=IH", data, offset)
            if kind == NLMSG_ERROR:
                return -struct.unpack_from("=i", data, offset + 16)[0]
            offset += (length + 3) & ~3


def _ifinfo(name: str, extra: bytes = b"") -> bytes:
    return struct.pack("=BxHiII", 0, 0, 0, 0, 0) + _attr(IFLA_IFNAME, name.encode() + b"\0") + extra


class Sentinel:
    """Make one before a teardown; call wait() right after it returns."""

    def __init__(self) -> None:
        made: list = []

        def work() -> None:
            try:
                for _ in range(2):
                    if _libc.unshare(CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "unshare")
                    fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
                    made.append((fd, socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)))
            except BaseException as e:  # re-raised below
                made.append(e)

        t = threading.Thread(target=work, name="settle-sentinel")
        t.start()
        t.join()   # the thread has ended: only our file descriptors keep the two namespaces
        if any(isinstance(m, BaseException) for m in made):
            self._close(made)
            raise next(m for m in made if isinstance(m, BaseException))
        (self.watch_fd, self.watch), (self.probe_fd, probe_sock) = made
        probe_sock.close()
        peer = _ifinfo("snt1", _attr(IFLA_NET_NS_FD, struct.pack("=I", self.probe_fd)))
        info = _attr(IFLA_LINKINFO | 0x8000, _attr(IFLA_INFO_KIND, b"veth\0")
                     + _attr(IFLA_INFO_DATA | 0x8000, _attr(VETH_INFO_PEER, peer)))
        code = _request(self.watch, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, _ifinfo("snt0", info))
        if code:
            self.close()
            raise OSError(code, f"sentinel veth: {os.strerror(code)}")

    @staticmethod
    def _close(made: list) -> None:
        for m in made:
            if isinstance(m, tuple):
                os.close(m[0])
                m[1].close()

    def wait(self, timeout: float = 300.0) -> float:
        """Release the sentinel and wait until the kernel has deleted its devices; return the wait."""
        started = time.monotonic()
        os.close(self.probe_fd)
        self.probe_fd = -1
        while time.monotonic() - started < timeout:
            if _request(self.watch, RTM_GETLINK, 0, _ifinfo("snt0")) == errno.ENODEV:
                break
            time.sleep(0.005)
        else:
            raise TimeoutError("the kernel did not finish removing namespaces in time")
        waited = time.monotonic() - started
        self.close()
        return waited

    def close(self) -> None:
        if self.probe_fd >= 0:
            os.close(self.probe_fd)
            self.probe_fd = -1
        if self.watch_fd >= 0:
            self.watch.close()
            os.close(self.watch_fd)
            self.watch_fd = -1
