"""`podlab check` in a Calico lab: what is wrong with the dataplane, said by name.

The matrix shows which paths fail; these findings say why, from each node's kernel and BIRD:
a BIRD that is not running, a BGP session that is not Established (and, for "Bad peer AS", the
node whose BIRD speaks another AS than the cluster's), another node's block missing from a node's routes
(or there by a route BIRD did not install), a node's own blackhole gone, a pod's cali interface
with proxy_arp off. `findings` is pure over a View and the BGP reports; `read` gathers them live.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lab.packets import calico
from lab.packets.calico import Facts

if TYPE_CHECKING:
    from lab.api import Lab
    from lab.packets.view import View



def findings(view: View, facts: Facts, bgp: Sequence[dict[str, Any]] = (), local_as: dict[str, int] | None = None,
             cluster_as: int | None = None) -> list[str]:
    """Every problem found, one sentence each. `bgp`: `lab.bgp.cli.node_status` reports; `local_as`:
    the AS each node's running BIRD speaks as; `cluster_as`: the topology's asNumber."""
    return [*bgp_findings(facts, bgp, local_as or {}, cluster_as), *block_findings(view, facts),
            *blackhole_findings(view, facts), *proxy_arp_findings(view, facts)]


def bgp_findings(facts: Facts, bgp: Sequence[dict[str, Any]], local_as: dict[str, int],
                 cluster_as: int | None) -> list[str]:
    """Each node's BIRD: running, speaking the cluster's AS, its sessions Established."""
    out = []
    names = {ip: facts.nodes[ns] for ip, ns in facts.node_ips.items()}
    for node, asn in local_as.items():
        if cluster_as is not None and asn != cluster_as:
            out.append(f"{node}'s BIRD runs with local as {asn}, but the cluster's AS is {cluster_as} "
                       f"(calico: asNumber): its peers refuse its sessions with 'Bad peer AS'")
    for report in bgp:
        node = report["node"]
        if report.get("error"):
            out.append(f"{report['error']}: it announces none of its blocks and learns no other node's")
            continue
        for peer in report.get("peers", []):
            info = peer.get("info") or ""
            if info.startswith("Established"):
                continue
            other = names.get(peer["address"], peer["address"])
            line = f"{node}'s BGP session with {other} ({peer['address']}) is not Established: {info or peer['state']}"
            if "Bad peer AS" in info:
                line += " (the two ends disagree on an AS number)"
            out.append(line)
    return out


def block_findings(view: View, facts: Facts) -> list[str]:
    """Each node must hold every other node's block as BIRD installed it (proto bird)."""
    if not facts.bgp:
        return []
    out = []
    for ns, node in facts.nodes.items():
        routes = {r.dst: r for r in view.state(ns).routes_in("main")}
        for block, owner_ns in facts.blocks:
            if owner_ns == ns:
                continue
            owner = facts.nodes[owner_ns]
            route = routes.get(str(block))
            if route is None:
                out.append(calico.not_learned_words(block, node, owner))
            elif route.proto != calico.PROTO_BIRD:
                out.append(f"{node} routes {block} ({owner}'s block) by a route BIRD did not install "
                           f"(proto {route.proto}): BGP should bring it, and a hand-made route hides whether it does")
    return out


def blackhole_findings(view: View, facts: Facts) -> list[str]:
    """Each node must hold its own blocks' blackholes."""
    out = []
    proto = calico.proto_name(facts.blackhole_proto())
    for ns, node in facts.nodes.items():
        held = {r.dst for r in view.state(ns).routes_in("main") if r.type == "blackhole"}
        out += [calico.no_blackhole_words(b, node, proto) for b in facts.own_blocks(ns) if str(b) not in held]
    return out


def proxy_arp_findings(view: View, facts: Facts) -> list[str]:
    """Each pod's cali end must answer ARP by proxy."""
    out = []
    for (ns, dev), pod in facts.pod_ends.items():
        if "1" not in (view.sysctl(ns, f"net.ipv4.conf.{dev}.proxy_arp"), view.sysctl(ns, "net.ipv4.conf.all.proxy_arp")):
            out.append(calico.no_proxy_words(dev, pod, facts.nodes[ns], calico.POD_GATEWAY))
    return out


def read(lab: Lab) -> list[str] | None:
    """The findings of a live lab; None if it is not a Calico lab."""
    from lab.packets.view import LiveView

    facts = calico.facts_of(lab)
    if facts is None:
        return None
    reports, local_as, cluster_as = bgp_state(lab) if facts.bgp else ([], {}, None)
    view = LiveView(lab)
    try:
        return findings(view, facts, reports, local_as, cluster_as)
    finally:
        view.close()


def bgp_state(lab: Lab) -> tuple[list[dict[str, Any]], dict[str, int], int]:
    """Each node's BGP report (lab.bgp.cli.node_status), the AS each node's running BIRD speaks as
    (its sessions' Local AS, from the same reply), and the cluster's AS (the topology's asNumber)."""
    from lab.bgp import cli as bgp_cli
    from lab.model import CalicoSettings

    reports, local_as = [], {}
    for node, sock in bgp_cli.birds(lab).items():
        report = bgp_cli.node_status(node, sock)
        reports.append(report)
        asn = next((p["local_as"] for p in report["protocols"] if p.get("local_as") is not None), None)
        if asn is not None:
            local_as[node] = asn
    return reports, local_as, (lab.topology.calico or CalicoSettings()).as_number
