"""lab.packets without root: probe building and recognition, decoding (VXLAN inner and outer),
pcap files, nft rule judgement, argument checks and CLI parsing."""
from __future__ import annotations

import argparse
import io
import json
import struct
import shutil
import subprocess

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.layers.vxlan import VXLAN

from lab import cli
from lab.errors import PodlabError
from lab.packets import capture, decode, endpoints, frames, nft, pcap
from lab.packets import cli as pcli

POD_A, POD_C = "10.244.0.2", "10.244.1.2"
NODE1, NODE2 = "192.168.56.11", "192.168.56.12"


def eth(payload: bytes, dst: str = "0a:00:00:00:00:02", src: str = "0a:00:00:00:00:01") -> bytes:
    return bytes(Ether(dst=dst, src=src) / IP(payload))


def vxlan(inner_ip: bytes, vni: int = 1, port: int = 8472) -> bytes:
    inner = Ether(dst="0a:ac:f1:de:54:44", src="0a:40:95:36:bb:22") / IP(inner_ip)
    return bytes(Ether() / IP(src=NODE1, dst=NODE2, ttl=64) / UDP(sport=40632, dport=port) / VXLAN(vni=vni)
                 / inner)


# ---------------------------------------------------------------- probes

@pytest.mark.parametrize("proto,port", [("icmp", None), ("tcp", 80), ("udp", 8081)])
def test_probe_is_valid_ipv4_with_df_and_the_mark(proto, port):
    mark = frames.Mark.new(proto, port)
    size = frames.default_size(proto) + 16
    raw = frames.build(mark, POD_A, POD_C, size)
    assert len(raw) == size
    pkt = IP(raw)
    assert pkt.flags.DF and pkt.id == mark.ip_id and pkt.ttl == 64 and pkt.len == size
    layer = {"icmp": ICMP, "tcp": TCP, "udp": UDP}[proto]
    # our checksums equal the ones scapy computes afresh
    for strip in (IP, layer):
        again = IP(raw)
        original = again[strip].chksum
        del again[strip].chksum
        assert IP(bytes(again))[strip].chksum == original, f"{strip.__name__} checksum"
    assert frames.classify(frames.IPv4(raw), mark) == "request"
    if proto != "tcp":
        assert mark.tag in raw


def test_probe_size_limits():
    with pytest.raises(ValueError):
        frames.build(frames.Mark.new("udp", 53), POD_A, POD_C, frames.min_size("udp") - 1)
    raw = frames.build(frames.Mark.new("tcp", 80), POD_A, POD_C)
    assert len(raw) == 40 and IP(raw)[TCP].flags == "S"


def test_replies_and_errors_are_told_apart_from_other_traffic():
    mark = frames.Mark.new("icmp")
    req = IP(frames.build(mark, POD_A, POD_C))
    reply = IP(src=POD_C, dst=POD_A) / ICMP(type=0, id=mark.ident, seq=mark.seq) / bytes(req[ICMP].payload)
    assert frames.classify(frames.IPv4(bytes(reply)), mark) == "reply"
    other = IP(src=POD_C, dst=POD_A) / ICMP(type=0, id=mark.ident, seq=mark.seq) / b"someone else's ping"
    assert frames.classify(frames.IPv4(bytes(other)), mark) is None
    stranger = IP(src=POD_A, dst=POD_C, id=(mark.ip_id + 1) % 65536) / ICMP(id=mark.ident + 1, seq=mark.seq)
    assert frames.classify(frames.IPv4(bytes(stranger)), mark) is None
    quoted = IP(bytes(req)[:28])
    err = IP(src="10.244.0.1", dst=POD_A) / ICMP(type=3, code=4, nexthopmtu=1450) / bytes(quoted)
    pkt = frames.IPv4(bytes(err))
    assert frames.classify(pkt, mark) == "error"
    assert frames.frag_needed_mtu(pkt) == 1450
    assert frames.icmp_error_text(pkt) == "fragmentation needed (mtu 1450)"
    ttl = IP(src="10.244.0.1", dst=POD_A) / ICMP(type=11, code=0) / bytes(quoted)
    assert frames.icmp_error_text(frames.IPv4(bytes(ttl))) == "TTL exceeded"


