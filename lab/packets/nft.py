"""Would an nft rule drop this packet? Enough of nftables' JSON to answer for lab-style rules.

The walk reads `nft -j list ruleset` of a namespace on the path and runs a packet (addresses,
protocol, ports, interfaces, conntrack state) through the base chains of the hooks it passes,
following jump/goto/return. Expressions it does not understand make a rule's match unknown:
a drop behind one is reported as "may drop", never as certain.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

FAMILIES = ("ip", "inet")
TERMINAL = ("accept", "drop", "reject")
MAX_DEPTH = 16


@dataclass
class Rule:
    family: str
    table: str
    chain: str
    handle: int
    expr: list[dict[str, Any]]

    @property
    def text(self) -> str:
        return " ".join(_render(e) for e in self.expr)


@dataclass
class Chain:
    family: str
    table: str
    name: str
    hook: str | None = None
    type: str | None = None
    prio: int = 0
    policy: str | None = None
    rules: list[Rule] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"table {self.family} {self.table} chain {self.name}"


@dataclass(frozen=True)
class Packet:
    src: str
    dst: str
    proto: str                   # icmp | tcp | udp
    sport: int | None = None
    dport: int | None = None
    iif: str | None = None
    oif: str | None = None
    ct_state: str = "new"        # new for a request, established for its reply


@dataclass(frozen=True)
class Verdict:
    action: str                  # drop | reject
    rule: Rule | None            # None: the chain's policy
    chain: Chain
    certain: bool

    def text(self) -> str:
        what = f"rule '{self.rule.text}'" if self.rule else f"policy {self.action}"
        verb = "drops" if self.certain else "may drop"
        return f"an nft {what} in {self.chain.where} {verb} it"


def parse(text: str) -> list[Chain]:
    items = json.loads(text).get("nftables", [])
    chains: dict[tuple[str, str, str], Chain] = {}
    for item in items:
        if "chain" in item:
            c = item["chain"]
            chains[(c["family"], c["table"], c["name"])] = Chain(
                c["family"], c["table"], c["name"], c.get("hook"), c.get("type"), int(c.get("prio", 0) or 0),
                c.get("policy"))
    for item in items:
        if "rule" in item:
            r = item["rule"]
            chain = chains.get((r["family"], r["table"], r["chain"]))
            if chain is not None:
                chain.rules.append(Rule(r["family"], r["table"], r["chain"], int(r.get("handle", 0)),
                                        list(r.get("expr", []))))
    return list(chains.values())


def judge(chains: list[Chain], hooks: list[str], pkt: Packet) -> Verdict | None:
    """The first drop the packet meets on these hooks (in order), or None if none would drop it."""
    by_name = {(c.family, c.table, c.name): c for c in chains}
    for hook in hooks:
        base = sorted((c for c in chains if c.hook == hook and c.family in FAMILIES
                       and (c.type or "filter") in ("filter", "route")), key=lambda c: c.prio)
        for chain in base:
            action, rule, certain = _run(chain, pkt, by_name, 0)
            if action in ("drop", "reject"):
                return Verdict(action, rule, by_name.get((rule.family, rule.table, rule.chain), chain)
                               if rule else chain, certain)
            if action is None and chain.policy == "drop":
                return Verdict("drop", None, chain, True)
    return None


def _run(chain: Chain, pkt: Packet, by_name: dict, depth: int) -> tuple[str | None, Rule | None, bool]:
    """(terminal action or None, the rule that decided, certain) for one chain."""
    if depth > MAX_DEPTH:
        return None, None, False
    maybe: tuple[str, Rule] | None = None
    for rule in chain.rules:
        matched = True
        verdict: dict[str, Any] | None = None
        for e in rule.expr:
            kind = next(iter(e))
            if kind in TERMINAL or kind in ("jump", "goto", "return"):
                verdict = e
                break
            m = _match(e, pkt)
            if m is False:
                matched = False
                break
            if m is None:
                matched = None   # type: ignore[assignment]
        if matched is False or verdict is None:
            continue
        kind = next(iter(verdict))
        if matched is None:
            if kind in ("drop", "reject") and maybe is None:
                maybe = (kind, rule)
            continue
        if kind in TERMINAL:
            return kind, rule, True
        if kind == "return":
            break
        target = verdict[kind].get("target") if isinstance(verdict[kind], dict) else None
        sub = by_name.get((chain.family, chain.table, target))
        if sub is not None:
            action, r, certain = _run(sub, pkt, by_name, depth + 1)
            if action is not None:
                return action, r, certain
        if kind == "goto":
            break
    if maybe is not None:
        return maybe[0], maybe[1], False
    return None, None, True


def _value(left: Any, pkt: Packet) -> tuple[bool, Any]:
    """(known, value) of a match's left side for this packet; value None: the header is absent."""
    if not isinstance(left, dict):
        return False, None
    if "payload" in left:
        p = left["payload"]
        proto, fld = p.get("protocol"), p.get("field")
        if proto == "ip":
            return {"saddr": (True, pkt.src), "daddr": (True, pkt.dst),
                    "protocol": (True, pkt.proto)}.get(fld, (False, None))
        if proto in ("tcp", "udp", "th"):
            if proto != "th" and proto != pkt.proto:
                return True, None
            if pkt.proto not in ("tcp", "udp"):
                return True, None
            return {"sport": (True, pkt.sport), "dport": (True, pkt.dport)}.get(fld, (False, None))
        if proto == "icmp":
            return (True, None) if pkt.proto != "icmp" else (False, None)
        return False, None
    if "meta" in left:
        key = left["meta"].get("key")
        return {"l4proto": (True, pkt.proto), "iifname": (True, pkt.iif), "oifname": (True, pkt.oif),
                "nfproto": (True, "ipv4"), "protocol": (True, "ip")}.get(key, (False, None))
    if "ct" in left and left["ct"].get("key") == "state":
        return True, pkt.ct_state
    return False, None


