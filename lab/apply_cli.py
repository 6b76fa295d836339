"""`podlab apply -f FILE` and `podlab delete pod|deployment|service|namespace NAME | -f FILE`: change a
running lab in place, with podlab topology documents or Kubernetes manifests, as kubectl does."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, TextIO

import yaml

from lab.cliopts import lab_option
from lab.errors import PodlabError, TopologyError

if TYPE_CHECKING:
    from lab.api import Lab
    from lab.model import Topology

NEEDS_ROOT = {"apply", "delete", "scale", "rollout"}

# What `delete` takes, by kubectl's names and short names; how kubectl prints one deleted, and how
# the API server names its resource when it is not found (pkg/cmd/delete: `<kind>[.<group>] "<name>" deleted`).
DELETABLE = {"pod": ("pod", "pods", "po"), "deployment": ("deployment", "deployments", "deploy"),
             "service": ("service", "services", "svc"), "namespace": ("namespace", "namespaces", "ns")}
KIND_OF = {alias: kind for kind, aliases in DELETABLE.items() for alias in aliases}
PRINTED = {"pod": "pod", "deployment": "deployment.apps", "service": "service", "namespace": "namespace"}
RESOURCE = {"pod": "pods", "deployment": "deployments.apps", "service": "services", "namespace": "namespaces"}
SECTION = {"pod": "pods", "deployment": "deployments", "service": "services"}   # in the lab's document
# The NamespaceLifecycle admission plugin's immortal namespaces.
IMMORTAL = ("default", "kube-system", "kube-public")


def register(sub: argparse._SubParsersAction) -> dict[str, Any]:
    sp = sub.add_parser("apply", help="create or update pods of a running lab from Kubernetes manifests (v1 Pod) "
                        "or a podlab topology document, like kubectl apply -f")
    sp.add_argument("-f", "--filename", required=True, action="append",
                    help="a YAML file (several documents allowed), a directory of them, or - for stdin; repeatable")
    lab_option(sp)
    sp = sub.add_parser("delete", help="delete pods, Deployments, Services or whole namespaces of a running lab, "
                        "like kubectl delete")
    sp.add_argument("kind", nargs="?", choices=list(KIND_OF), metavar="KIND",
                    help="pod | deployment | service | namespace (or kubectl's short names: po, deploy, svc, ns)")
    sp.add_argument("names", nargs="*", metavar="NAME")
    sp.add_argument("-f", "--filename", action="append", help="delete what this file's (or directory's) manifests "
                    "name; repeatable")
    sp.add_argument("-n", "--namespace", default="default", help="the namespace of what is named (default: default)")
    lab_option(sp)
    sp = sub.add_parser("scale", help="set a Deployment's replicas in a running lab, like kubectl scale")
    sp.add_argument("kind", choices=["deployment", "deploy"])
    sp.add_argument("name")
    sp.add_argument("--replicas", type=int, required=True)
    lab_option(sp)
    sp = sub.add_parser("rollout", help="restart a Deployment's pods (a rolling update: new names, new addresses), "
                        "or wait for its rollout to finish, like kubectl rollout")
    sp.add_argument("action", choices=["restart", "status"])
    sp.add_argument("kind", choices=["deployment", "deploy"])
    sp.add_argument("name")
    sp.add_argument("--timeout", default="0s", help="status: how long to wait before giving up (e.g. 30s, 5m; "
                    "0s, the default, waits as long as the Deployment makes progress)")
    sp.add_argument("-w", "--watch", default="true", choices=["true", "false"],
                    help="status: wait for the rollout to finish (true, the default), or print its status once")
    lab_option(sp)
    sp = sub.add_parser("run", help="start a pod in a running lab, like kubectl run: podlab run tmp-shell --rm -it "
                        "--image nicolaka/netshoot -- /bin/bash (what follows -- is the pod's command)")
    sp.add_argument("name")
    sp.add_argument("--image", required=True)
    sp.add_argument("--rm", action="store_true", help="delete the pod when the command ends (with -it)")
    sp.add_argument("-i", "--stdin", action="store_true", help="attach: run the command in the pod here")
    sp.add_argument("-t", "--tty", action="store_true", help="(with -i) give the command the terminal")
    sp.add_argument("--labels", "-l", default="", help="labels, e.g. app=web,tier=front")
    lab_option(sp)
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


def _read_all(paths: list[str]) -> list[tuple[str, str]]:
    """Each -f: a file, '-', or a directory's .yaml/.yml/.json files in name order (as kubectl)."""
    from pathlib import Path
    out = []
    for path in paths:
        if path != "-" and Path(path).is_dir():
            files = sorted(p for p in Path(path).iterdir() if p.suffix in (".yaml", ".yml", ".json") and p.is_file())
            if not files:
                raise PodlabError(f"{path}: no .yaml, .yml or .json file in this directory")
            out += [_read(str(f)) for f in files]
        else:
            out.append(_read(path))
    return out