def test_tcp_answers_match_our_syn_only():
    mark = frames.Mark.new("tcp", 80)
    synack = IP(src=POD_C, dst=POD_A) / TCP(sport=80, dport=mark.ident, flags="SA", ack=(mark.seq + 1) % 2**32)
    rst = IP(src=POD_C, dst=POD_A) / TCP(sport=80, dport=mark.ident, flags="RA", ack=(mark.seq + 1) % 2**32)
    wrong = IP(src=POD_C, dst=POD_A) / TCP(sport=80, dport=mark.ident, flags="SA", ack=mark.seq + 7)
    assert frames.classify(frames.IPv4(bytes(synack)), mark) == "reply"
    assert frames.classify(frames.IPv4(bytes(rst)), mark) == "reply"
    assert frames.classify(frames.IPv4(bytes(wrong)), mark) is None


def test_a_probe_rewritten_by_dnat_is_still_ours():
    # a Service's DNAT changes the destination address and port; the answer comes from targetPort
    mark = frames.Mark.new("tcp", 80)
    dnat = IP(frames.build(mark, POD_A, "10.96.0.10"))
    dnat.dst, dnat[TCP].dport = POD_C, 8080
    assert frames.classify(frames.IPv4(bytes(dnat)), mark) == "request"
    answer = IP(src=POD_C, dst=POD_A) / TCP(sport=8080, dport=mark.ident, flags="SA", ack=(mark.seq + 1) % 2**32)
    assert frames.classify(frames.IPv4(bytes(answer)), mark) == "reply"


def test_vxlan_frame_yields_the_inner_packet_and_the_outer_header():
    mark = frames.Mark.new("icmp")
    raw = vxlan(frames.build(mark, POD_A, POD_C, ttl=63))
    pkt = frames.ipv4_in(raw)
    assert pkt is not None and pkt.src == POD_A and pkt.dst == POD_C and pkt.ttl == 63
    assert pkt.outer == frames.Outer(NODE1, NODE2, 40632, 8472, 1, 64)
    assert pkt.dst_mac == "0a:ac:f1:de:54:44"
    assert frames.classify(pkt, mark) == "request"
    # the same bytes on a port that is not VXLAN's stay plain UDP
    plain = frames.ipv4_in(vxlan(frames.build(mark, POD_A, POD_C), port=9999))
    assert plain is not None and plain.outer is None and plain.proto == frames.IPPROTO_UDP


# ---------------------------------------------------------------- decoding

def test_decode_vxlan_shows_inner_then_outer():
    mark = frames.Mark.new("icmp")
    raw = vxlan(frames.build(mark, POD_A, POD_C, ttl=63))
    d = decode.decode(raw)
    assert d.text.startswith(f"{POD_A} > {POD_C} ICMP echo-request id {mark.ident} seq {mark.seq} ttl 63 len 84")
    assert d.text.endswith(f"| outer {NODE1} > {NODE2} UDP 8472 VNI 1")
    assert (d.src, d.dst, d.ttl, d.length, d.proto) == (POD_A, POD_C, 63, 84, "ICMP")
    assert d.outer == f"outer {NODE1} > {NODE2} UDP 8472 VNI 1"


def test_decode_vxlan_on_a_custom_port_when_told():
    raw = vxlan(bytes(IP(src=POD_A, dst=POD_C) / ICMP()), vni=4096, port=4790 + 5)
    assert "VNI" not in decode.line(raw)
    assert decode.line(raw, frozenset({4795})).endswith("UDP 4795 VNI 4096")


