"""Capture inside lab namespaces with AF_PACKET sockets: one process, no tcpdump per interface.

A packet socket keeps the namespace it was made in (netns.socket_in), so one process can watch
every interface of every lab namespace at once. The kernel stamps each frame (SO_TIMESTAMPNS)
when it is received or handed to the device, which orders frames across namespaces: a trace
sorts its hops by these stamps. Filters use tcpdump's syntax, compiled by libpcap (through
scapy) to classic BPF and attached to the socket, so the kernel drops what is not wanted.
"""
from __future__ import annotations

import ctypes
import errno
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab.engine import netns as nsmod
from lab.errors import PodlabError
from lab.packets import decode
from lab.packets.frames import VXLAN_PORTS

if TYPE_CHECKING:
    from lab.api import Lab

ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4
BUFFER = 262144               # a GSO super-frame on a veth can be 64 KiB and more
SOCKET_BUFFER = 4 * 1024 * 1024
_TIMESPEC = struct.Struct("=qq")


@dataclass
class PacketLine:
    time: float                # seconds since the epoch, as the kernel stamped the frame
    netns: str
    iface: str
    direction: str             # "in" | "out"
    text: str                  # the decoded line
    raw: bytes                 # the whole frame (Ethernet header first)


@dataclass
class Frame:
    time: float
    netns: str
    iface: str
    direction: str
    data: bytes
    stamp_ns: int = 0          # the kernel's stamp in integer ns: a float of epoch seconds only
                               # resolves ~240 ns, and hops of one packet can be closer than that


# ---------------------------------------------------------------- filters

class _Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Insn))]


def compile_filter(expression: str) -> bytes:
    """tcpdump filter syntax -> classic BPF instructions for Ethernet frames (8 bytes each)."""
    from scapy.arch.common import compile_filter as pcap_compile, free_filter
    from scapy.error import Scapy_Exception
    try:
        program = pcap_compile(expression, linktype=1)
    except (Scapy_Exception, ImportError) as e:
        detail = str(e).split("(")[-1].rstrip(")") if "(" in str(e) else str(e)
        raise PodlabError(f"-f {expression!r}: {detail}; use tcpdump's filter syntax, "
                          f"e.g. -f 'icmp or udp port 8472'") from None
    try:
        return ctypes.string_at(program.bf_insns, program.bf_len * ctypes.sizeof(_Insn))
    finally:
        free_filter(program)


def attach_filter(sock: socket.socket, program: bytes) -> None:
    count = len(program) // ctypes.sizeof(_Insn)
    insns = (_Insn * count).from_buffer_copy(program)
    prog = _Fprog(count, ctypes.cast(insns, ctypes.POINTER(_Insn)))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(prog))   # the kernel copies insns now


# ---------------------------------------------------------------- sockets

def _interfaces(netns: str) -> list[str]:
    return nsmod.run_in(netns, lambda: [name for _, name in socket.if_nameindex()])


def _packet_socket(iface: str | None) -> socket.socket:
    # Protocol 0 receives nothing until bound, so a filter is in place before the first frame.
    return socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0 if iface else socket.htons(ETH_P_ALL))


def _opened(netns: str, made: socket.socket | OSError) -> socket.socket:
    if isinstance(made, FileNotFoundError):
        raise PodlabError(f"namespace {netns} does not exist: is the lab still up?") from None
    if isinstance(made, PermissionError):
        raise PodlabError("capturing needs root: run it with sudo") from None
    if isinstance(made, OSError):
        raise made
    return made


class Sniffer:
    """One AF_PACKET socket in one namespace: every interface there, or just `iface`.

    `sock`: a packet socket already made in that namespace (open_sniffers makes many at once)."""

    def __init__(self, netns: str, iface: str | None = None, program: bytes | None = None,
                 sock: socket.socket | None = None):
        self.netns = netns
        self.iface = iface
        if sock is None:
            try:
                sock = nsmod.run_in(netns, lambda: _packet_socket(iface))
            except OSError as e:
                sock = _opened(netns, e)
        self.sock = sock
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), SOCKET_BUFFER)
            except OSError:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
            if program:
                attach_filter(self.sock, program)
            if iface:
                try:
                    self.sock.bind((iface, ETH_P_ALL))
                except OSError as e:
                    if e.errno != errno.ENODEV:
                        raise
                    raise PodlabError(f"no interface {iface!r} in namespace {netns}; it has: "
                                      f"{', '.join(_interfaces(netns))}") from None
            self.sock.setblocking(False)
            if program and not iface:
                self.drain()      # frames queued before the filter was attached
        except BaseException:
            self.sock.close()
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def drain(self) -> list[Frame]:
        """Every frame queued now (non-blocking)."""
        out: list[Frame] = []
        while True:
            try:
                data, anc, _flags, addr = self.sock.recvmsg(BUFFER, socket.CMSG_SPACE(_TIMESPEC.size))
            except (BlockingIOError, InterruptedError):
                return out
            except OSError as e:
                if e.errno == errno.ENETDOWN:    # the interface went away under us
                    return out
                raise
            stamp_ns = None
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
                    sec, nsec = _TIMESPEC.unpack_from(value)
                    stamp_ns = sec * 1_000_000_000 + nsec
            if stamp_ns is None:
                stamp_ns = time.time_ns()
            out.append(Frame(stamp_ns / 1e9, self.netns, addr[0], "out" if addr[2] == PACKET_OUTGOING else "in",
                             data, stamp_ns))

    def close(self) -> None:
        self.sock.close()


