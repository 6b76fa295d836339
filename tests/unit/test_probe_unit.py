"""lab.probe without root: packets, pair rules, HTTP answers, the matrix and the summaries."""
from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address, IPv4Network

import pytest

from lab import addressing, allocation, probe
from lab.engine import netns
from lab.model import Container, DesignChoice, Node, OutsideHost, Pod, Topology
from lab.probe import Endpoint, PathResult


def pod(name: str, node: str, ip: str, **kw) -> Endpoint:
    return Endpoint(name, "pod", node, f"lab-{name}", IPv4Address(ip), **kw)


def node(name: str, ip: str) -> Endpoint:
    return Endpoint(name, "node", name, f"lab-{name}", IPv4Address(ip))


def result(src: Endpoint, dst: Endpoint, proto: str = "icmp", ok: bool = True, expected: bool = True,
           seen: str | None = "self", error: str | None = None) -> PathResult:
    seen_source = str(src.ip) if seen == "self" else seen
    return PathResult(src.name, dst.name, proto, ok, expected, seen_source, str(src.ip),
                      1.0 if ok else None, error if error or ok else "timeout", str(dst.ip),
                      src.kind, src.node, dst.kind, dst.node)


# ---------------------------------------------------------------- packets

def ipv4(src: str, dst: str, payload: bytes, proto: int = socket.IPPROTO_ICMP) -> bytes:
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0,
                       socket.inet_aton(src), socket.inet_aton(dst))
    return head + payload


def test_checksum_matches_rfc1071_examples():
    # RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2, checksum 220d.
    assert probe.checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    assert probe.checksum(b"") == 0xFFFF
    assert probe.checksum(b"\xff\xff") == 0x0000
    assert probe.checksum(b"\x01") == probe.checksum(b"\x01\x00")


def test_echo_request_round_trips_through_parse():
    packet = probe.build_echo(0x1234, 0xBEEF, b"podlab-probe-tag")
    assert packet[0] == probe.ICMP_ECHO and probe.checksum(packet) == 0
    parsed = probe.parse_packet(ipv4("10.244.0.2", "10.244.1.3", packet))
    assert parsed is not None and parsed.checksum_ok
    assert (parsed.src, parsed.dst, parsed.type, parsed.code) == ("10.244.0.2", "10.244.1.3", 8, 0)
    assert (parsed.ident, parsed.seq, parsed.payload) == (0x1234, 0xBEEF, b"podlab-probe-tag")


def test_odd_payload_checksum_and_corruption_is_noticed():
    packet = bytearray(probe.build_echo(7, 1, b"abc"))
    assert probe.checksum(bytes(packet)) == 0
    packet[-1] ^= 0x01
    assert not probe.parse_packet(ipv4("10.0.0.1", "10.0.0.2", bytes(packet))).checksum_ok


def test_destination_unreachable_quotes_the_request():
    request = ipv4("10.244.0.2", "10.244.9.9", probe.build_echo(40000, 17, b"x" * 20))
    error_body = struct.pack("!BBHI", 3, 1, 0, 0) + request[:28]       # the quote: IP header + 8 bytes
    error_body = error_body[:2] + struct.pack("!H", probe.checksum(error_body)) + error_body[4:]
    parsed = probe.parse_packet(ipv4("10.244.0.1", "10.244.0.2", error_body))
    assert parsed.type == probe.ICMP_DEST_UNREACH and parsed.code == 1 and parsed.checksum_ok
    assert parsed.quoted is not None
    assert (parsed.quoted.dst, parsed.quoted.type, parsed.quoted.ident, parsed.quoted.seq) == \
        ("10.244.9.9", probe.ICMP_ECHO, 40000, 17)
    assert parsed.quoted.payload == b""


@pytest.mark.parametrize("data", [b"", b"\x45" * 10, ipv4("1.1.1.1", "2.2.2.2", b"\0" * 8, proto=6),
                                  ipv4("1.1.1.1", "2.2.2.2", b"\0" * 4)])
def test_parse_ignores_what_is_not_icmp(data):
    assert probe.parse_packet(data) is None


# ---------------------------------------------------------------- pairs

