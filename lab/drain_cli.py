"""`podlab drain NODE`, `podlab cordon NODE`, `podlab uncordon NODE`, as kubectl does them.

Drain (kubectl pkg/cmd/drain, pkg/drain): the node is cordoned first (it takes no new pod:
lab.topology.placement skips it), then every pod on it is evicted. A Deployment's pod is recreated
elsewhere by its ReplicaSet (a new name, a new address); a pod that declares no controller (a bare
pod) would be gone for good, so drain refuses unless --force, and then deletes it. The node stays
cordoned, even when the drain fails, until `podlab uncordon`. The lines printed are kubectl's:
"node/X cordoned", "evicting pod NS/NAME", "pod/NAME evicted", "node/X drained", and its error
"cannot delete Pods that declare no controller (use --force to override): NS/NAME, ...".

podlab has no DaemonSets, mirror pods or PodDisruptionBudgets, and keeps no pod data on a node:
--ignore-daemonsets and --delete-emptydir-data are accepted, as kubectl users type them, and
change nothing.
"""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, TextIO

import yaml

from lab.cliopts import lab_option
from lab.errors import PodlabError

if TYPE_CHECKING:
    from lab.api import Lab
    from lab.model import Pod, Topology

NEEDS_ROOT = {"drain", "cordon", "uncordon"}
# kubectl pkg/drain/filters.go
UNMANAGED_FATAL = "Pods that declare no controller (use --force to override)"
UNMANAGED_WARNING = "deleting Pods that declare no controller"


def register(sub: argparse._SubParsersAction) -> dict[str, Any]:
    sp = sub.add_parser("drain", help="cordon a node and evict its pods (a Deployment's are recreated elsewhere), "
                        "like kubectl drain")
    sp.add_argument("node")
    sp.add_argument("--force", action="store_true",
                    help="continue even if there are pods that declare no controller: they are deleted for good")
    sp.add_argument("--ignore-daemonsets", action="store_true", help="accepted (podlab has no DaemonSets)")
    sp.add_argument("--delete-emptydir-data", action="store_true", help="accepted (podlab keeps no pod data)")
    lab_option(sp)
    for verb, what in (("cordon", "mark a node unschedulable: its pods stay, new pods go elsewhere"),
                       ("uncordon", "mark a node schedulable again")):
        sp = sub.add_parser(verb, help=f"{what}, like kubectl {verb}")
        sp.add_argument("node")
        lab_option(sp)
    return {"drain": cmd_drain, "cordon": cmd_cordon, "uncordon": cmd_uncordon}


def _set_cordon(lab: str, node: str, cordoned: bool, out: TextIO) -> None:
    from lab import api
    verb = "cordoned" if cordoned else "uncordoned"
    print(f"node/{node} {verb}" if api.cordon(lab, node, cordoned) else f"node/{node} already {verb}", file=out)


def cmd_cordon(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from lab import api
    _set_cordon(api.pick(args.lab).name, args.node, True, out)
    return 0


def cmd_uncordon(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from lab import api
    _set_cordon(api.pick(args.lab).name, args.node, False, out)
    return 0


def cmd_drain(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from lab import api
    name = api.pick(args.lab).name
    _set_cordon(name, args.node, True, out)
    lab = api.Lab(name)
    pods = [p for p in lab.topology.pods if p.node == args.node]
    bare = [p for p in pods if p.deployment is None]
    if bare and not args.force:
        problem = f"cannot delete {UNMANAGED_FATAL}: {_listed(bare)}"
        print(f'error: unable to drain node "{args.node}" due to error: {problem}, continuing command...', file=err)
        print(f"There are pending nodes to be drained:\n {args.node}", file=err)
        raise PodlabError(problem)
    if bare:
        print(f"Warning: {UNMANAGED_WARNING}: {_listed(bare)}", file=err)
    if pods:
        for pod in pods:
            print(f"evicting pod {pod.namespace}/{pod.name}", file=out)
        api.change(name, evicted(lab, pods, f"drain {args.node}"), current=lab)
        for pod in pods:
            print(f"pod/{pod.name} evicted", file=out)
    print(f"node/{args.node} drained", file=out)
    return 0


def _listed(pods: list[Pod]) -> str:
    return ", ".join(f"{p.namespace}/{p.name}" for p in pods)


def evicted(lab: Lab, pods: list[Pod], source: str) -> Topology:
    """The lab without these pods: bare ones deleted from its document, a Deployment's replaced by
    new ones that placement puts on the nodes not cordoned."""
    from lab import topology
    document = yaml.safe_load(lab.topology.text) or {}
    bare = {p.name for p in pods if p.deployment is None}
    if bare:
        document["pods"] = [p for p in document.get("pods") or [] if p.get("name") not in bare]
    bound = topology.without(lab.scheduling or topology.scheduling_of(lab.topology.pods,
                                                                       replicasets=lab.topology.replicasets),
                             {p.name for p in pods},
                             lab.topology.pods)
    return topology.loads(yaml.safe_dump(document, sort_keys=False), source=f"lab {lab.name}'s record ({source})",
                          default_name=lab.document_name, bound=bound)
