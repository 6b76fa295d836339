"""`podlab`: a thin shell over lab.api. main(argv, out, err) -> exit code, so it is testable."""
from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TextIO

from lab import api, commands, planner, render, workloads
from lab.errors import NeedsRoot, PodlabError
from lab.services import cli as service_cli

ROOT_COMMANDS = {"up", "down", "status", "get", "exec", "shell", "ping", "curl", "check", "inspect", "demo"}

# Areas that add their own subcommands. Each module has
#   register(sub: argparse._SubParsersAction) -> dict[str, Handler]   (handler(args, out, err) -> int)
#   NEEDS_ROOT: set[str]
# and imports its heavy dependencies inside the handlers, so `podlab --help` stays fast.
EXTENSIONS: list[str] = ["tui.cli", "lab.clean_cli", "lab.course.cli", "lab.services.cli", "lab.packets.cli", "lab.bgp.cli",
                         "lab.apply_cli", "lab.drain_cli", "lab.cni.cli"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="podlab", description="Kubernetes pod networking, built from real Linux "
                                "namespaces: bring up a cluster design, look inside, send packets.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def lab_flag(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--lab", help="which lab, when several are up")

    sp = sub.add_parser("up", help="build a lab from a topology file (default: two nodes, VXLAN, nginx x3)")
    sp.add_argument("topology", nargs="?", help="a YAML file, or a name from topologies/ (default: default)")
    sp.add_argument("--name", help="lab name (default: the topology's name); two copies need two names")

    sp = sub.add_parser("down", help="remove a lab and everything it made")
    sp.add_argument("lab", nargs="?", help="lab name (default: the only one up)")
    sp.add_argument("--all", action="store_true", help="remove every podlab lab")

    sp = sub.add_parser("plan", help="show the address plan, capacity and kernel operations (no root needed)")
    sp.add_argument("topology", nargs="?", help="a YAML file or a name from topologies/")
    sp.add_argument("--as-commands", action="store_true", help="print the equivalent ip/bridge/sysctl/nft commands")

    sp = sub.add_parser("status", help="the labs that are up")
    sp.add_argument("-o", "--output", choices=["text", "json"], default="text")
    lab_flag(sp)

    sp = sub.add_parser("get", help="list nodes, pods, services or endpoints, kubectl-style")
    sp.add_argument("what", choices=["nodes", "node", "pods", "pod", "po", "no",
                                     "services", "service", "svc", "endpoints", "endpoint", "ep",
                                     *REPLICASETS, *DEPLOYMENTS])
    sp.add_argument("-o", "--output", choices=["text", "wide", "json"], default="text")
    sp.add_argument("-w", "--watch", action="store_true", help="after the listing, print each row that changes "
                    "(a pod created, deleted, its status or address; a Service's endpoints), as kubectl get -w "
                    "does; Ctrl-C ends")
    sp.add_argument("--watch-seconds", type=float, default=None, help=argparse.SUPPRESS)   # tests: stop after this
    sp.add_argument("-n", "--namespace", default="default", help="pods: those of this namespace (default: default, "
                    "as kubectl; the cluster DNS pod is in kube-system)")
    sp.add_argument("-A", "--all-namespaces", action="store_true", help="pods: those of every namespace, with a "
                    "NAMESPACE column")
    lab_flag(sp)

    sp = sub.add_parser("exec", help="run a command in a pod, node or host: podlab exec POD -- CMD ...")
    sp.add_argument("target")
    sp.add_argument("-c", "--container", help="container name (all of a pod's containers share its network)")
    sp.add_argument("argv", nargs="*", metavar="-- CMD", help="the command, after '--'")
    lab_flag(sp)

    sp = sub.add_parser("shell", help="an interactive shell inside a pod, node or host")
    sp.add_argument("target")
    lab_flag(sp)

    sp = sub.add_parser("ping", help="ping from one pod/node/host to another (name or address)")
    sp.add_argument("src")
    sp.add_argument("dst")
    sp.add_argument("-c", "--count", type=int, default=3)
    lab_flag(sp)

    sp = sub.add_parser("curl", help="HTTP GET from one pod/node/host to another: curl SRC DST[:PORT][/PATH]")
    sp.add_argument("src")
    sp.add_argument("dst")
    lab_flag(sp)

    sp = sub.add_parser("check", help="the Kubernetes network model as a pass/fail matrix")
    sp.add_argument("-o", "--output", choices=["text", "json"], default="text")
    lab_flag(sp)

    sp = sub.add_parser("inspect", help="interfaces, addresses, routes, neighbours and FDB of a namespace, "
                        "read from the kernel")
    sp.add_argument("target")
    sp.add_argument("-o", "--output", choices=["text", "json"], default="text")
    lab_flag(sp)

    sub.add_parser("demo", help="bring up the default lab, check it, and show what to try next")
    for name in EXTENSIONS:
        module = importlib.import_module(name)
        COMMANDS.update(module.register(sub))
        ROOT_COMMANDS.update(module.NEEDS_ROOT)
    return p


