"""A small DNS client: build a query, read an answer, and walk a resolver's search list.

Enough of RFC 1035 (and SRV, RFC 2782) to ask the cluster DNS what a pod's resolver would ask,
from a socket made inside the pod's network namespace, and to show every step: `podlab
nslookup`, `podlab check` and the tests use it. No dependency, so it loads in milliseconds.
"""
from __future__ import annotations

import os
import socket
import struct
import time
from dataclasses import dataclass, field

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "TXT": 16, "AAAA": 28, "SRV": 33, "ANY": 255}
TYPE_NAMES = {v: k for k, v in TYPES.items()}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
MAX_POINTERS = 32


class DnsError(ValueError):
    """An answer that cannot be read."""


@dataclass(frozen=True)
class Record:
    name: str
    type: str
    ttl: int
    data: str          # A: the address; PTR/CNAME: the name; SRV: "priority weight port target"

    def srv(self) -> tuple[int, int, int, str]:
        priority, weight, port, target = self.data.split()
        return int(priority), int(weight), int(port), target


@dataclass(frozen=True)
class Answer:
    name: str
    qtype: str
    rcode: str
    authoritative: bool = False
    records: tuple[Record, ...] = ()

    @property
    def ok(self) -> bool:
        return self.rcode == "NOERROR" and any(r.type == self.qtype for r in self.records)

    def values(self, qtype: str | None = None) -> list[str]:
        return [r.data for r in self.records if r.type == (qtype or self.qtype)]


@dataclass
class Lookup:
    """A resolver's walk through its search list: each name it asked, and what came back."""
    name: str
    qtype: str
    tries: list[Answer] = field(default_factory=list)
    error: str | None = None

    @property
    def answer(self) -> Answer | None:
        return next((a for a in self.tries if a.ok), None)

    def values(self) -> list[str]:
        return self.answer.values() if self.answer else []


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("ascii") if label.isascii() else label.encode("idna")
        if not raw or len(raw) > 63:
            raise DnsError(f"{name!r} is not a valid DNS name (empty or over-long label)")
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def query(name: str, qtype: str = "A", ident: int | None = None) -> bytes:
    """A standard query with recursion desired, as a stub resolver sends it."""
    ident = int.from_bytes(os.urandom(2), "big") if ident is None else ident
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + encode_name(name) + struct.pack("!HH", TYPES[qtype], 1)


def _read_name(data: bytes, offset: int) -> tuple[str, int]:
    labels: list[str] = []
    end = None
    for _ in range(MAX_POINTERS):
        if offset >= len(data):
            raise DnsError("name runs past the end of the message")
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(data):
                raise DnsError("truncated name pointer")
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            continue
        if length == 0:
            return ".".join(labels) + ".", (end if end is not None else offset + 1)
        labels.append(data[offset + 1:offset + 1 + length].decode("ascii", "replace"))
        offset += 1 + length
    raise DnsError("too many name pointers (a loop?)")


def parse(data: bytes, ident: int | None = None) -> Answer:
    if len(data) < 12:
        raise DnsError("message shorter than a DNS header")
    got_id, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", data)
    if ident is not None and got_id != ident:
        raise DnsError("answer to another query (id differs)")
    if not flags & 0x8000:
        raise DnsError("not a response")
    offset = 12
    name, qtype = "", "A"
    for _ in range(qd):
        name, offset = _read_name(data, offset)
        qtype = TYPE_NAMES.get(struct.unpack_from("!H", data, offset)[0], "?")
        offset += 4
    records = []
    for _ in range(an):
        rname, offset = _read_name(data, offset)
        if offset + 10 > len(data):
            raise DnsError("truncated resource record")
        rtype, _cls, ttl, length = struct.unpack_from("!HHIH", data, offset)
        offset += 10
        rdata = data[offset:offset + length]
        kind = TYPE_NAMES.get(rtype, str(rtype))
        if kind == "A" and length == 4:
            value = socket.inet_ntoa(rdata)
        elif kind in ("PTR", "CNAME", "NS"):
            value = _read_name(data, offset)[0]
        elif kind == "SRV" and length >= 7:
            priority, weight, port = struct.unpack_from("!HHH", data, offset)
            value = f"{priority} {weight} {port} {_read_name(data, offset + 6)[0]}"
        else:
            value = rdata.hex()
        records.append(Record(rname, kind, ttl, value))
        offset += length
    return Answer(name, qtype, RCODES.get(flags & 0xF, str(flags & 0xF)), bool(flags & 0x0400), tuple(records))


def ask(sock: socket.socket, server: str, name: str, qtype: str = "A", timeout: float = 2.0,
        port: int = 53) -> Answer:
    """One question over UDP from `sock` (made in whichever namespace should ask); retried once."""
    ident = int.from_bytes(os.urandom(2), "big")
    message = query(name, qtype, ident)
    for attempt in range(2):
        sock.sendto(message, (server, port))
        deadline = time.monotonic() + timeout / 2
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, source = sock.recvfrom(65535)
            except socket.timeout:
                break
            if source[0] != server:
                continue   # a stray datagram; a resolver only trusts the server it asked
            try:
                return parse(data, ident)
            except DnsError:
                continue
    raise TimeoutError(f"no answer from {server}:{port} for {name} ({qtype})")


def search_names(name: str, search: list[str], ndots: int) -> list[str]:
    """The names a stub resolver tries, in order (glibc's res_search): a name with at least
    `ndots` dots is tried as it is first; a shorter one goes through the search list first;
    a name ending in '.' is absolute and never searched."""
    if name.endswith("."):
        return [name]
    expanded = [f"{name}.{domain}." for domain in search]
    return [f"{name}.", *expanded] if name.count(".") >= ndots else [*expanded, f"{name}."]


def lookup(sock: socket.socket, server: str, name: str, search: list[str], ndots: int,
           qtype: str = "A", timeout: float = 2.0) -> Lookup:
    """Resolve as a pod's resolver would: stop at the first name that has an answer."""
    result = Lookup(name, qtype)
    for candidate in search_names(name, search, ndots):
        try:
            answer = ask(sock, server, candidate, qtype, timeout)
        except (TimeoutError, OSError, DnsError) as e:
            result.error = str(e) if not isinstance(e, OSError) else f"{server}: {e.strerror or e}"
            return result
        result.tries.append(answer)
        if answer.ok:
            return result
    return result
