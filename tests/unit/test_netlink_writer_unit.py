"""What the kernel's EEXIST means to the engine, per operation, without root: a fake kernel that
already holds every object answers EEXIST to each creating request of a batch, as the real one
does (an answer for each failed request, an acknowledgement for the last)."""
from __future__ import annotations

import errno
import struct
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from lab.engine.apply import Links, encode
from lab.netlink import wire
from lab.netlink.writer import Channel, NetlinkError
from lab.ops import AddAddress, AddFdb, AddNeighbour, AddRoute, CreateBridge, CreateVeth, CreateVxlan, Op

NS, POD = "lab-node1", "lab-pod1"
CREATING = {wire.RTM_NEWLINK, wire.RTM_NEWADDR, wire.RTM_NEWROUTE, wire.RTM_NEWNEIGH}


class KernelWithEverything:
    """A netlink socket whose kernel answers EEXIST to every request made with NLM_F_EXCL."""

    def __init__(self) -> None:
        self.reads: list[bytes] = []

    def setsockopt(self, *args: object) -> None:
        pass

    def bind(self, address: object) -> None:
        pass

    def send(self, data: bytes) -> int:
        answers = b""
        for mtype, flags, seq, _payload in wire.messages(data):
            code = errno.EEXIST if mtype in CREATING and flags & wire.NLM_F_EXCL else 0
            if code or flags & wire.NLM_F_ACK:
                answers += wire.message(wire.NLMSG_ERROR, 0, seq, struct.pack("=i", -code) + b"\0" * 16)
        self.reads.append(answers)
        return len(data)

    def recv(self, size: int) -> bytes:
        return self.reads.pop(0)


def links() -> Links:
    made = Links()
    made.add_namespace(NS, 1)
    made.add_namespace(POD, 1)
    made.new(NS, "eth0")
    return made


def apply_to_full_kernel(*ops: Op) -> None:
    """Send `ops` as one batch (the engine's way) to a kernel that has all of them already."""
    numbered = links()
    channel = Channel(KernelWithEverything())   # type: ignore[arg-type]
    for op in ops:
        channel.queue(encode(op, numbered, {POD: 7}))
    channel.flush()


ADDRESS = AddAddress(NS, "eth0", IPv4Interface("192.168.56.11/24"))
LINKS = [CreateBridge(NS, "cni0", 1500),
         CreateVeth(NS, "veth1234abcd", POD, "eth0", 1450, alias="web-1"),
         CreateVxlan(NS, "flannel.1", 1, IPv4Address("192.168.56.11"), "eth0", 8472, 1450, "0a:00:00:00:00:01")]


@pytest.mark.parametrize("op", LINKS, ids=lambda op: type(op).__name__)
def test_creating_a_link_whose_name_is_taken_fails_naming_the_link(op):
    # After an address that is already there (done): the link's EEXIST still fails the batch.
    with pytest.raises(NetlinkError) as e:
        apply_to_full_kernel(ADDRESS, op)
    assert e.value.errno == errno.EEXIST
    assert e.value.strerror.startswith(f"link {op.name} in {NS}") and e.value.strerror.endswith(": File exists")


def test_an_address_already_there_is_done():
    apply_to_full_kernel(ADDRESS, ADDRESS)


@pytest.mark.parametrize("op", [AddRoute(NS, IPv4Network("10.244.1.0/24"), via=IPv4Address("10.244.1.0"),
                                         dev="eth0", onlink=True),
                                AddNeighbour(NS, "eth0", IPv4Address("10.244.1.0"), "0a:00:00:00:00:02")],
                         ids=lambda op: type(op).__name__)
def test_a_route_or_neighbour_in_the_way_fails(op):
    # EEXIST says only that a route to this destination (or an entry for this address) is
    # there, not that it is the one asked for: another gateway, another MAC.
    with pytest.raises(NetlinkError) as e:
        apply_to_full_kernel(op)
    assert e.value.errno == errno.EEXIST and e.value.strerror.startswith(f"ip -n {NS} ")


def test_fdb_entries_replace_so_the_kernel_never_answers_eexist():
    request = encode(AddFdb(NS, "eth0", "0a:00:00:00:00:02", IPv4Address("192.168.56.12")), links(), {})
    assert request.flags & wire.NLM_F_REPLACE and not request.flags & wire.NLM_F_EXCL
