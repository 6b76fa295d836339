"""`podlab`: a thin shell over lab.api. main(argv, out, err) -> exit code, so it is testable."""
from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import subprocess
import sys
import time
from typing import Any, TextIO

from lab import api, commands, listing, planner, render, workloads
from lab.cliopts import lab_option
from lab.errors import NeedsRoot, PodlabError
from lab.services import cli as service_cli

ROOT_COMMANDS = {"up", "down", "status", "get", "exec", "shell", "ping", "curl", "check", "inspect", "demo"}

# Areas that add their own subcommands. Each module has
#   register(sub: argparse._SubParsersAction) -> dict[str, Handler]   (handler(args, out, err) -> int)
#   NEEDS_ROOT: set[str]
# and imports its heavy dependencies inside the handlers, so `podlab --help` stays fast.
EXTENSIONS: list[str] = ["tui.cli", "lab.clean_cli", "lab.course.cli", "lab.services.cli", "lab.packets.cli", "lab.bgp.cli",
                         "lab.apply_cli", "lab.drain_cli", "lab.logs_cli", "lab.cni.cli"]


class _Skipped:
    """The parser of a command this run does not parse: it takes the command's arguments, and keeps none."""

    def add_argument(self, *args: object, **kwargs: object) -> None:
        return None

    def add_subparsers(self, *args: object, **kwargs: object) -> "_Skipped":
        return self

    def add_parser(self, *args: object, **kwargs: object) -> "_Skipped":
        return self


class _OneCommand:
    """The subcommands of a run that names its command: only that one's parser is made (argparse
    takes ~0.5 ms a parser, podlab has some 40, and `podlab apply` is meant to take well under a second)."""

    def __init__(self, sub: argparse._SubParsersAction, name: str):
        self.sub, self.name, self.found = sub, name, False

    def add_parser(self, name: str, **kwargs: object) -> argparse.ArgumentParser | _Skipped:
        if name != self.name:
            return _Skipped()
        self.found = True
        return self.sub.add_parser(name, **kwargs)   # type: ignore[arg-type]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """podlab's parser; with `command`, that command's alone (every one if there is no such command:
    the error lists them)."""
    p = argparse.ArgumentParser(prog="podlab", description="Kubernetes pod networking, built from real Linux "
                                "namespaces: bring up a cluster design, look inside, send packets.")
    every = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    one = _OneCommand(every, command) if command is not None else None
    sub: Any = one if one is not None else every

    def lab_flag(sp: argparse.ArgumentParser) -> None:
        lab_option(sp)

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

    sp = sub.add_parser("get", help="list nodes, pods, services, endpoints, replicasets or deployments, kubectl-style")
    sp.add_argument("what", choices=list(listing.KINDS))
    sp.add_argument("names", nargs="*", metavar="NAME", help="only these (in the namespace of -n); a name not "
                    "there is an error, as kubectl's NotFound")
    sp.add_argument("-o", "--output", choices=["text", "wide", "json"], default="text")
    sp.add_argument("-w", "--watch", action="store_true", help="after the listing, print each row that changes "
                    "(a pod created, deleted, its status or address; a Service's endpoints), as kubectl get -w "
                    "does; Ctrl-C ends")
    sp.add_argument("--watch-seconds", type=float, default=None, help=argparse.SUPPRESS)   # tests: stop after this
    sp.add_argument("-n", "--namespace", default="default", help="pods, services, endpoints: those of this "
                    "namespace (default: default, as kubectl; the cluster DNS is in kube-system)")
    sp.add_argument("-A", "--all-namespaces", action="store_true", help="those of every namespace, with a "
                    "NAMESPACE column")
    lab_flag(sp)

    sp = sub.add_parser("exec", help="run a command in a pod, node or host: podlab exec POD -- CMD ...")
    sp.add_argument("target")
    sp.add_argument("-c", "--container", help="container name (default: the first, as kubectl): the command sees "
                    "its volumes at their mountPaths; all of a pod's containers share its network")
    sp.add_argument("argv", nargs="*", metavar="-- CMD", help="the command, after '--'")
    lab_flag(sp)

    sp = sub.add_parser("shell", help="an interactive shell inside a pod, node or host")
    sp.add_argument("target")
    sp.add_argument("-c", "--container", help="a pod's container whose files the shell sees (default: the first)")
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
    return p if one is None or one.found else build_parser()


def main(argv: list[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after '--' is the command to run (exec), never podlab's own options.
    trailing: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, trailing = argv[:cut], argv[cut + 1:]
    # The command is the first word that is no option (podlab's own options take no value).
    command = next((a for a in argv if not a.startswith("-")), None)
    args = _parse(build_parser(command), argv)
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


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """As parse_args, but the names of `get` and `delete` may come after their options too, as kubectl
    takes them (`get pods --lab x web db`, `delete pod -n dev web`): argparse reads a command's
    positionals in one run only."""
    args, extra = parser.parse_known_args(argv)
    if extra and args.command in ("get", "delete") and not any(e.startswith("-") for e in extra):
        args.names = [*args.names, *extra]
    elif extra:
        parser.parse_args(argv)      # argparse's own message for what it does not know, and exit 2
    return args


def main_entry() -> None:
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:      # `podlab plan ... | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    # The interpreter's last garbage collection at exit walks every object podlab made or imported
    # (~20 ms of each command, a twentieth of `podlab apply`): they are freed with the process, so
    # it skips them. The exit itself (atexit, flushing, finalizers of what is freed) is as ever.
    gc.freeze()
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
    query = listing.Query.of(args.what, getattr(args, "names", ()), args.namespace, args.all_namespaces)
    watching = getattr(args, "watch", False)
    if query.resource in ("services", "endpoints"):
        return service_cli.cmd_get(lab, query, args.output, out, err, watching, getattr(args, "watch_seconds", None))
    if query.resource in ("nodes", "replicasets", "deployments") and watching:
        raise PodlabError(f"get -w watches pods, services and endpoints, not {query.resource}")
    if query.resource == "nodes":
        rows, missing = query.select(render.node_rows(lab))
        cols = ["NAME", "STATUS", "AGE", "INTERNAL-IP", "POD-CIDR"] + (["NETNS"] if args.output == "wide" else [])
        keys = ["name", "status", "age", "ip", "podCIDR"] + (["netns"] if args.output == "wide" else [])
    elif query.resource == "replicasets":     # during a rollout, a Deployment's two generations side by side
        rows, missing = query.select(render.replicaset_rows(lab, workloads.read_status(lab.name)))
        cols, keys = query.columns(["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
                                   ["name", "desired", "current", "ready", "age"])
    elif query.resource == "deployments":
        rows, missing = query.select(render.deployment_rows(lab, workloads.read_status(lab.name)))
        cols, keys = query.columns(["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
                                   ["name", "ready", "upToDate", "available", "age"])
    else:
        agent_status, alive = workloads.read_status(lab.name), workloads.agent_alive(lab.name)
        rows, missing = query.select(render.pod_rows(lab, agent_status, alive))
        if not alive:
            print(f"warning: {render.agent_down(lab.name, agent_status)}", file=err)
        for r in rows:   # what `kubectl describe pod` shows among the events of a pod stuck in ContainerCreating
            if r.get("message") and args.output != "json":
                print(f"pod/{r['name']} on {r['node']}: Warning FailedCreatePodSandBox: {r['message']}", file=err)
        cols, keys = query.columns(["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
                                   ["name", "ready", "status", "restarts", "age"])
        if args.output == "wide":
            cols += ["IP", "NODE", "NETNS"]
            keys += ["ip", "node", "netns"]
    if args.output == "json":
        print(json.dumps(rows, indent=2), file=out)
        return listing.report(query, rows, missing, err, table=False)

    def cells(rows: list[dict]) -> list[list[str]]:
        return [[str(r[k] if k != "age" else render.age(r[k])) for k in keys] for r in rows]
    if rows or (watching and not query.names):    # -w on nothing yet: the header, then what comes
        print(render.table(cols, cells(rows)), file=out)
    code = listing.report(query, rows, missing, err, table=not watching)
    if watching and not missing:      # kubectl does not watch what it could not get
        from lab import watch
        return watch.watch(lab.name, cols, cells(rows), lambda lab: cells(query.select(render.pod_rows(
            lab, workloads.read_status(lab.name), workloads.agent_alive(lab.name)))[0]), query.key_cells,
            args.watch_seconds, out)
    return code


def _run_in(target: api.Target, argv: list[str], out: TextIO, err: TextIO,
            mounts: list[tuple[str, str]] | None = None, view: Any = None) -> int:
    """Run argv inside the target's namespaces; its exit status is ours. A tty passes straight through.
    `mounts`: files bind-mounted in the child's own mount namespace (a pod's resolv.conf and hosts);
    `view`: instead, a container's whole view of the files (lab.container_view)."""
    from lab.engine import nsexec

    inherit = out is sys.stdout and err is sys.stderr
    try:
        full = nsexec.command(argv, target.netns, target.uts, mounts=mounts or (), view=view)
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
    return _in_container(lab, lab.target(args.target), args.container, argv, out, err)


