"""lab.netlink.dump without root: dump framing (several messages per read, answers to other requests,
interrupted dumps asked again, errors) and the decoding of link, route and neighbour messages.
The integration tests compare whole snapshots with pyroute2's on real namespaces."""
from __future__ import annotations

import errno
import socket
import struct
import subprocess
import sys

import pytest

from lab.netlink import dump
from lab.netlink import wire as nl


def message(kind: int, seq: int, body: bytes, flags: int = 2) -> bytes:
    data = struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body
    return data + b"\0" * (-len(data) % 4)


class FakeSocket:
    """Answers each request with the reads `script(seq)` gives."""

    def __init__(self, script):
        self.script, self.reads, self.sent = script, [], []

    def send(self, data: bytes) -> int:
        seq = struct.unpack_from("=I", data, 8)[0]
        self.sent.append(data)
        self.reads.extend(self.script(seq, len(self.sent)))
        return len(data)

    def recv(self, size: int) -> bytes:
        return self.reads.pop(0)


def ifinfo(index: int, flags: int, *attrs: bytes) -> bytes:
    return struct.pack("=BxHiII", 0, 1, index, flags, 0) + b"".join(attrs)


VETH = ifinfo(7, 0x10043, nl.string(nl.IFLA_IFNAME, "veth1"), nl.u32(nl.IFLA_MTU, 1450),
              nl.mac(nl.IFLA_ADDRESS, "0A:00:00:00:00:07"), nl.u32(nl.IFLA_LINK, 3),
              nl.attr(nl.IFLA_LINK_NETNSID, struct.pack("=i", 2)), nl.u32(nl.IFLA_MASTER, 4),
              nl.nested(nl.IFLA_LINKINFO, nl.string(nl.IFLA_INFO_KIND, "veth")))
VXLAN = ifinfo(9, 0x1003, nl.string(nl.IFLA_IFNAME, "flannel.1"),
               nl.nested(nl.IFLA_LINKINFO, nl.string(nl.IFLA_INFO_KIND, "vxlan"),
                         nl.nested(nl.IFLA_INFO_DATA, nl.u32(nl.IFLA_VXLAN_ID, 1),
                                   nl.attr(nl.IFLA_VXLAN_LOCAL, socket.inet_aton("192.168.56.11")),
                                   nl.be16(nl.IFLA_VXLAN_PORT, 8472), nl.u8(nl.IFLA_VXLAN_LEARNING, 0),
                                   nl.u32(nl.IFLA_VXLAN_LINK, 2))))


def test_links_decode_the_attributes_inspect_uses():
    done = lambda seq, n: [message(16, seq, VETH) + message(16, seq, VXLAN), message(3, seq, b"\0" * 4)]  # noqa: E731
    veth, vx = dump.links(FakeSocket(done))
    assert (veth.index, veth.name, veth.mtu, veth.address, veth.link, veth.link_netnsid, veth.master, veth.kind) \
        == (7, "veth1", 1450, "0a:00:00:00:00:07", 3, 2, 4, "veth")
    assert veth.alias is None and veth.vxlan is None
    assert vx.kind == "vxlan" and vx.vxlan == dump.VxlanMsg(1, "192.168.56.11", 8472, 0, 2)
    assert vx.address is None and vx.mtu is None        # absent attributes are None, as pyroute2 has them


def test_routes_and_neighbours():
    route = struct.pack("=BBBBBBBBI", 2, 24, 0, 0, 254, 3, 0, 1, 4) + nl.attr(nl.RTA_DST, bytes([10, 244, 1, 0])) \
        + nl.attr(nl.RTA_GATEWAY, bytes([10, 244, 1, 0])) + nl.u32(nl.RTA_OIF, 9) \
        + nl.u32(nl.RTA_TABLE, 254)
    other_family = struct.pack("=BBBBBBBBI", 10, 64, 0, 0, 254, 3, 0, 1, 0)
    got = dump.routes(FakeSocket(lambda seq, n: [message(24, seq, route) + message(24, seq, other_family),
                                                   message(3, seq, b"")]))
    assert got == [dump.RouteMsg(254, "10.244.1.0", 24, 1, 0, 3, 4, 9, "10.244.1.0", None)]
    fdb = struct.pack("=BxxxiHBB", 7, 9, 0x80, 2, 0) + nl.mac(nl.NDA_LLADDR, "0a:0e:ee:32:5e:8c") \
        + nl.attr(nl.NDA_DST, socket.inet_aton("192.168.56.12"))
    got = dump.neighbours(FakeSocket(lambda seq, n: [message(28, seq, fdb), message(3, seq, b"")]),
                            nl.AF_BRIDGE)
    assert got == [dump.NeighMsg(9, 0x80, 2, "192.168.56.12", "0a:0e:ee:32:5e:8c", None)]


def test_answers_to_other_requests_are_skipped_and_interrupted_dumps_asked_again():
    def script(seq, n):
        stale = message(16, seq - 1, VXLAN)
        if n == 1:    # the first attempt is interrupted by a change
            return [stale + message(16, seq, VETH, flags=2 | nl.NLM_F_DUMP_INTR), message(3, seq, b"")]
        return [message(16, seq, VETH), message(3, seq, b"")]
    sock = FakeSocket(script)
    assert [l.name for l in dump.links(sock)] == ["veth1"]
    assert len(sock.sent) == 2
    always = FakeSocket(lambda seq, n: [message(3, seq, b"", flags=2 | nl.NLM_F_DUMP_INTR)])
    with pytest.raises(dump.DumpInterrupted):
        dump.links(always)


def test_an_error_answer_raises_and_nf_tables_without_tables_is_false():
    refused = lambda seq, n: [message(2, seq, struct.pack("=i", -errno.EOPNOTSUPP) + b"\0" * 16)]  # noqa: E731
    with pytest.raises(OSError) as e:
        dump.routes(FakeSocket(refused))
    assert e.value.errno == errno.EOPNOTSUPP
    assert dump.nft_has_tables(FakeSocket(refused)) is False
    empty = lambda seq, n: [message(3, seq, b"")]  # noqa: E731
    assert dump.nft_has_tables(FakeSocket(empty)) is False
    table = lambda seq, n: [message(0xA00, seq, b"\0" * 4) + message(3, seq, b"")]  # noqa: E731
    assert dump.nft_has_tables(FakeSocket(table)) is True


def test_reading_the_kernel_does_not_import_the_writer():
    # inspect, trace and the TUI read namespaces; the engine's writer is for `up` only.
    code = ("import sys\nimport lab.inspect, lab.packets.view\n"
            "print(sorted(m for m in sys.modules if m in ('lab.netlink.writer', 'lab.engine.apply')))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"