def main(argv: list[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after '--' is the command to run (exec), never podlab's own options.
    trailing: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, trailing = argv[:cut], argv[cut + 1:]
    args = build_parser().parse_args(argv)
    if args.command == "exec":
        args.argv = args.argv + trailing
    elif args.command == "run":      # `podlab run NAME --image X -- CMD ...`: the pod's command
        args.command_argv = trailing
    elif trailing:   # for the other commands '--' only ends the options: `podlab down -- -odd-name`
        args = build_parser().parse_args([*argv, "--", *trailing])
    try:
        if args.command in ROOT_COMMANDS and os.geteuid() != 0:
            raise NeedsRoot(args.command)
        return COMMANDS[args.command](args, out, err)
    except PodlabError as e:
        print(f"podlab: {e}", file=err)
        return 1
    except KeyboardInterrupt:
        print("podlab: interrupted", file=err)
        return 130


def main_entry() -> None:
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:      # `podlab plan ... | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)


def _say(out: TextIO):
    def say(line: str) -> None:
        print(line, file=out, flush=True)
    return say


def cmd_up(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    topo = api.load_topology(args.topology, args.name)
    lab = api.up(topo, _say(out))
    print(f"try: sudo podlab get pods -o wide{_lab_suffix(lab.name)}   sudo podlab check{_lab_suffix(lab.name)}",
          file=out)
    return 0


def _lab_suffix(lab: str) -> str:
    return "" if len(api.running()) <= 1 else f" --lab {lab}"


def cmd_down(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.all:
        labs = api.down_all(_say(out))
        if not labs:
            print("no podlab lab is up", file=out)
        return 0
    lab = args.lab or api.pick(None).name
    api.down(lab, _say(out))
    return 0


def cmd_plan(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    plan = planner.build(api.load_topology(args.topology))
    if args.as_commands:
        print("\n".join(commands.render(plan.ops)), file=out)
    else:
        print(render.plan_text(plan) + service_cli.plan_text(plan), file=out)
    return 0


def cmd_status(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    names = [args.lab] if args.lab else api.running()
    for name in names:    # a change of it cut short is finished first: the status is the lab's as it is
        api.finish_change(name, lambda line: print(line, file=err))
    labs = [api.Lab(n) for n in names]
    rows = [render.lab_status(lab, workloads.read_status(lab.name), workloads.agent_alive(lab.name))
            for lab in labs]
    if args.output == "json":
        print(json.dumps(rows, indent=2), file=out)
        return 0
    from lab import clean
    unfinished = [] if args.lab else clean.unfinished()
    if not rows and not unfinished:
        print("no lab is up: 'sudo podlab up' brings up the default lab", file=out)
    if rows:
        print(render.table(["LAB", "DESIGN", "NODES", "PODS", "READY", "RESTARTS", "AGENT", "AGE"],
                           [[r["name"], r["design"], r["nodes"], r["pods"], r["ready"], r["restarts"],
                             "running" if r["agent"] else "DEAD", render.age(r["age"])] for r in rows]), file=out)
    for r in rows:
        if not r["agent"]:
            print(render.agent_down(r["name"], workloads.read_status(r["name"])), file=out)
    for lab, what in unfinished:
        print(f"lab {lab}: {what}", file=out)
    return 0


def cmd_get(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    lab = api.pick(args.lab)
    watching = getattr(args, "watch", False)
    if args.what in service_cli.GET_CHOICES:
        return service_cli.cmd_get(lab, args.what, args.output, out, watching, getattr(args, "watch_seconds", None))
    if args.what in REPLICASETS + DEPLOYMENTS:
        return _get_workloads(lab, args, out, err)
    if args.what in ("nodes", "node", "no"):
        rows = render.node_rows(lab)
        if args.output == "json":
            print(json.dumps(rows, indent=2), file=out)
            return 0
        cols = ["NAME", "STATUS", "AGE", "INTERNAL-IP", "POD-CIDR"] + (["NETNS"] if args.output == "wide" else [])
        keys = ["name", "status", "age", "ip", "podCIDR"] + (["netns"] if args.output == "wide" else [])
    else:
        agent_status, alive = workloads.read_status(lab.name), workloads.agent_alive(lab.name)
        # As kubectl: one namespace's pods (the default one unless -n), or every namespace's with -A.
        shown: Callable[[dict], bool] = ((lambda r: True) if args.all_namespaces
                                         else (lambda r, ns=args.namespace: r["namespace"] == ns))
        rows = [r for r in render.pod_rows(lab, agent_status, alive) if shown(r)]
        if not alive:
            print(f"warning: {render.agent_down(lab.name, agent_status)}", file=err)
        for r in rows:   # what `kubectl describe pod` shows among the events of a pod stuck in ContainerCreating
            if r.get("message") and args.output != "json":
                print(f"pod/{r['name']} on {r['node']}: Warning FailedCreatePodSandBox: {r['message']}", file=err)
        if args.output == "json":
            print(json.dumps(rows, indent=2), file=out)
            return 0
        cols = ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        keys = ["name", "ready", "status", "restarts", "age"]
        if args.all_namespaces:
            cols, keys = ["NAMESPACE", *cols], ["namespace", *keys]
        if args.output == "wide":
            cols += ["IP", "NODE", "NETNS"]
            keys += ["ip", "node", "netns"]
        if not rows and not args.watch:
            print(f"No resources found in {args.namespace} namespace." if not args.all_namespaces
                  else "No resources found", file=err)
            return 0

    def cells(rows: list[dict]) -> list[list[str]]:
        return [[str(r[k] if k != "age" else render.age(r[k])) for k in keys] for r in rows]
    print(render.table(cols, cells(rows)), file=out)
    if watching and args.what in ("pods", "pod", "po"):
        from lab import watch
        return watch.watch(lab.name, cols, cells(rows), lambda lab: cells([r for r in render.pod_rows(
            lab, workloads.read_status(lab.name), workloads.agent_alive(lab.name)) if shown(r)]), 1,
            args.watch_seconds, out)
    if watching:
        raise PodlabError("get -w watches pods, services and endpoints; nodes come and go only with the cluster "
                          "document")
    return 0


REPLICASETS = ("replicasets", "replicaset", "rs")
DEPLOYMENTS = ("deployments", "deployment", "deploy")


def _get_workloads(lab: api.Lab, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """kubectl get rs / get deployments: during a rollout, a Deployment's two ReplicaSets side by side."""
    status = workloads.read_status(lab.name)
    if args.what in REPLICASETS:
        rows = render.replicaset_rows(lab, status)
        cols, keys = ["NAME", "DESIRED", "CURRENT", "READY", "AGE"], ["name", "desired", "current", "ready", "age"]
    else:
        rows = render.deployment_rows(lab, status)
        cols, keys = ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"], ["name", "ready", "upToDate", "available",
                                                                        "age"]
    if getattr(args, "watch", False):
        raise PodlabError("get -w watches pods, services and endpoints")
    if not args.all_namespaces:
        rows = [r for r in rows if r["namespace"] == args.namespace]
    else:
        cols, keys = ["NAMESPACE", *cols], ["namespace", *keys]
    if args.output == "json":
        print(json.dumps(rows, indent=2), file=out)
        return 0
    if not rows:
        print(f"No resources found in {args.namespace} namespace." if not args.all_namespaces
              else "No resources found", file=err)
        return 0
    print(render.table(cols, [[str(r[k] if k != "age" else render.age(r[k])) for k in keys] for r in rows]), file=out)
    return 0


def _run_in(target: api.Target, argv: list[str], out: TextIO, err: TextIO,
            mounts: list[tuple[str, str]] | None = None) -> int:
    """Run argv inside the target's namespaces; its exit status is ours. A tty passes straight through.
    `mounts`: files bind-mounted in the child's own mount namespace (a pod's resolv.conf and hosts)."""
    from lab.engine import nsexec

    inherit = out is sys.stdout and err is sys.stderr
    try:
        full = nsexec.command(argv, target.netns, target.uts, mounts=mounts or ())
        if inherit:
            out.flush()
            return subprocess.call(full)
        r = subprocess.run(full, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        out.write(r.stdout)
        err.write(r.stderr)
        return r.returncode
    except FileNotFoundError:
        print(f"podlab: {argv[0]}: command not found", file=err)
        return 127


def cmd_exec(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    argv = args.argv
    if not argv:
        raise PodlabError("exec needs a command after '--', e.g. podlab exec POD -- ip addr")
    lab = api.pick(args.lab)
    target = lab.target(args.target)
    if args.container:
        names = [c.name for p in lab.topology.pods if p.name == target.name for c in p.containers]
        if args.container not in names:
            raise PodlabError(f"pod {target.name} has no container {args.container!r}; it has: {', '.join(names)}")
    return _run_in(target, argv, out, err, service_cli.exec_mounts(lab, target))


def cmd_shell(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    lab = api.pick(args.lab)
    target = lab.target(args.target)
    os.environ["PS1"] = f"[{target.kind} {target.name}] \\w# "
    print(f"shell in {target.kind} {target.name} (network namespace {target.netns}); 'exit' to leave", file=out)
    return _run_in(target, ["bash", "--norc", "-i"], out, err, service_cli.exec_mounts(lab, target))


def cmd_ping(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    lab = api.pick(args.lab)
    src = lab.target(args.src)
    dst, service, note = service_cli.destination(lab, src, args.dst)   # a pod, node, host, Service or DNS name
    if note:
        print(note, file=err)
    code = _run_in(src, ["ping", "-c", str(args.count), "-W", "1", "-i", "0.2", dst], out, err,
                   service_cli.exec_mounts(lab, src))
    if code and service_cli.ping_hint(service):
        print(service_cli.ping_hint(service), file=err)
    return code


def cmd_curl(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    lab = api.pick(args.lab)
    src = lab.target(args.src)
    host, _, path = args.dst.partition("/")
    name, _, port = host.partition(":")
    dst, _service, note = service_cli.destination(lab, src, name)   # a pod, node, host, Service or DNS name
    if note:
        print(note, file=err)
    url = f"http://{dst}:{port or 80}/{path}"
    return _run_in(src, ["curl", "-sS", "--max-time", "5", url], out, err, service_cli.exec_mounts(lab, src))


def cmd_check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from lab import check
    lab = api.pick(args.lab)
    from lab import probe
    started = time.monotonic()
    pairs, sampled = check.plan_pairs(lab)
    results = probe.probe(pairs)
    seconds = time.monotonic() - started
    report = check.report(lab, results, seconds, sampled, check.run_services(lab))   # Services: lab.services.probe
    if args.output == "json":
        print(json.dumps(report.json(), indent=2), file=out)
    else:
        print(report.text, file=out)
    return 0 if report.passed else 1


def cmd_inspect(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from lab import inspect
    lab = api.pick(args.lab)
    target = lab.target(args.target)
    snap = inspect.snapshot(target.netns)
    if args.output == "json":
        data = snap.to_dict()
        if target.kind == "node":
            from lab.bgp import cli as bgp
            if (sock := bgp.birds(lab).get(target.name)) is not None:
                # a node running BIRD (calico): its sessions, as `podlab bgp NODE -o json` prints them
                data["bgp"] = bgp.as_json(bgp.node_status(target.name, sock))
        print(json.dumps(data, indent=2), file=out)
    else:
        print(render.snapshot_text(target, snap), file=out)
    return 0


def cmd_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    say = _say(out)
    if "default" in api.running():
        say("the default lab is already up")
        lab = api.Lab("default")
    else:
        lab = api.up(api.load_topology(None), say)
    say("")
    cmd_get(argparse.Namespace(lab=lab.name, what="pods", output="wide", all_namespaces=True, namespace="default",
                               watch=False), out, err)
    say("\nchecking the Kubernetes network model (every pod to every pod, nodes to pods, ICMP and HTTP) ...")
    code = cmd_check(argparse.Namespace(lab=lab.name, output="text"), out, err)
    pod = lab.addresses.pods[0]
    other = next((p for p in lab.addresses.pods if p.node != pod.node), lab.addresses.pods[-1])
    say(render.next_steps(lab, pod, other))
    return code


COMMANDS = {"up": cmd_up, "down": cmd_down, "plan": cmd_plan, "status": cmd_status, "get": cmd_get,
            "exec": cmd_exec, "shell": cmd_shell, "ping": cmd_ping, "curl": cmd_curl, "check": cmd_check,
            "inspect": cmd_inspect, "demo": cmd_demo}
