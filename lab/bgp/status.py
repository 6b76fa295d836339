"""A node's BGP sessions as a trainee knows them: `calicoctl node status`, `birdc show protocols`,
and a JSON-able dict of the same.

calicoctl (calicoctl/commands/node/status.go) sends `show protocols` to BIRD's socket, keeps the
BGP rows whose name is `(Global|Node|Mesh)_<ip with _>`, reads the peer's address and type back
from that name, and prints a tablewriter table; this module does the same from
lab.bgp.birdc.Protocol rows.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from lab.bgp.birdc import Protocol

_PEER_NAME = re.compile(r"^(Global|Node|Mesh)_(.+)$")
PEER_TYPES = {"Global": "global", "Mesh": "node-to-node mesh", "Node": "node specific"}
HEADINGS = ("PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO")


@dataclass(frozen=True)
class Peer:
    """One row of calicoctl's IPv4 BGP status table."""
    address: str
    type: str           # node-to-node mesh, node specific, global
    state: str          # BIRD's protocol state: up, start, down
    since: str
    info: str           # the BGP state and its message: "Established", "Active Socket: Connection refused"
    protocol: str
    imported: int | None = None
    exported: int | None = None


def peers(protocols: Sequence[Protocol]) -> list[Peer]:
    """The BGP peers calicoctl would list, in BIRD's order."""
    out = []
    for p in protocols:
        m = _PEER_NAME.match(p.name)
        if p.proto != "BGP" or not m:
            continue
        out.append(Peer(address=m[2].replace("_", "."), type=PEER_TYPES[m[1]], state=p.state,
                        since=p.since, info=" ".join(p.info.split()), protocol=p.name,
                        imported=p.imported, exported=p.exported))
    return out


def calicoctl_node_status(protocols: Sequence[Protocol]) -> str:
    """What `calicoctl node status` prints for a node running only the IPv4 BIRD."""
    found = peers(protocols)
    table = _table([(p.address, p.type, p.state, p.since, p.info) for p in found]) if found \
        else "No IPv4 peers found."
    return f"Calico process is running.\n\nIPv4 BGP status\n{table}\n\nIPv6 BGP status\nNo IPv6 peers found.\n"


def _table(rows: list[tuple[str, ...]]) -> str:
    """olekukonko/tablewriter's default look: headings centred (the odd space on the right),
    cells left-aligned, one space of padding each side."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADINGS)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def centred(text: str, width: int) -> str:
        left = (width - len(text)) // 2
        return " " * left + text + " " * (width - len(text) - left)

    head = "|" + "|".join(f" {centred(h, w)} " for h, w in zip(HEADINGS, widths)) + "|"
    body = ["|" + "|".join(f" {c:<{w}} " for c, w in zip(r, widths)) + "|" for r in rows]
    return "\n".join([rule, head, rule, *body, rule])


def birdc_show_protocols(protocols: Sequence[Protocol], version: str = "2.0.12") -> str:
    """What `birdc show protocols` prints (nest/proto.c's row format)."""
    def row(*cols: str) -> str:
        return "{:<10} {:<10} {:<10} {:<6} {:<12}  {}".format(*cols).rstrip()

    lines = [f"BIRD {version} ready.", row("Name", "Proto", "Table", "State", "Since", "Info")]
    lines += [row(p.name, p.proto, p.table, p.state, p.since, p.info) for p in protocols]
    return "\n".join(lines) + "\n"


def status_dict(node: str, protocols: Sequence[Protocol]) -> dict:
    """The same as plain data: the node, its peers (calicoctl's view) and every BIRD protocol."""
    return {"node": node,
            "peers": [asdict(p) for p in peers(protocols)],
            "protocols": [asdict(p) for p in protocols]}