def test_expected_pairs_follow_the_network_model():
    pods = [pod("a", "n1", "10.244.0.2"), pod("b", "n1", "10.244.0.3"), pod("c", "n2", "10.244.1.2")]
    nodes = [node("n1", "192.168.56.11"), node("n2", "192.168.56.12")]
    outside = [Endpoint("ecs", "outside", None, "lab-ecs", IPv4Address("192.168.56.13"))]
    pairs = probe.expected_pairs(pods, nodes, outside, outside_reaches_pods=False)
    names = [(s.name, d.name) for s, d, _ in pairs]
    assert len(names) == 3 * 2 + 2 * 3 and len(set(names)) == len(names)
    assert all(expected for _, _, expected in pairs)
    assert ("a", "a") not in names and ("a", "b") in names and ("c", "a") in names   # same node and across
    assert ("n2", "a") in names and ("n1", "a") in names                             # own node and others
    assert not any(s.kind == "outside" for s, _, _ in pairs)
    assert not any(d.kind != "pod" for _, d, _ in pairs)
    with_outside = probe.expected_pairs(pods, nodes, outside, outside_reaches_pods=True)
    assert [(s.name, d.name) for s, d, _ in with_outside if s.kind == "outside"] == \
        [("ecs", "a"), ("ecs", "b"), ("ecs", "c")]


def test_endpoints_from_plan_know_the_workload_ports():
    topo = Topology(
        name="t", design=DesignChoice("bridge", "host-gw", "flannel-host-gw"), pod_cidr=IPv4Network("10.244.0.0/16"), node_mask=24,
        node_subnet=IPv4Network("192.168.56.0/24"), service_cidr=IPv4Network("10.96.0.0/12"), mtu=1500,
        nodes=(Node("n1"), Node("n2")),
        pods=(Pod("web", "n1", (Container("web", "nginx:1.25"),)),
              Pod("echo", "n2", (Container("e", "registry.k8s.io/e2e-test-images/agnhost:2.47"),)),
              Pod("idle", "n2", (Container("sh", "busybox"),)),
              Pod("hostnet", "n1", (Container("sh", "busybox"),), host_network=True)),
        outside=(OutsideHost("ecs"),))
    plan = allocation.allocate(topo)
    pods, nodes, outside = probe.endpoints_from_plan(topo, plan)
    by = {p.name: p for p in pods}
    assert by["web"].http_port == 80 and by["web"].http_expect == "Welcome to the home page of host web!"
    assert by["echo"].clientip_port == 8080 and by["echo"].http_port is None
    assert not by["idle"].serves_http
    assert by["hostnet"].netns == plan.node("n1").netns and by["hostnet"].ip == plan.node("n1").ip
    assert [(n.name, n.kind, n.node, n.ip) for n in nodes] == [("n1", "node", "n1", plan.node("n1").ip),
                                                               ("n2", "node", "n2", plan.node("n2").ip)]
    assert outside[0].kind == "outside" and outside[0].node is None


def test_unknown_protocol_is_an_error_listing_the_known():
    with pytest.raises(ValueError, match="icmp, http"):
        probe.probe([], protos=("udp",))


def test_nothing_to_probe_is_nothing():
    assert probe.probe([]) == []


# ---------------------------------------------------------------- results

def test_pass_fail_and_nat_rules():
    a, b = pod("a", "n1", "10.244.0.2"), pod("b", "n2", "10.244.1.2")
    assert result(a, b).passed and not result(a, b).nat
    natted = result(a, b, seen="192.168.56.11")
    assert natted.nat and not natted.passed
    assert not result(a, b, ok=False).passed
    assert result(a, b, ok=False, expected=False).passed                 # informational only
    assert result(a, b, seen=None).passed                                # not observed is not NAT


def test_describe_reads_like_a_sentence():
    web1, web2 = pod("web-1", "node2", "10.244.1.2"), pod("web-2", "node1", "10.244.0.3")
    assert probe.describe(result(web1, web2, ok=False)) == "pod web-1 (node2) -> 10.244.0.3 (web-2) icmp: timeout"
    n1 = node("node1", "192.168.56.11")
    assert probe.describe(result(n1, web1, proto="http", ok=False, error="HTTP 404")) == \
        "node node1 -> 10.244.1.2 (web-1) http: HTTP 404"


