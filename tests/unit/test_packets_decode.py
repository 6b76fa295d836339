"""decode.py's struct decoding against scapy's dissection (dissect.py), frame for frame.

The frames a lab carries must be decoded without scapy, into exactly the Decoded that scapy's
dissection gives; anything unusual must be left to scapy rather than guessed. Random damage to
real frames checks the second half: whatever decode.py does decode, it decodes as scapy does.
"""
from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import GRE, ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6ND_NS, IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN

from lab.packets import decode, dissect, frames

POD_A, POD_C, GW = "10.244.0.2", "10.244.1.2", "10.244.0.1"
NODE1, NODE2 = "192.168.56.11", "192.168.56.12"
MAC_A, MAC_B = "0a:00:00:00:00:01", "0a:00:00:00:00:02"
MARK = frames.Mark("icmp", 4242, 36225, 60595, None, frames.TAG + b"0123456789ab")
TCP_MARK = frames.Mark("tcp", 4243, 40312, 123456789, 80, frames.TAG + b"0123456789ab")
UDP_MARK = frames.Mark("udp", 4244, 40313, 1, 8081, frames.TAG + b"0123456789ab")


def eth(ip: bytes, vlan: int | None = None) -> bytes:
    head = Ether(dst=MAC_B, src=MAC_A)
    return bytes(head / Dot1Q(vlan=vlan) / IP(ip)) if vlan else bytes(head / IP(ip))


def vxlan(inner_ip: bytes, port: int = 8472, sport: int = 40632, vni: int = 1, flags: int = 0x08) -> bytes:
    """As Linux sends it: only the I flag set (scapy's default, 0x0C, also sets VXLAN-GPE's P flag)."""
    inner = Ether(dst="0a:ac:f1:de:54:44", src="0a:40:95:36:bb:22") / IP(inner_ip)
    return bytes(Ether(dst=MAC_B, src=MAC_A) / IP(src=NODE1, dst=NODE2, ttl=64) / UDP(sport=sport, dport=port)
                 / VXLAN(flags=flags, vni=vni) / inner)


def _probe(mark: frames.Mark, ttl: int = 64, size: int | None = None) -> bytes:
    return frames.build(mark, POD_A, POD_C, size, ttl=ttl)


def _icmp_error(kind: int, code: int, quoted: bytes, **fields: int) -> bytes:
    return bytes(IP(src=GW, dst=POD_A) / ICMP(type=kind, code=code, **fields) / quoted)


SYN_ACK = bytes(IP(src=POD_C, dst=POD_A, ttl=64) / TCP(
    sport=80, dport=TCP_MARK.ident, flags="SA", seq=99, ack=TCP_MARK.seq + 1,
    options=[("MSS", 1410), ("SAckOK", b""), ("Timestamp", (1, 0)), ("NOP", None), ("WScale", 7)]))
RST = bytes(IP(src=POD_C, dst=POD_A) / TCP(sport=81, dport=TCP_MARK.ident, flags="RA", ack=TCP_MARK.seq + 1))
ECHO_REPLY = bytes(IP(src=POD_C, dst=POD_A) / ICMP(type=0, id=MARK.ident, seq=MARK.seq) / MARK.tag)