def test_decode_tcp_udp_icmp_errors_arp_and_garbage():
    tcp = eth(bytes(IP(src=POD_A, dst=POD_C, ttl=63) / TCP(sport=40312, dport=80, flags="S", seq=1)))
    assert decode.line(tcp) == f"{POD_A}:40312 > {POD_C}:80 TCP [S] seq 1 ttl 63 len 40"
    udp = eth(bytes(IP(src=POD_A, dst=POD_C, flags="DF") / UDP(sport=5000, dport=8081) / b"x"))
    assert decode.line(udp) == f"{POD_A}:5000 > {POD_C}:8081 UDP ttl 64 len 29 DF"
    quoted = bytes(IP(src=POD_A, dst=POD_C) / ICMP())[:28]
    err = eth(bytes(IP(src="10.244.0.1", dst=POD_A) / ICMP(type=3, code=4, nexthopmtu=1450) / quoted))
    assert "ICMP dest-unreach fragmentation-needed mtu 1450" in decode.line(err)
    arp = bytes(Ether() / ARP(op=1, psrc=POD_A, pdst="10.244.0.1"))
    assert decode.line(arp) == f"ARP who-has 10.244.0.1 tell {POD_A}"
    assert "len 2" in decode.line(b"\x01\x02")       # a runt frame is a line, never an exception
    odd = bytes(Ether(type=0x88cc) / (b"\x00" * 20))
    assert "ethertype 0x88cc" in decode.line(odd)


# ---------------------------------------------------------------- pcap

def test_pcap_file_round_trip_and_tcpdump_reads_it(tmp_path):
    path = tmp_path / "x.pcap"
    frames_in = [eth(bytes(IP(src=POD_A, dst=POD_C) / ICMP(seq=i))) for i in range(3)]
    with pcap.PcapWriter(path) as w:
        for i, f in enumerate(frames_in):
            w.write(1700000000.25 + i, f)
    back = pcap.read(path)
    assert [f for _, f in back] == frames_in
    assert back[0][0] == pytest.approx(1700000000.25)
    from scapy.utils import rdpcap
    assert len(rdpcap(str(path))) == 3
    if shutil.which("tcpdump"):
        r = subprocess.run(["tcpdump", "-n", "-r", str(path)], capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout.count("ICMP echo request") == 3


def test_pcap_writer_names_an_unwritable_path(tmp_path):
    with pytest.raises(PodlabError, match="-w .*cannot write"):
        pcap.PcapWriter(tmp_path / "no" / "such" / "dir.pcap")


def test_bpf_filters_compile_and_bad_ones_are_named():
    program = capture.compile_filter("icmp or udp port 8472")
    assert program and len(program) % 8 == 0
    with pytest.raises(PodlabError, match=r"-f 'icmp and hst'.*tcpdump's filter syntax"):
        capture.compile_filter("icmp and hst")


def test_target_and_interface_split():
    assert capture.split_target("node1:flannel.1") == ("node1", "flannel.1")
    assert capture.split_target("node1") == ("node1", None)
    with pytest.raises(PodlabError, match="name the interface after ':'"):
        capture.split_target("node1:")
    with pytest.raises(PodlabError, match="before ':'"):
        capture.split_target(":eth0")


# ---------------------------------------------------------------- nft

RULESET = {"nftables": [
    {"metainfo": {"version": "1.0.6"}},
    {"table": {"family": "inet", "name": "filter", "handle": 1}},
    {"chain": {"family": "inet", "table": "filter", "name": "forward", "handle": 1, "type": "filter",
               "hook": "forward", "prio": 0, "policy": "accept"}},
    {"chain": {"family": "inet", "table": "filter", "name": "pods", "handle": 2}},
    {"rule": {"family": "inet", "table": "filter", "chain": "forward", "handle": 3, "expr": [
        {"match": {"op": "==", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}},
        {"accept": None}]}},
    {"rule": {"family": "inet", "table": "filter", "chain": "forward", "handle": 4, "expr": [
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                   "right": {"prefix": {"addr": "10.244.1.0", "len": 24}}}},
        {"jump": {"target": "pods"}}]}},
    {"rule": {"family": "inet", "table": "filter", "chain": "pods", "handle": 5, "expr": [
        {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 80}},
        {"counter": {"packets": 0, "bytes": 0}}, {"drop": None}]}},
    {"rule": {"family": "inet", "table": "filter", "chain": "pods", "handle": 6, "expr": [
        {"match": {"op": "==", "left": {"xt": {"type": "match"}}, "right": 1}}, {"reject": None}]}},
]}