def test_summary_counts():
    a, b, c = pod("a", "n1", "10.244.0.2"), pod("b", "n1", "10.244.0.3"), pod("c", "n2", "10.244.1.2")
    results = [result(a, b), result(a, c, ok=False), result(b, c, seen="10.244.0.1"),
               result(c, a, proto="http"), result(c, b, ok=False, expected=False)]
    s = probe.summary(results)
    assert (s["total"], s["passed"], s["failed"], s["nat"]) == (5, 3, 2, 1)
    assert s["by_proto"]["icmp"]["total"] == 4 and s["by_proto"]["http"] == \
        {"total": 1, "passed": 1, "failed": 0, "nat": 0, "expected": 1}


def test_matrix_grid_shows_pass_fail_nat_and_lists_failures():
    a, b, c = pod("a", "n1", "10.244.0.2"), pod("b", "n1", "10.244.0.3"), pod("c", "n2", "10.244.1.2")
    results = [result(a, b), result(a, b, proto="http"),
               result(a, c, ok=False), result(b, a), result(b, c, seen="10.244.0.1", error="NAT: receiver saw 10.244.0.1"),
               result(c, a), result(c, b, ok=False, expected=False)]
    text = probe.matrix(results, ["a", "b", "c"])
    lines = text.splitlines()
    assert lines[0].split() == ["1", "2", "3"]
    assert lines[1].split() == ["1", "a", "·", "✓", "✗"]
    assert lines[2].split() == ["2", "b", "✓", "·", "N"]
    assert lines[3].split() == ["3", "c", "✓", "○", "·"]
    assert "✓ all probes passed" in text and "N NAT" in text and "○ not required" in text
    assert "5/7 paths passed, 2 failed, 1 NATed" in text
    assert "  pod a (n1) -> 10.244.1.2 (c) icmp: timeout" in lines
    assert "  pod b (n1) -> 10.244.1.2 (c) icmp: NAT: receiver saw 10.244.0.1" in lines
    assert not any("(b) icmp" in line and "pod c" in line for line in lines)   # informational is no failure


def test_matrix_cell_fails_when_any_protocol_fails():
    a, b = pod("a", "n1", "10.244.0.2"), pod("b", "n1", "10.244.0.3")
    text = probe.matrix([result(a, b), result(a, b, proto="http", ok=False, error="HTTP 404")], ["a", "b"])
    assert text.splitlines()[1].split() == ["1", "a", "·", "✗"]
    assert "pod a (n1) -> 10.244.0.3 (b) http: HTTP 404" in text


def test_matrix_over_thirty_endpoints_is_a_per_node_summary():
    pods = [pod(f"p{i}", f"node{i % 2 + 1}", f"10.244.{i % 2}.{i + 2}") for i in range(40)]
    nodes = [node("node1", "192.168.56.11"), node("node2", "192.168.56.12")]
    pairs = probe.expected_pairs(pods, nodes, [], False)
    broken = pods[3]                                         # on node2
    results = [result(s, d, ok=broken not in (s, d)) for s, d, _ in pairs]
    text = probe.matrix(results, [e.name for e in pods + nodes])
    lines = text.splitlines()
    assert lines[0] == "42 endpoints: per-group summary (rows send, columns receive)"
    row = next(line for line in lines if "pods on node1 -> pods on node1" in line)
    assert row.startswith("✓") and "380/380 passed" in row and "[icmp 380/380]" in row
    row = next(line for line in lines if "pods on node1 -> pods on node2" in line)
    assert row.startswith("✗") and "380/400 passed" in row
    row = next(line for line in lines if "pods on node2 -> pods on node2" in line)
    assert "342/380 passed" in row                           # 19 out and 19 in: 380 - 38
    row = next(line for line in lines if "node node1 -> pods on node2" in line)
    assert "19/20 passed" in row
    assert not any(line.split()[:2] == ["1", "p0"] for line in lines if line.strip())   # no grid
    assert "  pod p3 (node2) -> 10.244.0.2 (p0) icmp: timeout" in text
    failures = text.split("Failures:\n", 1)[1].splitlines()
    assert len(failures) == probe.FAILURE_LIST_LIMIT + 1 and failures[-1].startswith("  ... and ")