# What a trace sees, on every kind of hop: plain, VLAN-tagged, inside VXLAN (flannel's port,
# the standard one, and a custom one the lab says it uses).
LAB_PACKETS = {
    "icmp probe": _probe(MARK),
    "icmp probe, ttl 62": _probe(MARK, ttl=62),
    "large icmp probe": _probe(MARK, size=1400),
    "tcp syn": _probe(TCP_MARK),
    "udp probe": _probe(UDP_MARK),
    "echo reply": ECHO_REPLY,
    "syn-ack with options": SYN_ACK,
    "rst": RST,
    "frag needed": _icmp_error(3, 4, _probe(MARK)[:28], nexthopmtu=1450),
    "frag needed, whole probe quoted": _icmp_error(3, 4, _probe(MARK), nexthopmtu=1450),
    "port unreachable": _icmp_error(3, 3, _probe(UDP_MARK)),
    "host unreachable": _icmp_error(3, 1, _probe(MARK)[:28]),
    "admin prohibited": _icmp_error(3, 13, _probe(TCP_MARK)),
    "unknown unreachable code": _icmp_error(3, 8, _probe(MARK)[:28]),
    "ttl exceeded": _icmp_error(11, 0, _probe(MARK)[:28]),
    "parameter problem": _icmp_error(12, 0, _probe(MARK)[:28]),
    "redirect": _icmp_error(5, 1, _probe(MARK)[:28], gw=GW),
    "source quench": _icmp_error(4, 0, _probe(MARK)[:28]),
    "error quoting nothing": _icmp_error(3, 1, b""),
    "first fragment": bytes(IP(src=POD_A, dst=POD_C, flags="MF", id=7) / UDP(sport=1, dport=2) / (b"x" * 40)),
    "later fragment": bytes(IP(src=POD_A, dst=POD_C, frag=185, id=7, proto=17) / (b"x" * 40)),
    "tcp without flags": bytes(IP(src=POD_A, dst=POD_C) / TCP(flags=0, seq=5)),
    "tcp all flags": bytes(IP(src=POD_A, dst=POD_C) / TCP(flags=0x1FF, seq=5, ack=6)),
    "udp on a vxlan source port": bytes(IP(src=NODE1, dst=NODE2) / UDP(sport=4789, dport=33000) / VXLAN(vni=9)
                                        / Ether() / IP(_probe(MARK))),
    "plain udp": bytes(IP(src=POD_A, dst=POD_C) / UDP(sport=5000, dport=53) / b"hello"),
    "bgp connection's syn": bytes(IP(src=NODE1, dst=NODE2) / TCP(sport=40312, dport=179, flags="S", seq=5)),
}

LAB_FRAMES = {
    **{name: eth(p) for name, p in LAB_PACKETS.items()},
    **{f"{name}, vlan": eth(p, vlan=5) for name, p in list(LAB_PACKETS.items())[:4]},
    **{f"{name}, in vxlan": vxlan(p) for name, p in LAB_PACKETS.items()},
    **{f"{name}, vxlan 4789": vxlan(p, port=4789, vni=4096) for name, p in list(LAB_PACKETS.items())[:3]},
    "vxlan in vxlan": vxlan(vxlan(_probe(MARK))[14:]),
    "vxlan-gpe flags, ethernet inside": vxlan(_probe(MARK), flags=0x0C),
    "vxlan group policy flag": vxlan(_probe(MARK), flags=0x88),
    "arp request": bytes(Ether(src=MAC_A, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, psrc=POD_A, pdst=GW,
                                                                         hwsrc=MAC_A)),
    "arp reply": bytes(Ether(src=MAC_B, dst=MAC_A) / ARP(op=2, psrc=GW, pdst=POD_A, hwsrc=MAC_B, hwdst=MAC_A)),
    "arp other op": bytes(Ether() / ARP(op=3, psrc=GW, pdst=POD_A)),
    "arp in vxlan": bytes(Ether() / IP(src=NODE1, dst=NODE2) / UDP(sport=40000, dport=8472) / VXLAN(vni=1)
                          / Ether() / ARP(op=1, psrc=POD_A, pdst=POD_C)),
    "padded short frame": eth(bytes(IP(src=POD_A, dst=POD_C) / UDP(sport=1, dport=2))) + b"\0" * 18,
}

CUSTOM_PORT = 4795
CUSTOM_FRAMES = {"custom port vxlan": vxlan(_probe(MARK), port=CUSTOM_PORT, vni=7),
                 "custom port, too short for vxlan": eth(bytes(IP(src=NODE1, dst=NODE2)
                                                               / UDP(sport=1, dport=CUSTOM_PORT) / b"short"))}