def cmd_shell(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    lab = api.pick(args.lab)
    target = lab.target(args.target)
    os.environ["PS1"] = f"[{target.kind} {target.name}] \\w# "
    print(f"shell in {target.kind} {target.name} (network namespace {target.netns}); 'exit' to leave", file=out)
    return _in_container(lab, target, args.container, ["bash", "--norc", "-i"], out, err)


def _in_container(lab: api.Lab, target: api.Target, container: str | None, argv: list[str], out: TextIO,
                  err: TextIO) -> int:
    """argv in a pod's container (its files and volumes, lab.container_view), or in a node or host."""
    from lab import container_view
    files = service_cli.exec_mounts(lab, target)
    pod = next((p for p in lab.topology.pods if p.name == target.name), None) if target.kind == "pod" else None
    if pod is None:
        if container:
            raise PodlabError(f"{target.name} is a {target.kind}, not a pod: it has no containers (drop -c)")
        return _run_in(target, argv, out, err, files)
    chosen = container_view.pick(pod, container, err)
    with container_view.view(lab.name, pod, chosen, files) as view:
        return _run_in(target, argv, out, err, files, view)


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
    cmd_get(argparse.Namespace(lab=lab.name, what="pods", names=[], output="wide", all_namespaces=True,
                               namespace="default", watch=False), out, err)
    say("\nchecking the Kubernetes network model (every pod to every pod, nodes to pods, ICMP and HTTP) ...")
    code = cmd_check(argparse.Namespace(lab=lab.name, output="text"), out, err)
    pod = lab.addresses.pods[0]
    other = next((p for p in lab.addresses.pods if p.node != pod.node), lab.addresses.pods[-1])
    say(render.next_steps(lab, pod, other))
    return code


COMMANDS = {"up": cmd_up, "down": cmd_down, "plan": cmd_plan, "status": cmd_status, "get": cmd_get,
            "exec": cmd_exec, "shell": cmd_shell, "ping": cmd_ping, "curl": cmd_curl, "check": cmd_check,
            "inspect": cmd_inspect, "demo": cmd_demo}
