"""Reachability probes: the Kubernetes network model as a pass/fail matrix, in one process.

    probe(pairs)  ICMP for every pair, HTTP where the target serves it; results in pair order

ICMP (icmp.py): raw sockets in the endpoints' namespaces send one echo request per pair and
watch the receivers, whose view of the source address proves there was no NAT. HTTP (http.py):
a GET to each HTTP port of the target, from a socket made in the source's namespace; the echo
workload's /clientip gives the same proof for TCP. Only the target addresses given are ever
sent to; the root namespace is never used.

model.py    Endpoint, Pair, PathResult            pairs.py    which pairs the network model requires
sockets.py  sockets made in namespaces            report.py   summary, one failure in words, the matrix
icmp_packets.py  echo requests built, ICMP read
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from lab.probe.http import HTTP_CONCURRENCY, HTTP_MAX_RESPONSE, Request, judge, probe_http
from lab.probe.icmp import probe_icmp
from lab.probe.icmp_packets import (ICMP_DEST_UNREACH, ICMP_ECHO, ICMP_ECHO_REPLY, ICMP_TIME_EXCEEDED, IcmpPacket,
                                    build_echo, checksum, parse_packet)
from lab.probe.model import PROTOS, Endpoint, Pair, PathResult
from lab.probe.pairs import endpoints_from_plan, expected_pairs
from lab.probe.report import CELL_LEGEND, FAILURE_LIST_LIMIT, GRID_LIMIT, describe, matrix, summary
from lab.probe.sockets import errno_text

__all__ = ["CELL_LEGEND", "FAILURE_LIST_LIMIT", "GRID_LIMIT", "HTTP_CONCURRENCY", "HTTP_MAX_RESPONSE",
           "ICMP_DEST_UNREACH", "ICMP_ECHO", "ICMP_ECHO_REPLY", "ICMP_TIME_EXCEEDED", "PROTOS", "Endpoint",
           "IcmpPacket", "Pair", "PathResult", "Request", "build_echo", "checksum", "describe", "endpoints_from_plan",
           "errno_text", "expected_pairs", "judge", "matrix", "parse_packet", "probe", "summary"]


def probe(pairs: Sequence[Pair], protos: Sequence[str] = PROTOS, timeout: float = 1.0) -> list[PathResult]:
    """Probe (src, dst, expected) triples: ICMP for every pair, HTTP where dst serves HTTP.

    Results come in pair order, ICMP before HTTP for each pair.
    """
    unknown = set(protos) - set(PROTOS)
    if unknown:
        raise ValueError(f"unknown protocol(s) {sorted(unknown)}; known: {', '.join(PROTOS)}")
    icmp = probe_icmp(pairs, timeout) if "icmp" in protos else None
    http = probe_http(pairs, [i for i, (_, d, _) in enumerate(pairs) if d.serves_http], timeout) \
        if "http" in protos else {}
    results: list[PathResult] = []
    for i, (src, dst, expected) in enumerate(pairs):
        common = dict(src=src.name, dst=dst.name, expected=expected, src_ip=src.address, dst_ip=dst.address,
                      src_kind=src.kind, src_node=src.node, dst_kind=dst.kind, dst_node=dst.node)
        if icmp is not None:
            o = icmp[i]
            results.append(_with_nat(PathResult(proto="icmp", ok=o.ok, seen_source=o.seen, rtt_ms=o.rtt_ms,
                                                error=o.error, **common)))
        reqs = http.get(i)
        if reqs is not None:
            seen = next((r.seen for r in reqs if r.seen is not None), None)
            errors = [f"{r.path} {r.error}" if len(reqs) > 1 else r.error for r in reqs if not r.ok]
            rtts = [r.rtt_ms for r in reqs if r.rtt_ms is not None]
            results.append(_with_nat(PathResult(
                proto="http", ok=all(r.ok for r in reqs), seen_source=seen,
                rtt_ms=max(rtts) if rtts else None, error="; ".join(e or "failed" for e in errors) or None,
                **common)))
    return results


def _with_nat(r: PathResult) -> PathResult:
    if r.ok and r.nat:
        return replace(r, error=f"NAT: receiver saw {r.seen_source}")
    return r