def test_group_summary_counts_nat_per_protocol():
    pods = [pod(f"p{i}", "node1", f"10.244.0.{i + 2}") for i in range(31)]
    results = [result(pods[0], d, seen="10.244.0.1") for d in pods[1:]]
    results += [result(pods[0], d, proto="http") for d in pods[1:]]
    text = probe.matrix(results, [p.name for p in pods])
    row = next(line for line in text.splitlines() if "pods on node1 -> pods on node1" in line)
    assert "30/60 passed" in row and "icmp 0/30 (30 NAT)" in row and "http 30/30" in row


# ---------------------------------------------------------------- HTTP answers

def http_request(expect: str | None = None, clientip: bool = False) -> probe.Request:
    a, b = pod("a", "n1", "10.244.0.2"), pod("b", "n1", "10.244.0.3", http_port=80)
    return probe.Request(0, a, b, 80, "/clientip" if clientip else "/", expect, clientip)


@pytest.mark.parametrize("answer,expect,clientip,ok,error,seen", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "hell", False, True, None, None),
    (b"HTTP/1.1 200 OK\r\n\r\nhello", "Welcome", False, False, "body lacks 'Welcome'", None),
    (b"HTTP/1.0 404 Not Found\r\n\r\nnope", None, False, False, "HTTP 404", None),
    (b"", None, False, False, "no HTTP response", None),
    (b"SSH-2.0-OpenSSH\r\n", None, False, False, "bad HTTP response 'SSH-2.0-OpenSSH'", None),
    (b"HTTP/1.1 200 OK\r\n\r\n10.244.0.2:40112", None, True, True, None, "10.244.0.2"),
    (b"HTTP/1.1 200 OK\n\n10.244.0.1:40112\n", None, True, True, None, "10.244.0.1"),
    (b"HTTP/1.1 200 OK\r\n\r\nnot an address", None, True, False, "bad /clientip answer 'not an address'", None),
])
def test_http_answers(answer, expect, clientip, ok, error, seen):
    req = http_request(expect, clientip)
    req.incoming += answer
    probe.judge(req, 0.0)
    assert (req.ok, req.error, req.seen) == (ok, error, seen)


# ---------------------------------------------------------------- namespaces that cannot be entered

def test_not_root_is_one_clear_error(monkeypatch):
    def refuse(jobs):   # as lab.engine.netns.run_in_each reports a namespace it may not enter
        return [PermissionError(1, "Operation not permitted") for _ in jobs]
    monkeypatch.setattr(netns, "run_in_each", refuse)
    a, b = pod("a", "n1", "10.244.0.2"), pod("b", "n1", "10.244.0.3")
    with pytest.raises(PermissionError, match="probing needs root"):
        probe.probe([(a, b, True)])


def test_a_missing_namespace_fails_its_pairs_in_words(monkeypatch):
    def missing(jobs):
        return [FileNotFoundError(2, "No such file or directory") for _ in jobs]
    monkeypatch.setattr(netns, "run_in_each", missing)
    a, b = pod("a", "n1", "10.244.0.2"), pod("b", "n1", "10.244.0.3", http_port=80)
    results = probe.probe([(a, b, True)], timeout=0.1)
    assert [(r.proto, r.ok, r.error) for r in results] == [
        ("icmp", False, "cannot open a socket in namespace lab-a: no such file or directory"),
        ("http", False, "cannot open a socket in namespace lab-a: no such file or directory")]


# ---------------------------------------------------------------- HTTP answers: when one is whole

@pytest.mark.parametrize("answer,whole", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello", True),
    (b"HTTP/1.1 200 OK\r\ncontent-length:5\r\n\r\nhello", True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", False),       # the rest is on its way
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", False),
    (b"HTTP/1.1 200 OK\r\n\r\n10.244.0.2:40112", False),                # no length: only EOF ends it
    (b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\nhello", False),
])
def test_an_answer_is_whole_by_its_content_length(answer, whole):
    assert probe.http.complete(bytearray(answer)) is whole


def test_path_result_json_is_its_fields_and_verdicts():
    from dataclasses import asdict
    a, b = pod("a", "n1", "10.244.0.2"), pod("b", "n2", "10.244.1.2")
    for r in (result(a, b), result(a, b, seen="192.168.56.11"), result(a, b, ok=False)):
        assert r.to_json() == asdict(r) | {"passed": r.passed, "nat": r.nat}