def _manifests(files: list[tuple[str, str]], verb: str) -> Any:
    """The Kubernetes objects of every file, read each under its own name (errors say which file
    and line); a podlab topology document is one file alone."""
    from lab import manifests
    found = manifests.Manifests()
    for text, source in files:
        if not manifests.is_manifest(text):
            raise PodlabError(f"{source}: {verb} takes Kubernetes manifests (documents with a kind: Pod, "
                              "Deployment, Service, Namespace)" + ("; a podlab topology document is applied alone"
                                                                   if verb == "apply" else ""))
        found.extend(manifests.read(text, source))
    return found


def _document(lab: Lab) -> dict[str, Any]:
    # libyaml where PyYAML has it: the record is podlab's own, read here only to be edited.
    return yaml.load(lab.topology.text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}


def _load(lab: Lab, document: dict[str, Any], source: str, gone: set[str] = frozenset()) -> Topology:
    """The desired state: the edited document placed over the lab's placement (pods keep their
    nodes; a Deployment's pods that went are replaced by new ones; one scaled down loses those its
    ReplicaSet controller deletes first)."""
    from lab import rollout, topology
    _keep_cluster_ips(lab, document)
    bound = topology.without(lab.scheduling, set(gone), lab.topology.pods) if lab.scheduling else None
    if bound is not None:     # a ReplicaSet scaled down deletes its unavailable pods first
        bound = bound.copy(available=lambda: rollout.available_pods(lab.name, lab.topology))
    return topology.loads(yaml.safe_dump(document, sort_keys=False), source=f"lab {lab.name}'s record with {source}",
                          default_name=lab.document_name, bound=bound,
                          conflist=lab.topology.cni.conflist if lab.topology.cni else None)


def _keep_cluster_ips(lab: Lab, document: dict[str, Any]) -> None:
    """Every Service that stays keeps its ClusterIP and NodePorts: they never change while it exists
    (without this, one deleted before it would hand its address on to the next)."""
    known = {(s.namespace, s.name): s for s in lab.topology.services}
    for svc in document.get("services") or []:
        had = known.get((svc.get("namespace", "default"), svc.get("name")))
        if had is None:
            continue
        if had.cluster_ip is not None and "clusterIP" not in svc:
            svc["clusterIP"] = str(had.cluster_ip)
        node_ports = {(p.port, p.protocol): p.node_port for p in had.ports if p.node_port}
        for port in svc.get("ports") or []:       # NodePorts likewise
            if isinstance(port, dict) and "nodePort" not in port and svc.get("type") == "NodePort":
                if (np := node_ports.get((port.get("port"), port.get("protocol", "TCP")))) is not None:
                    port["nodePort"] = np


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
    for key, entries in (("pods", found.pods), ("deployments", found.deployments), ("services", found.services)):
        if not entries:
            continue
        names = {e["name"] for e in entries}
        document[key] = [e for e in document.get(key) or [] if e.get("name") not in names] + entries
    if found.services and "services" not in document:
        document["services"] = []
    try:
        return _load(lab, document, source)
    except TopologyError as e:
        raise _in_manifests(e, document, found) from None


def _in_manifests(e: TopologyError, document: dict[str, Any], found: Any) -> PodlabError:
    """The record's problems that lie in what the manifests brought, said at the manifests' own paths
    and lines (the record's path and line would point into a file the user never wrote)."""
    lines, sources = [], []
    for p in e.problems:
        key, index = (p.at[0], p.at[1]) if len(p.at) >= 2 and isinstance(p.at[1], int) else (None, None)
        entries = document.get(key) if isinstance(key, str) else None
        origin = found.origin_of(entries[index]) if isinstance(entries, list) and index < len(entries) else None
        lines.append(origin.problem(p.at[2:], p.message) if origin is not None else f"{e.source}: {p}")
        sources.append(origin.where.source if origin is not None else e.source)
    if len(lines) == 1:
        return PodlabError(f"{lines[0]}; nothing was changed")
    return PodlabError(f"{', '.join(dict.fromkeys(sources))}: {len(lines)} problems; nothing was changed\n"
                       + "\n".join(f"  - {line}" for line in lines))


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

    def scaled(lab: Lab) -> Topology:   # made from the lab as it is when this change's turn comes
        document = _document(lab)
        _deployment(document, lab, args.name)["replicas"] = args.replicas
        return _load(lab, document, f"scale {args.name}")
    changed = api.change(lab.name, scaled, lambda line: print(line, file=out), current=lab)
    print(f"deployment.apps/{args.name} scaled", file=out)
    _roll_on(changed, out)
    return 0