def test_nft_rules_judge_packets_through_jumps():
    chains = nft.parse(json.dumps(RULESET))
    web = nft.Packet(POD_A, POD_C, "tcp", 40000, 80)
    v = nft.judge(chains, ["prerouting", "forward", "postrouting"], web)
    assert v is not None and v.certain and v.action == "drop"
    assert v.text() == "an nft rule 'tcp dport 80 counter drop' in table inet filter chain pods drops it"
    # not port 80: only the rule podlab cannot read might reject it
    ping = nft.Packet(POD_A, POD_C, "icmp")
    maybe = nft.judge(chains, ["forward"], ping)
    assert maybe is not None and not maybe.certain and "may drop" in maybe.text()
    # another destination: nothing matches
    assert nft.judge(chains, ["forward"], nft.Packet(POD_A, "10.244.2.2", "tcp", 1, 80)) is None
    # an established reply is accepted before the jump
    assert nft.judge(chains, ["forward"], nft.Packet(POD_A, POD_C, "tcp", 1, 80, ct_state="established")) is None
    # other hooks do not see forward rules
    assert nft.judge(chains, ["input", "output"], web) is None


def test_nft_policy_drop_and_negation():
    rules = {"nftables": [
        {"chain": {"family": "ip", "table": "t", "name": "input", "hook": "input", "prio": 0, "type": "filter",
                   "policy": "drop"}},
        {"rule": {"family": "ip", "table": "t", "chain": "input", "handle": 1, "expr": [
            {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                       "right": "10.244.0.2"}}, {"accept": None}]}}]}
    chains = nft.parse(json.dumps(rules))
    assert nft.judge(chains, ["input"], nft.Packet("10.244.0.9", POD_C, "icmp")) is None
    v = nft.judge(chains, ["input"], nft.Packet(POD_A, POD_C, "icmp"))
    assert v is not None and v.rule is None and v.text() == "an nft policy drop in table ip t chain input drops it"


# ---------------------------------------------------------------- arguments and CLI

def test_probe_arguments_defaults_and_errors():
    assert endpoints.check_probe("icmp", None, None) == ("icmp", None, 84)
    assert endpoints.check_probe("TCP", None, None) == ("tcp", 80, 40)
    assert endpoints.check_probe("udp", None, 1400) == ("udp", 8081, 1400)
    for args, words in [(("sctp", None, None), "--proto 'sctp'"), (("icmp", 80, None), "--port: ICMP has no ports"),
                        (("tcp", 70000, None), "--port 70000: a port is 1-65535"),
                        (("tcp", 80, 20), "--size 20: a TCP probe is 40-65535"),
                        (("icmp", None, 70000), "--size 70000: an ICMP probe")]:
        with pytest.raises(PodlabError) as e:
            endpoints.check_probe(*args)
        assert words in str(e.value) and "\n" not in str(e.value)


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def test_packet_commands_are_registered_and_need_root(monkeypatch):
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    for command in (["trace", "a", "b"], ["explain", "a", "b"], ["mtu", "a", "b"], ["capture", "node1"]):
        code, _, err = run(*command)
        assert code == 1 and err.count("\n") == 1 and f"sudo podlab {command[0]}" in err


@pytest.mark.parametrize("argv,expected", [
    (["trace", "web-1", "10.244.1.2", "--proto", "tcp", "--port", "8080", "--size", "100", "-o", "json",
      "--timeout", "1.5"], {"src": "web-1", "dst": "10.244.1.2", "proto": "tcp", "port": 8080, "size": 100,
                            "output": "json", "timeout": 1.5}),
    (["explain", "a", "c"], {"proto": "icmp", "port": None, "size": None, "output": "text"}),
    (["mtu", "a", "c", "--timeout", "0.2"], {"timeout": 0.2}),
    (["capture", "node1:flannel.1", "-f", "udp port 8472", "-c", "5", "-w", "/tmp/x.pcap"],
     {"target": "node1:flannel.1", "filter": "udp port 8472", "count": 5, "write": "/tmp/x.pcap"}),
])
def test_cli_parses_packet_commands(monkeypatch, argv, expected):
    seen = {}

    def fake(args, out, err):
        seen.update(vars(args))
        return 0
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setattr(pcli, f"cmd_{argv[0]}", fake)   # register() hands lab.cli these handlers
    code, _, _ = run(*argv)
    assert code == 0
    for k, v in expected.items():
        assert seen[k] == v, k


