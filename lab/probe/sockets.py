"""Sockets inside the lab's namespaces, for the probes: made in bulk, bound to the endpoint's address.

A socket keeps the namespace it was made in, so one helper thread visits every namespace a
batch needs (lab.engine.netns.run_in_each, ~10 us a namespace) and the main thread uses the
sockets from wherever it is; it never changes namespace itself.
"""
from __future__ import annotations

import errno
import os
import resource
import socket
from collections.abc import Sequence

from lab.engine import netns as nsmod

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

# (namespace, socket type, protocol, the addresses to bind, one socket each; None: leave unbound)
Order = tuple[str, int, int, Sequence[str | None]]


def raise_nofile(needed: int) -> None:
    """Let the process hold `needed` more descriptors (raw sockets per namespace, HTTP connections)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 64
    want = in_use + needed + 64
    if want <= soft:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
    except (ValueError, OSError):
        if hard > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _bind_or_not(sock: socket.socket, kind: int, ip: str | None) -> None:
    """Send from the endpoint's own address (a node has several: the bridge's, the underlay's)."""
    if ip is None:
        return
    if kind == socket.SOCK_STREAM:
        # The port is picked at connect(), where the kernel only needs the 4-tuple to be unique:
        # cheaper than bind's search for a port free for every destination.
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    try:
        sock.bind((ip, 0))
    except OSError as e:
        if e.errno != errno.EADDRNOTAVAIL:
            raise
        # The address is not in that namespace (someone removed it): send from whatever the
        # routes pick, and the receiver will report the difference.


def _make(kind: int, proto: int, ips: Sequence[str | None]) -> list[socket.socket]:
    made: list[socket.socket] = []
    try:
        for ip in ips:
            s = socket.socket(socket.AF_INET, kind | socket.SOCK_NONBLOCK, proto)
            made.append(s)
            _bind_or_not(s, kind, ip)
    except BaseException:
        for s in made:
            s.close()
        raise
    return made


def sockets_in_each(orders: Sequence[Order]) -> list[list[socket.socket] | OSError]:
    """Non-blocking sockets for each order, made in its namespace by one helper thread for all.

    An order that fails (its namespace is gone) gets its OSError in its place; not being root
    is one PermissionError for the whole call.
    """
    jobs = [(name, (lambda k=kind, p=proto, a=ips: _make(k, p, a))) for name, kind, proto, ips in orders]
    made = nsmod.run_in_each(jobs)
    for result in made:
        if isinstance(result, OSError):
            try:
                check_privilege(result)
            except PermissionError:
                for other in made:
                    if not isinstance(other, OSError):
                        for s in other:
                            s.close()
                raise
    return made


def check_privilege(e: OSError) -> None:
    """Not being root fails every pair alike: say so once instead of drawing a matrix of ✗."""
    if e.errno in (errno.EPERM, errno.EACCES):
        raise PermissionError(e.errno, "probing needs root: it opens raw sockets inside the lab's "
                                       f"network namespaces ({e.strerror})") from e


def cannot_open(name: str, e: OSError) -> str:
    return f"cannot open a socket in namespace {name}: {errno_text(e.errno or 0)}"


def errno_text(code: int) -> str:
    return {errno.ECONNREFUSED: "connection refused", errno.ETIMEDOUT: "timeout",
            errno.EHOSTUNREACH: "host unreachable", errno.ENETUNREACH: "network unreachable",
            errno.ECONNRESET: "connection reset", errno.EADDRNOTAVAIL: "address not available",
            errno.EPERM: "operation not permitted", errno.EACCES: "permission denied",
            errno.ENOBUFS: "no buffer space (neighbour table full?)",
            }.get(code, os.strerror(code).lower())