def _roll_on(lab: Lab, out: TextIO) -> None:
    """The rollouts the change began (a Deployment's template changed) or found unfinished, carried
    through to the end (lab.rollout): podlab is the lab's deployment controller."""
    from lab import rollout
    rollout.drive(lab.name, lambda line: print(line, file=out), lab=lab)


class RestartTooSoon(PodlabError):
    """A second `rollout restart` within the second of the first: the same restartedAt, an empty patch."""


def cmd_rollout(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`rollout restart`, as kubectl does it: the template annotation kubectl.kubernetes.io/restartedAt
    set to now, a new template, so a rolling update (lab.rollout) to a new ReplicaSet: every pod
    replaced by a new one (new names, new addresses), maxSurge and maxUnavailable honoured.
    `rollout status`: the rollout's progress until it is done (podlab is the lab's controller: an
    unfinished rollout, cut short by a SIGKILL, is carried on)."""
    from lab import api, rolling, rollout
    lab = api.pick(args.lab)
    _deployment(_document(lab), lab, args.name)
    say = lambda line: print(line, file=out)   # noqa: E731
    if args.action == "status":
        if args.watch == "false":
            d = lab.topology.deployment(args.name)
            assert d is not None
            sets = rollout.counted(lab.topology, d, rollout.available_pods(lab.name, lab.topology))
            print(rolling.status(d, sets)[0], file=out)
            return 0
        timeout = _duration(args.timeout, "--timeout")
        try:
            rollout.drive(lab.name, say, [args.name], timeout or None)
        except PodlabError as e:
            print(f"error: {e}", file=err)
            return 1
        return 0

    def restarted(lab: Lab) -> Topology:
        document = _document(lab)
        entry = _deployment(document, lab, args.name)
        stamp = rollout.restarted_at()
        if (entry.get("annotations") or {}).get(rollout.RESTARTED_AT) == stamp:
            # the stamp has a second's resolution: the same again would be an empty patch, which kubectl refuses
            raise RestartTooSoon(f"failed to create patch for {args.name}: if restart has already been triggered "
                                 "within the past second, please wait before attempting to trigger another")
        entry["annotations"] = {**(entry.get("annotations") or {}), rollout.RESTARTED_AT: stamp}
        return _load(lab, document, f"rollout restart {args.name}")
    try:
        changed = api.change(lab.name, restarted, say, current=lab)
    except RestartTooSoon as e:
        print(f"error: {e}", file=err)     # kubectl's words, as it prints them
        return 1
    print(f"deployment.apps/{args.name} restarted", file=out)
    rollout.drive(lab.name, say, lab=changed)
    return 0


def _duration(text: str, flag: str) -> float:
    """A Go duration as kubectl takes one (30s, 5m, 1h, 1m30s) or a number of seconds."""
    import re
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise PodlabError(f"{flag} {text!r}: give a duration such as 30s, 5m or 1h30m")
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * unit[u] for n, u in parts)


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
    pod = {"name": args.name, "labels": labels, "containers": [container]}
    api.change(lab.name, lambda lab: _with_pods(lab, [pod], set(), "run"), lambda line: print(line, file=out),
               current=lab)
    if not args.stdin:
        return 0
    try:
        return cli.main(["exec", "--lab", lab.name, args.name, "--", *(command or ["sh"])], out, err)
    finally:
        if args.rm:
            api.change(lab.name, lambda lab: _with_pods(lab, [], {args.name}, "run --rm"),
                       lambda line: print(line, file=out))


def cmd_apply(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from lab import api, manifests, topology
    lab = api.pick(args.lab)
    files = _read_all(args.filename)
    text, source = files[0] if len(files) == 1 else ("", ", ".join(s for _, s in files))
    if len(files) > 1 or manifests.is_manifest(text):
        found = _manifests(files, "apply")
        for path in dict.fromkeys(found.not_emulated):
            print(f"not emulated: {path}", file=err)
        for ns in found.namespaces:
            print(f"namespace/{ns} created (podlab's namespaces are names: nothing to make)", file=out)
        desired = lambda lab: _with_objects(lab, found, source)   # noqa: E731  (the lab when its turn comes)
    else:
        desired = lambda lab: topology.loads(text, source=source, default_name=lab.document_name,  # noqa: E731
                                             bound=lab.scheduling)
    changed = api.change(lab.name, desired, lambda line: print(line, file=out), current=lab)
    _roll_on(changed, out)
    return 0


def cmd_delete(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """kubectl delete: what exists goes (a namespace with everything in it; a Deployment with its
    pods); each name not found is an error of its own, as the API server says it, and the exit
    status is 1 if there was one."""
    from lab import api
    lab = api.pick(args.lab)
    wanted: list[tuple[str, str, str]] = []          # (kind, namespace, name), in the order given
    if args.filename:
        found = _manifests(_read_all(args.filename), "delete -f")
        for kind, entries in (("pod", found.pods), ("deployment", found.deployments), ("service", found.services)):
            wanted += [(kind, e.get("namespace", args.namespace), e["name"]) for e in entries]
        wanted += [("namespace", "", ns) for ns in found.namespaces]
    elif not args.kind or not args.names:
        raise PodlabError("say what to delete: 'podlab delete pod|deployment|service|namespace NAME' "
                          "or 'podlab delete -f FILE'")
    else:
        kind = KIND_OF[args.kind]
        wanted = [(kind, "" if kind == "namespace" else args.namespace, n) for n in dict.fromkeys(args.names)]
    deleted, _, errors = _delete_objects(lab, _document(lab), wanted)
    if deleted:
        def desired(now: Lab) -> Topology:
            # taken out of the lab as it is when this change's turn comes (another may have gone first)
            document = _document(now)
            _, gone_pods, _ = _delete_objects(now, document, wanted)
            return _load(now, document, "deletions", gone_pods)
        changed = api.change(lab.name, desired, lambda line: print(line, file=out), current=lab)
        for kind, name in deleted:
            if kind != "pod":              # the change named each pod deleted already
                print(f'{PRINTED[kind]} "{name}" deleted', file=out)
        _roll_on(changed, out)
    for reason, message in errors:
        print(f"Error from server ({reason}): {message}", file=err)
    return 1 if errors else 0


def _delete_objects(lab: Lab, document: dict[str, Any], wanted: list[tuple[str, str, str]]
                    ) -> tuple[list[tuple[str, str]], set[str], list[tuple[str, str]]]:
    """Take the objects named out of the lab's document: (what was deleted, the pods that go with
    it, an error for each that could not be). A bare pod goes; a Deployment's pod is replaced."""
    from lab.services import schema
    deleted: list[tuple[str, str]] = []
    gone: set[str] = set()
    errors: list[tuple[str, str]] = []                # (reason, message), as the API server answers
    pods = {p.name: p for p in lab.topology.pods}
    builtin = {schema.KUBERNETES: "the API server's", schema.DNS: "the cluster DNS's"}

    def used(ns: str) -> bool:
        return any(e.get("namespace", "default") == ns for key in SECTION.values() for e in document.get(key) or [])

    for kind, ns, name in wanted:
        if kind == "namespace":
            if name in IMMORTAL:
                errors.append(("Forbidden", f'namespaces "{name}" is forbidden: this namespace may not be deleted'))
            elif not used(name):
                errors.append(("NotFound", f'namespaces "{name}" not found'))
            else:
                for key in SECTION.values():
                    if key in document:
                        document[key] = [e for e in document[key] if e.get("namespace", "default") != name]
                gone |= {p.name for p in lab.topology.pods if p.namespace == name}
                deleted.append((kind, name))
            continue
        if kind == "pod":
            pod = pods.get(name)
            if pod is None or pod.namespace != ns:
                errors.append(("NotFound", f'pods "{name}" not found'))
                continue
            document["pods"] = [e for e in document.get("pods") or [] if e.get("name") != name]
            gone.add(name)
            deleted.append((kind, name))
            continue
        if kind == "service" and (ns, name) in builtin:
            raise PodlabError(f'service "{name}" in namespace {ns} is {builtin[(ns, name)]}, which podlab makes '
                              "itself: it cannot be deleted")
        section = SECTION[kind]
        entries = document.get(section) or []
        left = [e for e in entries if not (e.get("name") == name and e.get("namespace", "default") == ns)]
        if len(left) == len(entries):
            errors.append(("NotFound", f'{RESOURCE[kind]} "{name}" not found'))
            continue
        document[section] = left          # services: [] stays: the lab keeps kube-proxy and its DNS
        if kind == "deployment":
            gone |= {p.name for p in lab.topology.pods if p.deployment == name and p.namespace == ns}
        deleted.append((kind, name))
    return deleted, gone, errors