@pytest.mark.parametrize("argv,words", [
    (["capture", "node1", "-c", "0"], "must be 1 or more"),
    (["trace", "a", "b", "--proto", "gre"], "invalid choice"),
    (["trace", "a", "b", "--port", "x"], "is not a whole number"),
    (["mtu", "a", "b", "--timeout", "-1"], "more than 0"),
])
def test_cli_rejects_bad_flags_naming_them(argv, words, capsys):
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args(argv)
    assert e.value.code == 2
    assert words in capsys.readouterr().err


def test_capture_line_format():
    line = capture.PacketLine(1700000000.123456, "lab-node1", "flannel.1", "out", "10.0.0.1 > 10.0.0.2 ICMP", b"")
    text = pcli.format_line(line)
    assert text.endswith(" flannel.1      out 10.0.0.1 > 10.0.0.2 ICMP")
    assert ".123456 " in text


def test_frames_checksum_matches_rfc1071_example():
    # RFC 1071's worked example: 00 01 f2 03 f4 f5 f6 f7 sums (ones' complement) to 0xddf2
    assert frames.checksum(bytes.fromhex("0001f203f4f5f6f7")) == (~0xDDF2 & 0xFFFF)
    assert struct.pack("!H", frames.checksum(b"\x00\x00")) == b"\xff\xff"


def test_arguments_module_is_pure():
    # argparse types used by the extension give argparse errors, not tracebacks
    with pytest.raises(argparse.ArgumentTypeError):
        pcli._positive_int("-3")
    with pytest.raises(argparse.ArgumentTypeError):
        pcli._seconds("soon")


# ---------------------------------------------------------------- rtnetlink answers

def test_netlink_attributes_round_trip():
    """What the engine packs (wire.attr), the readers read back (wire.attrs): the pair query speaks with."""
    from lab.netlink import wire
    data = wire.attr(wire.RTA_DST, bytes([10, 244, 1, 0])) + wire.u32(wire.RTA_OIF, 6) \
        + wire.attr(wire.RTA_TABLE, struct.pack("=I", 254))
    got = wire.attrs(data)
    assert got[wire.RTA_DST] == bytes([10, 244, 1, 0]) and wire.as_u32(got[wire.RTA_OIF]) == 6


class FakeRtnl:
    """Answers as the kernel does for one route: the effective route, and the fibmatch entry."""

    def __init__(self, got, fib):
        self.got, self.fib = got, fib

    def route_get(self, dst, src=None, iif=None, fibmatch=False):
        return self.fib if fibmatch else self.got


def test_route_answers_read_like_ip_route():
    from lab.netlink.query import RouteReply
    from lab.packets.view import route_answer
    names = {2: "cni0", 6: "flannel.1"}
    got = RouteReply(0, 1, 254, "10.244.1.2", 32, 6, "10.244.1.0", None, 0)
    fib = RouteReply(0, 1, 254, "10.244.1.0", 24, 6, "10.244.1.0", None, 4)
    answer = route_answer(FakeRtnl(got, fib), "10.244.1.2", "10.244.0.2", 2, names)
    assert answer.text() == "route 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink (table main)"
    refused = route_answer(FakeRtnl(RouteReply(101), RouteReply(101)), "8.8.8.8", None, None, names)
    assert (refused.error, refused.prefix) == (101, None)
    default = route_answer(FakeRtnl(RouteReply(0, 1, 254, "8.8.8.8", 32, 2, "10.244.0.1", "10.244.0.2"),
                                    RouteReply(0, 1, 254, None, 0, 2, "10.244.0.1")), "8.8.8.8", None, None, names)
    assert default.text() == "route default via 10.244.0.1 dev cni0 (table main)" and default.prefsrc == "10.244.0.2"