def open_sniffers(namespaces: list[str]) -> list[Sniffer]:
    """A sniffer on every interface of each namespace. The sockets are made by one helper thread
    that moves from namespace to namespace (~10 us a move), not a thread each (0.5-1 ms)."""
    sockets = nsmod.run_in_each([(ns, lambda: _packet_socket(None)) for ns in namespaces])
    made: list[Sniffer] = []
    try:
        for ns, sock in zip(namespaces, sockets):
            made.append(Sniffer(ns, sock=_opened(ns, sock)))
    except BaseException:
        for s in made:
            s.close()
        for sock in sockets[len(made):]:
            if isinstance(sock, socket.socket):
                sock.close()
        raise
    return made


def _loopback_pair() -> tuple[socket.socket, socket.socket]:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("127.0.0.1", 0))
        return rx, socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    except BaseException:
        rx.close()
        raise


class KernelStamps:
    """Makes sure the kernel stamps frames as it delivers them, before a probe is sent.

    The kernel stamps received and captured frames only while some socket asks for stamps (a
    system-wide static key); the first socket to ask switches it on from a work queue, a moment
    later, and the last one to close switches it off. Until it is on, a frame is stamped when it
    is read, so a trace's hops would come out in the order its sockets were read. This holds a
    UDP socket with SO_TIMESTAMPNS in a lab namespace (keeping the key on), and `wait()` sends
    it datagrams over lo until one comes back stamped before it was read.
    """

    def __init__(self, netns: str):
        try:
            self.rx, self.tx = nsmod.run_in(netns, _loopback_pair)
        except OSError as e:
            _opened(netns, e)   # raises it as a PodlabError the user can act on
            raise
        try:
            self.rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self.rx.setblocking(False)
        except BaseException:
            self.close()
            raise

    def wait(self, timeout: float = 0.5) -> bool:
        """True once a datagram was stamped on delivery; False if that could not be seen within
        `timeout` (lo down, a filter on it): the caller goes on, and says so."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.tx.sendto(b"podlab-stamp", self.rx.getsockname())
            except OSError:
                return False
            if not select.select([self.rx], [], [], max(0.0, deadline - time.monotonic()))[0]:
                return False
            # Read after noting the time: a stamp taken on delivery is older than this moment,
            # one taken by the read itself is not.
            before_read = time.time_ns()
            try:
                _data, anc, _flags, _addr = self.rx.recvmsg(64, socket.CMSG_SPACE(_TIMESPEC.size))
            except (BlockingIOError, InterruptedError):
                continue
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
                    sec, nsec = _TIMESPEC.unpack_from(value)
                    if sec * 1_000_000_000 + nsec < before_read:
                        return True
            time.sleep(0.0005)
        return False

    def close(self) -> None:
        self.rx.close()
        self.tx.close()


def close_all(sniffers: list[Sniffer]) -> threading.Thread:
    """Close many sniffers at once; join the thread returned to know they are closed.

    Closing a packet socket waits for an RCU grace period (synchronize_net, 10-15 ms). One
    after another, as a process's exit closes them too, 53 sockets take ~0.7 s; closed from
    a thread each, the waits overlap and all take ~30 ms.
    """
    def close_each() -> None:
        threads = [threading.Thread(target=s.close, name="podlab-close-sniffer") for s in sniffers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    closer = threading.Thread(target=close_each, name="podlab-close-sniffers")
    closer.start()
    return closer


def vxlan_ports(lab: Lab) -> frozenset[int]:
    """The UDP ports VXLAN rides on in this lab (flannel's 8472), plus the standard ones."""
    from lab.ops import CreateVxlan
    return VXLAN_PORTS | {op.port for op in lab.plan.ops if isinstance(op, CreateVxlan)}


def split_target(spec: str) -> tuple[str, str | None]:
    """'node1:eth0' -> ('node1', 'eth0'); 'node1' -> ('node1', None)."""
    name, sep, iface = spec.partition(":")
    if sep and not iface:
        raise PodlabError(f"{spec!r}: name the interface after ':' (e.g. {name}:eth0), or leave ':' out "
                          f"to capture on all of {name}'s interfaces")
    if not name:
        raise PodlabError(f"{spec!r}: name a pod, node, host or 'underlay' before ':'")
    return name, iface or None


class Stream:
    """Decoded packets from one sniffer, as an iterator; `close()` (or the end) closes the socket."""

    def __init__(self, sniffer: Sniffer, ports: frozenset[int], stop: threading.Event | None):
        self.sniffer, self.ports, self.stop = sniffer, ports, stop
        self._queued: list[Frame] = []
        self.closed = False

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> PacketLine:
        while not self._queued:
            if self.closed or (self.stop is not None and self.stop.is_set()):
                self.close()
                raise StopIteration
            ready, _, _ = select.select([self.sniffer], [], [], 0.1)
            if ready:
                self._queued = self.sniffer.drain()
        f = self._queued.pop(0)
        return PacketLine(f.time, f.netns, f.iface, f.direction, decode.line(f.data, self.ports), f.data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sniffer.close()

    def __del__(self) -> None:
        self.close()


def stream(lab: Lab, target: str, iface: str | None = None, bpf: str | None = None,
           stop: threading.Event | None = None) -> Stream:
    """Decoded packets on `target` (all its interfaces, or `iface`) until `stop` is set.

    `target` may carry the interface itself ('node1:flannel.1'); `bpf` is a tcpdump filter.
    Bad arguments raise PodlabError here, before anything is captured; the socket is open
    from this call on, so no packet after it is missed. `close()` ends it early.
    """
    if iface is None:
        target, iface = split_target(target)
    where = lab.target(target)
    program = compile_filter(bpf) if bpf else None
    return Stream(Sniffer(where.netns, iface, program), vxlan_ports(lab), stop)
