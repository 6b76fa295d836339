"""BGP on TCP 179 and Calico's VXLAN in capture lines: crafted messages as BIRD sends them on
the underlay, one segment holding several, split or damaged ones."""
from __future__ import annotations

import pytest
from scapy.contrib import bgp as b
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN

from lab.packets import bgp, decode, dissect

NODE1, NODE2 = "172.18.0.2", "172.18.0.3"


def segment(payload: bytes, sport: int = 179, dport: int = 40312, flags: str = "PA") -> bytes:
    return bytes(Ether() / IP(src=NODE1, dst=NODE2) / TCP(sport=sport, dport=dport, flags=flags, seq=1, ack=1)
                 / payload)


def attr(code: int, value) -> b.BGPPathAttr:
    return b.BGPPathAttr(type_flags=0x40, type_code=code, attribute=value)


def nlri(*prefixes: str) -> list:
    return [b.BGPNLRI_IPv4(prefix=p) for p in prefixes]


def as_path(*segments: tuple[int, list[int]]) -> b.BGPPathAttr:
    return attr(2, b.BGPPAAS4BytesPath(segments=[b.BGPPAAS4BytesPath.ASPathSegment(segment_type=t, segment_value=v)
                                                 for t, v in segments]))


def open_msg(asn: int = 64512, my_as: int | None = None) -> bytes:
    caps = [b.BGPOptParam(param_value=b.BGPCapMultiprotocol(afi=1, safi=1)),
            b.BGPOptParam(param_value=b.BGPCapFourBytesASN(asn=asn))]
    return bytes(b.BGPHeader(type=1) / b.BGPOpen(my_as=asn if my_as is None else my_as, hold_time=240,
                                                 bgp_id=NODE1, opt_params=caps))


def update(withdrawn=(), prefixes=(), hop: str | None = NODE1, path=None) -> bytes:
    attrs = [attr(1, b.BGPPAOrigin(origin=0)), path or as_path()]
    if hop:
        attrs.append(attr(3, b.BGPPANextHop(next_hop=hop)))
    return bytes(b.BGPHeader(type=2) / b.BGPUpdate(withdrawn_routes=nlri(*withdrawn), path_attr=attrs,
                                                   nlri=nlri(*prefixes)))


KEEPALIVE = bytes(b.BGPKeepAlive())
END_OF_RIB = bytes(b.BGPHeader(type=2) / b.BGPUpdate())


def notification(code: int, subcode: int) -> bytes:
    return bytes(b.BGPHeader(type=3) / b.BGPNotification(error_code=code, error_subcode=subcode))


@pytest.mark.parametrize("payload, phrase", [
    (open_msg(), "BGP OPEN AS 64512 hold 240 id 172.18.0.2"),
    (open_msg(4200000000, my_as=23456), "BGP OPEN AS 4200000000 hold 240 id 172.18.0.2"),
    (update(prefixes=["192.168.1.0/26"]), "BGP UPDATE nlri 192.168.1.0/26 next-hop 172.18.0.2"),
    (update(withdrawn=["192.168.2.64/26"], hop=None), "BGP UPDATE withdrawn 192.168.2.64/26"),
    (update(["192.168.0.0/26"], ["192.168.1.0/26", "192.168.1.64/26"]),
     "BGP UPDATE withdrawn 192.168.0.0/26 nlri 192.168.1.0/26 192.168.1.64/26 next-hop 172.18.0.2"),
    (update(prefixes=["10.0.0.0/24"], path=as_path((2, [64513, 4200000000]), (1, [64514, 64515]))),
     "BGP UPDATE nlri 10.0.0.0/24 as-path 64513 4200000000 {64514 64515} next-hop 172.18.0.2"),
    (END_OF_RIB, "BGP UPDATE end-of-rib"),
    (KEEPALIVE, "BGP KEEPALIVE"),
    (notification(6, 2), "BGP NOTIFICATION Cease / Administrative Shutdown"),
    (notification(4, 0), "BGP NOTIFICATION Hold Timer Expired"),
    (notification(2, 2), "BGP NOTIFICATION OPEN Message Error / Bad Peer AS"),
    (notification(42, 7), "BGP NOTIFICATION code 42 / subcode 7"),
    (bytes(b.BGPHeader(type=5) / b.BGPRouteRefresh()), "BGP ROUTE-REFRESH"),
])
def test_each_message_reads_as_a_phrase(payload, phrase):
    line = decode.line(segment(payload))
    assert line.startswith(f"{NODE1}:179 > {NODE2}:40312 TCP [PA] seq 1 ack 1 ttl 64 len ")
    assert line.endswith(f": {phrase}")


