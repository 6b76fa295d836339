"""`podlab bgp [NODE]`: each node's BGP sessions and learned routes, read from its BIRD's control
socket, as `calicoctl node status` and `birdc show protocols` print them."""
from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any, TextIO

from lab.cliopts import lab_option
from lab.errors import PodlabError

if TYPE_CHECKING:
    from lab.api import Lab
    from lab.planner import Plan

NEEDS_ROOT = {"bgp"}


def register(sub: argparse._SubParsersAction) -> dict[str, Any]:
    sp = sub.add_parser("bgp", help="BGP sessions and routes of each node's BIRD (calico designs), "
                        "like calicoctl node status and birdc show protocols")
    sp.add_argument("node", nargs="?", help="one node (default: every node)")
    sp.add_argument("-o", "--output", choices=["text", "json"], default="text")
    lab_option(sp)
    return {"bgp": cmd_bgp}


def birds(lab: Lab) -> dict[str, str]:
    """{node name: BIRD's control socket} of a lab, from its plan."""
    return planned_birds(lab.plan, lab.name)


def planned_birds(plan: Plan, lab_name: str) -> dict[str, str]:
    """{node name: BIRD's control socket} of a plan, were it up as lab `lab_name` (the TUI's preview
    shows the nodes that would run BIRD too)."""
    from lab import state
    from lab.ops import BgpEstablished, StartDaemon
    by_ns = {n.netns: n.name for n in plan.addresses.nodes}
    return {by_ns[op.ns]: state.expand(op.ready.socket, lab_name) for op in plan.ops
            if isinstance(op, StartDaemon) and isinstance(op.ready, BgpEstablished) and op.ns in by_ns}


def node_status(node: str, socket_path: str) -> dict:
    """One node's BGP as plain data; `error` says why BIRD did not answer (stopped, say)."""
    from lab.bgp import birdc, status
    try:
        protocols = birdc.protocols(socket_path)
    except (OSError, birdc.BirdError) as e:
        return {"node": node, "error": f"BIRD is not running on {node} (its control socket {socket_path}: "
                                       f"{getattr(e, 'strerror', None) or e})", "peers": [], "protocols": []}
    return {**status.status_dict(node, protocols), "error": None,
            "text": status.calicoctl_node_status(protocols), "birdc": status.birdc_show_protocols(protocols)}


def as_json(report: dict) -> dict:
    """A node_status report as `-o json` prints it: the data, without the two texts."""
    return {k: v for k, v in report.items() if k not in ("text", "birdc")}


def cmd_bgp(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from lab import api
    lab = api.pick(args.lab)
    found = birds(lab)
    if not found:
        raise PodlabError(f"lab {lab.name} runs no BGP: its design {lab.design.name} has backend "
                          f"{lab.design.backend.name} (BGP is the calico design's: design: calico)")
    if args.node:
        target = lab.target(args.node)
        if target.name not in found:
            raise PodlabError(f"{target.name} is not a node running BIRD; nodes: {', '.join(found)}")
        found = {target.name: found[target.name]}
    reports = [node_status(node, sock) for node, sock in found.items()]
    if args.output == "json":
        print(json.dumps([as_json(r) for r in reports], indent=2), file=out)
    else:
        for r in reports:
            print(f"=== {r['node']}", file=out)
            if r["error"]:
                print(r["error"], file=out)
                continue
            print(r["text"].rstrip("\n"), file=out)
            print("\nbirdc show protocols:\n" + r["birdc"].rstrip("\n") + "\n", file=out)
    return 1 if any(r["error"] for r in reports) else 0
