"""`podlab apply -f FILE` and `podlab delete pod NAME | -f FILE`: change a running lab in place, with
podlab topology documents or Kubernetes manifests (v1 Pods so far), as kubectl does."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, TextIO

import yaml

from lab.errors import PodlabError

if TYPE_CHECKING:
    from lab.api import Lab
    from lab.model import Topology

NEEDS_ROOT = {"apply", "delete"}


def register(sub: argparse._SubParsersAction) -> dict[str, Any]:
    sp = sub.add_parser("apply", help="create or update pods of a running lab from Kubernetes manifests (v1 Pod) "
                        "or a podlab topology document, like kubectl apply -f")
    sp.add_argument("-f", "--filename", required=True, help="a YAML file (several documents allowed), or - for stdin")
    sp.add_argument("--lab", help="which lab, when several are up")
    sp = sub.add_parser("delete", help="delete pods of a running lab, like kubectl delete")
    sp.add_argument("kind", nargs="?", choices=["pod", "pods", "po"], help="what to delete")
    sp.add_argument("names", nargs="*", metavar="NAME")
    sp.add_argument("-f", "--filename", help="delete what this file's manifests name")
    sp.add_argument("--lab", help="which lab, when several are up")
    return {"apply": cmd_apply, "delete": cmd_delete}


def _read(path: str) -> tuple[str, str]:
    if path == "-":
        return sys.stdin.read(), "<stdin>"
    try:
        with open(path) as f:
            return f.read(), path
    except OSError as e:
        raise PodlabError(f"{path}: {e.strerror or e}") from None


def _with_pods(lab: Lab, pods: list[dict[str, Any]], drop: set[str], source: str) -> Topology:
    """The lab's recorded document with these pod entries added (or replacing those of the same
    name) and the pods named in `drop` removed, validated as a whole."""
    from lab import topology
    document = yaml.safe_load(lab.topology.text) or {}
    names = {p["name"] for p in pods} | drop
    known = {p.name for p in lab.topology.pods}
    missing = sorted(drop - known)
    if missing:
        raise PodlabError(f'pods "{missing[0]}" not found in lab {lab.name} (pods of a Deployment cannot be deleted '
                          "one by one yet)")
    # A pod keeps the node it runs on (once the scheduler has bound it, it stays): pods placed
    # round-robin would otherwise move when one before them goes.
    node_of = {p.name: p.node for p in lab.topology.pods}
    kept = [dict(p, node=node_of.get(p.get("name"), p.get("node"))) for p in document.get("pods") or []
            if p.get("name") not in names]
    document["pods"] = [{k: v for k, v in p.items() if v is not None} for p in kept] + _scheduled(lab, kept, pods)
    text = yaml.safe_dump(document, sort_keys=False)
    return topology.loads(text, source=f"lab {lab.name}'s record with {source}", default_name=lab.document_name)


def _scheduled(lab: Lab, kept: list[dict[str, Any]], pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """New pods without a nodeName go where the scheduler's spreading would put them: the node
    with the fewest pods (the first of those), counting the pods that stay and those placed so far."""
    count = {n.name: 0 for n in lab.topology.nodes}
    staying = {p.get("name") for p in kept} | {p.name for p in lab.topology.pods if p.deployment}
    for pod in lab.topology.pods:
        if pod.name in staying:
            count[pod.node] += 1
    out = []
    for pod in pods:
        if "node" not in pod:
            node = min(count, key=lambda n: count[n])
            pod = {**pod, "node": node}
        count[pod["node"]] = count.get(pod["node"], 0) + 1
        out.append(pod)
    return out


def cmd_apply(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from lab import api, manifests, topology
    lab = api.pick(args.lab)
    text, source = _read(args.filename)
    if manifests.is_manifest(text):
        found = manifests.read(text, source)
        for path in dict.fromkeys(found.not_emulated):
            print(f"not emulated: {path}", file=err)
        desired = _with_pods(lab, found.pods, set(), source)
    else:
        desired = topology.loads(text, source=source, default_name=lab.document_name)
    api.change(lab.name, desired, lambda line: print(line, file=out), current=lab)
    return 0


def cmd_delete(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from lab import api, manifests
    lab = api.pick(args.lab)
    names = set(args.names)
    if args.filename:
        text, source = _read(args.filename)
        if not manifests.is_manifest(text):
            raise PodlabError(f"{source}: delete -f takes Kubernetes manifests (kind: Pod)")
        names |= {p["name"] for p in manifests.read(text, source).pods}
    elif not args.kind or not names:
        raise PodlabError("say what to delete: 'podlab delete pod NAME' or 'podlab delete -f FILE'")
    api.change(lab.name, _with_pods(lab, [], names, "deletions"), lambda line: print(line, file=out), current=lab)
    return 0