def test_add_path_identifiers_are_read_as_such():
    # Calico's BIRD says `add paths on`: every prefix then comes after a 4-byte path identifier
    # (RFC 7911). Told apart as Wireshark does: the bytes fit that reading and not the plain one.
    msg = bytes(b.BGPHeader(type=2) / b.BGPUpdate(
        path_attr=[attr(1, b.BGPPAOrigin(origin=0)), as_path(), attr(3, b.BGPPANextHop(next_hop=NODE2))],
        nlri=[b.BGPNLRI_IPv4_AP(nlri_path_id=1, prefix="192.168.1.0/26"),
              b.BGPNLRI_IPv4_AP(nlri_path_id=1, prefix="192.168.1.64/26")]))
    assert bgp.summary(msg) == "BGP UPDATE nlri 192.168.1.0/26 192.168.1.64/26 next-hop 172.18.0.3"


def test_the_peer_that_connected_to_179_is_decoded_too():
    assert decode.line(segment(KEEPALIVE, sport=40312, dport=179)).endswith(": BGP KEEPALIVE")


def test_several_messages_in_one_segment_are_cut_apart_by_their_lengths():
    # scapy's TCP binding alone reads the KEEPALIVE after an UPDATE as more NLRI
    payload = update(prefixes=["192.168.1.0/26"]) + END_OF_RIB + KEEPALIVE
    assert bgp.summary(payload) == ("BGP UPDATE nlri 192.168.1.0/26 next-hop 172.18.0.2; UPDATE end-of-rib; "
                                    "KEEPALIVE")


def test_a_burst_is_cut_short_and_counted():
    many = update(prefixes=[f"10.{i}.0.0/16" for i in range(bgp.PREFIXES_SHOWN + 3)])
    assert bgp.summary(many).endswith(" 10.7.0.0/16 (+3 more) next-hop 172.18.0.2")
    assert bgp.summary(KEEPALIVE * (bgp.MESSAGES_SHOWN + 4)) == \
        "BGP " + "; ".join(["KEEPALIVE"] * bgp.MESSAGES_SHOWN) + "; (+4 more messages)"


def test_messages_split_across_segments_say_so():
    msg = update(prefixes=["192.168.1.0/26"])
    assert bgp.summary(msg[:30]) == f"BGP UPDATE (first 30 of {len(msg)} bytes)"
    assert bgp.summary(msg[30:] + KEEPALIVE) == f"BGP ({len(msg) - 30} bytes continuing a message); KEEPALIVE"
    assert bgp.summary(KEEPALIVE + KEEPALIVE[:7]) == "BGP KEEPALIVE; (first 7 bytes of a message)"
    assert bgp.summary(b"\x01\x02\x03") == "BGP (3 bytes continuing a message)"


def test_a_tail_ending_in_ff_bytes_does_not_hide_the_next_marker():
    assert bgp.summary(b"\x01\xff\xff" + KEEPALIVE) == "BGP (3 bytes continuing a message); KEEPALIVE"


def test_damaged_messages_are_named_not_raised():
    assert bgp.summary(b"\xff" * 16 + b"\x00\x05\x04") == "BGP malformed header (length 5)"
    short_open = b"\xff" * 16 + b"\x00\x16\x01" + b"\x04\x01\x00"
    assert bgp.summary(short_open) == "BGP OPEN (undecodable)"


def test_bgp_segments_go_to_scapy_and_the_handshake_does_not():
    syn = segment(b"", sport=40312, dport=179, flags="S")
    assert decode.quick(syn) is not None and decode.quick(syn) == dissect.decode(syn)
    assert "BGP" not in decode.line(syn)
    assert decode.quick(segment(KEEPALIVE)) is None
    padded = segment(b"", flags="A") + b"\0" * 6          # Ethernet padding is no BGP data
    assert decode.quick(padded) == dissect.decode(padded)


def test_calico_vxlan_shows_the_inner_frame_with_its_vni():
    inner = Ether() / IP(src="192.168.1.2", dst="192.168.2.2", ttl=63) / TCP(sport=40000, dport=80, flags="S")
    frame = bytes(Ether() / IP(src=NODE1, dst=NODE2) / UDP(sport=51000, dport=4789) / VXLAN(flags=0x08, vni=4096)
                  / inner)
    line = decode.line(frame)
    assert line == ("192.168.1.2:40000 > 192.168.2.2:80 TCP [S] seq 0 ttl 63 len 40"
                    f" | outer {NODE1} > {NODE2} UDP 4789 VNI 4096")
    assert decode.quick(frame) == dissect.decode(frame)