def _contains(right: Any, value: Any) -> bool | None:
    if isinstance(right, dict):
        if "set" in right:
            results = [_contains(r, value) for r in right["set"]]
            return True if True in results else (None if None in results else False)
        if "prefix" in right:
            p = right["prefix"]
            try:
                return IPv4Address(value) in IPv4Network(f"{p['addr']}/{p['len']}", strict=False)
            except ValueError:
                return False
        if "range" in right:
            lo, hi = right["range"]
            try:
                return int(lo) <= int(value) <= int(hi)
            except (TypeError, ValueError):
                return None
        return None
    if isinstance(right, list):
        return _contains({"set": right}, value)
    if isinstance(value, int) or isinstance(right, int):
        try:
            return int(right) == int(value)
        except (TypeError, ValueError):
            return False
    return str(right) == str(value)


def _match(e: dict[str, Any], pkt: Packet) -> bool | None:
    kind = next(iter(e))
    if kind in ("counter", "log", "comment"):
        return True
    if kind != "match":
        return None
    m = e["match"]
    known, value = _value(m.get("left"), pkt)
    if not known:
        return None
    if value is None:
        return False
    if m.get("left", {}).get("ct") and isinstance(m.get("right"), (str, list)):
        states = m["right"] if isinstance(m["right"], list) else [m["right"]]
        hit = value in states
    else:
        got = _contains(m.get("right"), value)
        if got is None:
            return None
        hit = got
    op = m.get("op", "==")
    if op in ("==", "in"):
        return hit
    if op == "!=":
        return not hit
    return None


def _render(e: dict[str, Any]) -> str:
    kind = next(iter(e))
    body = e[kind]
    if kind == "match":
        op = body.get("op", "==")
        return f"{_side(body.get('left'))} {'' if op in ('==', 'in') else op + ' '}{_side(body.get('right'))}"
    if kind in ("jump", "goto") and isinstance(body, dict):
        return f"{kind} {body.get('target')}"
    if body is None or kind in ("counter", "reject"):
        return kind
    return kind


def _side(v: Any) -> str:
    if isinstance(v, dict):
        if "payload" in v:
            return f"{v['payload'].get('protocol')} {v['payload'].get('field')}"
        if "meta" in v:
            return f"meta {v['meta'].get('key')}"
        if "ct" in v:
            return f"ct {v['ct'].get('key')}"
        if "prefix" in v:
            return f"{v['prefix'].get('addr')}/{v['prefix'].get('len')}"
        if "set" in v:
            return "{ " + ", ".join(_side(x) for x in v["set"]) + " }"
        if "range" in v:
            return "-".join(str(x) for x in v["range"])
    if isinstance(v, list):
        return "{ " + ", ".join(_side(x) for x in v) + " }"
    return str(v)
