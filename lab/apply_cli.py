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

NEEDS_ROOT = {"apply", "delete", "scale", "rollout"}


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
    sp = sub.add_parser("scale", help="set a Deployment's replicas in a running lab, like kubectl scale")
    sp.add_argument("kind", choices=["deployment", "deploy"])
    sp.add_argument("name")
    sp.add_argument("--replicas", type=int, required=True)
    sp.add_argument("--lab", help="which lab, when several are up")
    sp = sub.add_parser("rollout", help="restart a Deployment's pods (new names, new addresses), like kubectl rollout")
    sp.add_argument("action", choices=["restart", "status"])
    sp.add_argument("kind", choices=["deployment", "deploy"])
    sp.add_argument("name")
    sp.add_argument("--lab", help="which lab, when several are up")
    sp = sub.add_parser("run", help="start a pod in a running lab, like kubectl run: podlab run tmp-shell --rm -it "
                        "--image nicolaka/netshoot -- /bin/bash (what follows -- is the pod's command)")
    sp.add_argument("name")
    sp.add_argument("--image", required=True)
    sp.add_argument("--rm", action="store_true", help="delete the pod when the command ends (with -it)")
    sp.add_argument("-i", "--stdin", action="store_true", help="attach: run the command in the pod here")
    sp.add_argument("-t", "--tty", action="store_true", help="(with -i) give the command the terminal")
    sp.add_argument("--labels", "-l", default="", help="labels, e.g. app=web,tier=front")
    sp.add_argument("--lab", help="which lab, when several are up")
    NEEDS_ROOT.add("run")
    return {"apply": cmd_apply, "delete": cmd_delete, "scale": cmd_scale, "rollout": cmd_rollout, "run": cmd_run}


def _read(path: str) -> tuple[str, str]:
    if path == "-":
        return sys.stdin.read(), "<stdin>"
    try:
        with open(path) as f:
            return f.read(), path
    except OSError as e:
        raise PodlabError(f"{path}: {e.strerror or e}") from None


def _document(lab: Lab) -> dict[str, Any]:
    return yaml.safe_load(lab.topology.text) or {}


def _load(lab: Lab, document: dict[str, Any], source: str, gone: set[str] = frozenset()) -> Topology:
    """The desired state: the edited document placed over the lab's placement (pods keep their
    nodes; a Deployment's pods that went are replaced by new ones)."""
    from lab import topology
    bound = topology.without(lab.scheduling, set(gone), lab.topology.pods) if lab.scheduling else None
    return topology.loads(yaml.safe_dump(document, sort_keys=False), source=f"lab {lab.name}'s record with {source}",
                          default_name=lab.document_name, bound=bound,
                          conflist=lab.topology.cni.conflist if lab.topology.cni else None)


def _with_pods(lab: Lab, pods: list[dict[str, Any]], drop: set[str], source: str) -> Topology:
    """The lab's recorded document with these pod entries added (or replacing those of the same
    name) and the pods named in `drop` gone: bare pods removed, a Deployment's pods replaced."""
    document = _document(lab)
    known = {p.name: p for p in lab.topology.pods}
    missing = sorted(drop - set(known))
    if missing:
        raise PodlabError(f'pods "{missing[0]}" not found in lab {lab.name}')
    names = {p["name"] for p in pods} | drop
    document["pods"] = [p for p in document.get("pods") or [] if p.get("name") not in names] + pods
    return _load(lab, document, source, drop)


def _with_objects(lab: Lab, found: Any, source: str) -> Topology:
    """The lab's document with the manifests' objects created or replacing those of the same name.
    Services keep their ClusterIPs: a Service's address never changes while it exists."""
    document = _document(lab)
    ips = {(s.namespace, s.name): s.cluster_ip for s in lab.topology.services}
    for key, entries in (("pods", found.pods), ("deployments", found.deployments), ("services", found.services)):
        if not entries:
            continue
        names = {e["name"] for e in entries}
        document[key] = [e for e in document.get(key) or [] if e.get("name") not in names] + entries
    for svc in document.get("services") or []:
        ip = ips.get((svc.get("namespace", "default"), svc.get("name")))
        if ip is not None and "clusterIP" not in svc:
            svc["clusterIP"] = str(ip)
    if found.services and "services" not in document:
        document["services"] = []
    return _load(lab, document, source)


def _deployment(document: dict[str, Any], lab: Lab, name: str) -> dict[str, Any]:
    for d in document.get("deployments") or []:
        if d.get("name") == name:
            return d
    known = ", ".join(d.get("name", "?") for d in document.get("deployments") or []) or "none"
    raise PodlabError(f'deployments.apps "{name}" not found in lab {lab.name} (deployments: {known})')


def cmd_scale(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from lab import api
    lab = api.pick(args.lab)
    if args.replicas < 0:
        raise PodlabError(f"--replicas {args.replicas}: give 0 or more")
    document = _document(lab)
    _deployment(document, lab, args.name)["replicas"] = args.replicas
    api.change(lab.name, _load(lab, document, f"scale {args.name}"), lambda line: print(line, file=out), current=lab)
    print(f"deployment.apps/{args.name} scaled", file=out)
    return 0


def cmd_rollout(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`rollout restart`: every pod of the Deployment replaced by a new one (new names, new
    addresses). All at once: maxSurge and maxUnavailable are not emulated."""
    from lab import api
    lab = api.pick(args.lab)
    document = _document(lab)
    _deployment(document, lab, args.name)
    if args.action == "status":
        pods = [p for p in lab.topology.pods if p.deployment == args.name]
        print(f'deployment "{args.name}" successfully rolled out ({len(pods)} pods)', file=out)
        return 0
    gone = {p.name for p in lab.topology.pods if p.deployment == args.name}
    api.change(lab.name, _load(lab, document, f"rollout restart {args.name}", gone), lambda line: print(line, file=out),
               current=lab)
    print(f"deployment.apps/{args.name} restarted", file=out)
    return 0


def cmd_run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """kubectl run: a bare pod of one container. Attached (-i), the pod idles and the command runs in
    it here (exec), then --rm deletes the pod; detached, the pod's container runs the command."""
    from lab import api, cli
    lab = api.pick(args.lab)
    command = getattr(args, "command_argv", [])      # what came after '--' (lab.cli.main)
    container: dict[str, Any] = {"name": args.name, "image": args.image}
    if command and not args.stdin:
        container["command"] = command
    labels = dict(kv.split("=", 1) for kv in args.labels.split(",") if "=" in kv) or {"run": args.name}
    desired = _with_pods(lab, [{"name": args.name, "labels": labels, "containers": [container]}], set(), "run")
    api.change(lab.name, desired, lambda line: print(line, file=out), current=lab)
    if not args.stdin:
        return 0
    try:
        return cli.main(["exec", "--lab", lab.name, args.name, "--", *(command or ["sh"])], out, err)
    finally:
        if args.rm:
            api.change(lab.name, _with_pods(api.Lab(lab.name), [], {args.name}, "run --rm"),
                       lambda line: print(line, file=out))


def cmd_apply(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from lab import api, manifests, topology
    lab = api.pick(args.lab)
    text, source = _read(args.filename)
    if manifests.is_manifest(text):
        found = manifests.read(text, source)
        for path in dict.fromkeys(found.not_emulated):
            print(f"not emulated: {path}", file=err)
        for ns in found.namespaces:
            print(f"namespace/{ns} created (podlab's namespaces are names: nothing to make)", file=out)
        desired = _with_objects(lab, found, source)
    else:
        desired = topology.loads(text, source=source, default_name=lab.document_name, bound=lab.scheduling)
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