# Frames scapy must decode: decode.py hands them over whole.
FOR_SCAPY = {
    "ipv6 neighbour solicitation": bytes(Ether() / IPv6(src="fe80::1", dst="ff02::1:ff00:2")
                                         / ICMPv6ND_NS(tgt="fe80::2")),
    "lldp ethertype": bytes(Ether(type=0x88CC) / (b"\0" * 20)),
    "802.3 length field": bytes(Ether(type=40) / (b"\xaa" * 40)),
    "runt": b"\x01\x02",
    "ip options": eth(bytes(IP(src=POD_A, dst=POD_C, options=b"\x94\x04\x00\x00") / ICMP())),
    "ip length beyond the frame": eth(_probe(MARK))[:-10],
    "gre": eth(bytes(IP(src=NODE1, dst=NODE2) / GRE() / IP(_probe(MARK)))),
    "ip in ip": eth(bytes(IP(src=NODE1, dst=NODE2, proto=4) / IP(_probe(MARK)))),
    "icmp timestamp": eth(bytes(IP(src=POD_A, dst=POD_C) / ICMP(type=13))),
    "icmp error with rfc 4884 length": eth(_icmp_error(11, 0, _probe(MARK)[:28], length=7)),
    "large icmp error": eth(_icmp_error(3, 4, _probe(MARK, size=1400)[:548], nexthopmtu=1450)),
    "truncated tcp": eth(bytes(IP(src=POD_A, dst=POD_C, proto=6) / (b"\0" * 10))),
    "tcp option running off the header": eth(bytes(IP(src=POD_A, dst=POD_C) / TCP(dataofs=6)
                                                   / b"\x02\x09\x00\x00")),
    "bgp keepalive": eth(bytes(IP(src=NODE1, dst=NODE2) / TCP(sport=179, dport=40312, flags="PA")
                               / (b"\xff" * 16 + b"\x00\x13\x04"))),
    "vxlan with a next-protocol header": bytes(Ether() / IP(src=NODE1, dst=NODE2) / UDP(sport=1, dport=4790)
                                               / VXLAN(flags=0x0C, NextProtocol=1) / IP(_probe(MARK))),
}


@pytest.mark.parametrize("name", sorted(LAB_FRAMES))
def test_lab_frames_decode_without_scapy_exactly_as_scapy_does(name):
    frame = LAB_FRAMES[name]
    quick = decode.quick(frame)
    assert quick is not None, f"{name}: decode.py should decode this itself"
    assert quick == dissect.decode(frame)


@pytest.mark.parametrize("name", sorted(CUSTOM_FRAMES))
def test_vxlan_on_the_labs_own_port(name):
    frame, ports = CUSTOM_FRAMES[name], frozenset({CUSTOM_PORT})
    assert decode.quick(frame, ports) == dissect.decode(frame, ports)
    assert decode.quick(frame) == dissect.decode(frame)


@pytest.mark.parametrize("name", sorted(FOR_SCAPY))
def test_unusual_frames_are_left_to_scapy(name):
    frame = FOR_SCAPY[name]
    assert decode.quick(frame) is None
    assert decode.decode(frame) == dissect.decode(frame)


def test_a_trace_hop_reads_as_before():
    line = decode.line(vxlan(_probe(MARK, ttl=63)))
    assert line == (f"{POD_A} > {POD_C} ICMP echo-request id {MARK.ident} seq {MARK.seq} ttl 63 len 84 DF"
                    f" | outer {NODE1} > {NODE2} UDP 8472 VNI 1")
    assert decode.line(eth(SYN_ACK)) == (f"{POD_C}:80 > {POD_A}:{TCP_MARK.ident} TCP [SA] seq 99 "
                                         f"ack {TCP_MARK.seq + 1} ttl 64 len 60")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(LAB_FRAMES)), st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)),
                                                     max_size=4),
       st.integers(0, 2000))
def test_damaged_frames_decode_as_scapy_does_or_go_to_scapy(name, flips, cut):
    frame = bytearray(LAB_FRAMES[name])
    for where, value in flips:
        frame[where % len(frame)] = value
    frame = bytes(frame[:max(cut, 1)]) if cut < len(frame) else bytes(frame)
    quick = decode.quick(frame)
    if quick is not None:
        assert quick == dissect.decode(frame)


def test_decoding_lab_frames_does_not_import_scapy():
    code = ("import sys\nfrom lab.packets import decode\nframes = [bytes.fromhex(h) for h in sys.argv[1:]]\n"
            "lines = [decode.line(f) for f in frames]\n"
            "assert not [m for m in sys.modules if m.startswith('scapy')], 'scapy was imported'\n")
    sample = [LAB_FRAMES[n].hex() for n in ("icmp probe, in vxlan", "syn-ack with options", "arp request")]
    subprocess.run([sys.executable, "-c", code, *sample], check=True)


def test_the_scapy_dissection_does_not_need_the_struct_decoder():
    # decode.py falls back to dissect.py; dissect.py's result type lives in result.py, so the two
    # modules do not import each other.
    code = ("import sys\nfrom lab.packets import dissect\n"
            "assert 'lab.packets.decode' not in sys.modules, 'dissect imported decode'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
