"""Probe results in words: counts, one failure as a sentence, the pass/fail matrix."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from lab.probe.model import PROTOS, PathResult

GRID_LIMIT = 30                  # more endpoints than this: a per-node summary instead of a grid
FAILURE_LIST_LIMIT = 60


def summary(results: Sequence[PathResult]) -> dict:
    """Counts for JSON output: total, passed, failed, nat, and the same per protocol."""
    per: dict[str, list[int]] = {}     # proto -> [total, passed, nat, expected]
    for r in results:
        c = per.get(r.proto)
        if c is None:
            c = per[r.proto] = [0, 0, 0, 0]
        c[0] += 1
        c[1] += r.passed
        c[2] += r.nat
        c[3] += r.expected

    def counts(total: int, passed: int, nat: int, expected: int) -> dict:
        return {"total": total, "passed": passed, "failed": total - passed, "nat": nat, "expected": expected}
    out = counts(*(sum(c[k] for c in per.values()) for k in range(4)))
    out["by_proto"] = {p: counts(*per[p]) for p in PROTOS if p in per}
    return out


def describe(r: PathResult) -> str:
    """One path in words: 'pod web-1 (node2) -> 10.244.0.3 (web-2) icmp: timeout'."""
    where = f" ({r.src_node})" if r.src_kind == "pod" and r.src_node else ""
    what = r.error or ("NAT" if r.nat else "failed")
    return f"{r.src_kind} {r.src}{where} -> {r.dst_ip or '?'} ({r.dst}) {r.proto}: {what}"


CELL_LEGEND = ("✓ all probes passed   ✗ a required path failed   N NAT: the receiver saw another source\n"
               "○ not required, not reachable   · not probed / self")


def _cell(rs: Sequence[PathResult]) -> str:
    if not rs:
        return "·"
    if any(r.nat for r in rs):
        return "N"
    if any(not r.passed for r in rs):
        return "✗"
    if any(not r.ok for r in rs):
        return "○"
    return "✓"


def _failures(results: Sequence[PathResult]) -> list[str]:
    failed = [r for r in results if not r.passed]
    lines = [f"  {describe(r)}" for r in failed[:FAILURE_LIST_LIMIT]]
    if len(failed) > FAILURE_LIST_LIMIT:
        lines.append(f"  ... and {len(failed) - FAILURE_LIST_LIMIT} more")
    return lines


def matrix(results: Sequence[PathResult], names: Sequence[str]) -> str:
    """Rows = sources, columns = destinations; a per-node summary above GRID_LIMIT endpoints."""
    wanted = set(names)
    results = [r for r in results if r.src in wanted and r.dst in wanted]
    lines = _grid(results, names) if len(names) <= GRID_LIMIT else _group_summary(results, names)
    s = summary(results)
    lines.append("")
    lines.append(f"{s['passed']}/{s['total']} paths passed, {s['failed']} failed, {s['nat']} NATed")
    fails = _failures(results)
    if fails:
        lines.append("Failures:")
        lines += fails
    return "\n".join(lines)


def _grid(results: Sequence[PathResult], names: Sequence[str]) -> list[str]:
    cells: dict[tuple[str, str], list[PathResult]] = defaultdict(list)
    for r in results:
        cells[(r.src, r.dst)].append(r)
    num_w = len(str(len(names)))
    label_w = max((len(n) for n in names), default=0) + num_w + 1
    col_w = max(num_w, 1) + 1
    lines = [" " * label_w + " " + "".join(f"{j + 1:>{col_w}}" for j in range(len(names)))]
    for i, src in enumerate(names):
        row = "".join(f"{_cell(cells.get((src, dst), ())):>{col_w}}" for dst in names)
        lines.append(f"{i + 1:>{num_w}} {src:<{label_w - num_w - 1}} {row}")
    lines.append("")
    lines.append("rows send, columns receive (columns numbered as the rows); " + CELL_LEGEND.split("\n")[0])
    lines.append(CELL_LEGEND.split("\n")[1])
    return lines


def _group(kind: str, name: str, node: str | None) -> str:
    if kind == "pod":
        return f"pods on {node}" if node else "pods"
    if kind == "node":
        return f"node {name}"
    return "outside hosts"


def _group_summary(results: Sequence[PathResult], names: Sequence[str]) -> list[str]:
    order = {n: i for i, n in enumerate(names)}
    stats: dict[tuple[str, str], dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0]))
    rank: dict[str, int] = {}
    group_of: dict[str, str] = {}      # endpoint name -> its group, made once per endpoint
    for r in results:
        g_src = group_of.get(r.src) or group_of.setdefault(r.src, _group(r.src_kind, r.src, r.src_node))
        g_dst = group_of.get(r.dst) or group_of.setdefault(r.dst, _group(r.dst_kind, r.dst, r.dst_node))
        rank.setdefault(g_src, order[r.src])
        rank.setdefault(g_dst, order[r.dst])
        c = stats[(g_src, g_dst)][r.proto]
        c[0] += r.passed
        c[1] += 1
        c[2] += r.nat
    lines = [f"{len(names)} endpoints: per-group summary (rows send, columns receive)"]
    keys = sorted(stats, key=lambda k: (rank[k[0]], rank[k[1]]))
    rows = []
    for a, b in keys:
        per = stats[(a, b)]
        passed = sum(c[0] for c in per.values())
        total = sum(c[1] for c in per.values())
        parts = ", ".join(f"{p} {c[0]}/{c[1]}" + (f" ({c[2]} NAT)" if c[2] else "")
                          for p, c in sorted(per.items(), key=lambda kv: PROTOS.index(kv[0])))
        rows.append(("✓" if passed == total else "✗", f"{a} -> {b}", f"{passed}/{total}", parts))
    width = max((len(r[1]) for r in rows), default=0)
    count_width = max((len(r[2]) for r in rows), default=0)
    lines += [f"{mark} {path:<{width}}  {count:>{count_width}} passed  [{parts}]" for mark, path, count, parts in rows]
    return lines
