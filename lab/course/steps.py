"""Break and solution steps: what an exercise does to its lab, as data.

Three kinds, written in exercise.yaml:

    - [node2, ip, route, del, "{block:node1}"]          # run a program inside a lab object
    - {write: capacity.txt, text: "{max_nodes}\\n"}       # write a file in the student's workspace
    - {answer: ip, value: "{ip:web-1}"}                  # record an answer, as `podlab exercise answer` does
    - {answer: ticket, run: [tmp-shell, curl, -s, "http://{ip:ticket}/"]}   # ... from what a command prints
    - {apply: topology.yaml}                             # `podlab apply -f` a workspace file to the lab

A command is an argument list run in the object's network and UTS namespaces (never a shell
string). Placeholders name the lab's own objects, so one exercise works under any lab name:

    {ip:NAME}       the address of a pod, node, outside host or the router
    {block:NODE}    the node's pod block           {gateway:NODE}  the block's gateway (.1 on cni0)
    {veth:POD}      the pod's host-side veth       {vtep:NODE}     the node's VTEP address (block .0)
    {vtepmac:NODE}  the node's VTEP MAC            {router}        the VPC router's address
    {birdconf:NODE} the node's BIRD configuration  {birdctl:NODE}  its BIRD's control socket (calico)
    {podcidr} {nodemask} {max_nodes} {mtu} {podmtu} {bridge} {lab} {workspace}
"""
from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.errors import PodlabError

PLACEHOLDER = re.compile(r"\{([a-z_]+)(?::([A-Za-z0-9._-]+))?\}")
WITH_ARG = {"ip", "block", "gateway", "veth", "vtep", "vtepmac", "birdconf", "birdctl"}
PLAIN = {"router", "podcidr", "nodemask", "max_nodes", "mtu", "podmtu", "bridge", "lab", "workspace"}
STEP_TIMEOUT = 30.0


@dataclass(frozen=True)
class Run:
    target: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Write:
    path: str
    text: str


@dataclass(frozen=True)
class Answer:
    key: str
    value: str | None = None
    run: Run | None = None


@dataclass(frozen=True)
class Apply:
    """`podlab apply -f <workspace>/<path>` on the exercise's lab (a conflist fixed there, say)."""
    path: str


Step = Run | Write | Answer | Apply


# ---------------------------------------------------------------- parsing

def parse(raw: Any, where: str, problems: list[str], answer_keys: set[str] | None = None) -> tuple[Step, ...]:
    """Steps from YAML; problems are appended as 'break[2]: ...'."""
    if not isinstance(raw, list):
        problems.append(f"{where}: a list of steps")
        return ()
    out: list[Step] = []
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        step = _parse_one(item, at, problems, answer_keys)
        if step is not None:
            out.append(step)
    return tuple(out)


def _parse_run(item: Any, at: str, problems: list[str]) -> Run | None:
    if not isinstance(item, list) or len(item) < 2 or not all(isinstance(w, (str, int)) for w in item):
        problems.append(f"{at}: a command is a list [object, program, args...], e.g. [node2, ip, route]")
        return None
    words = [str(w) for w in item]
    for w in words:
        _check_placeholders(w, at, problems)
    return Run(words[0], tuple(words[1:]))


def _parse_one(item: Any, at: str, problems: list[str], answer_keys: set[str] | None) -> Step | None:
    if isinstance(item, list):
        return _parse_run(item, at, problems)
    if not isinstance(item, dict):
        problems.append(f"{at}: a step is a command list, {{write: FILE, text: ...}} or {{answer: KEY, ...}}")
        return None
    if "write" in item:
        if set(item) != {"write", "text"} or not isinstance(item["write"], str) or not isinstance(item["text"], str):
            problems.append(f"{at}: write a file with {{write: NAME, text: TEXT}}")
            return None
        if not _relative_ok(item["write"]):
            problems.append(f"{at}: {item['write']!r} must be a plain file name inside the workspace")
            return None
        _check_placeholders(item["text"], at, problems)
        return Write(item["write"], item["text"])
    if "apply" in item:
        if set(item) != {"apply"} or not isinstance(item["apply"], str) or not _relative_ok(item["apply"]):
            problems.append(f"{at}: apply a workspace file with {{apply: NAME}} (a plain file name)")
            return None
        return Apply(item["apply"])
    if "answer" in item:
        key = item["answer"]
        extra = set(item) - {"answer", "value", "run"}
        if extra or not isinstance(key, str) or ("value" in item) == ("run" in item):
            problems.append(f"{at}: record an answer with {{answer: KEY, value: TEXT}} or {{answer: KEY, run: [...]}}")
            return None
        if answer_keys is not None and key not in answer_keys:
            problems.append(f"{at}: answer {key!r} is not among this exercise's answers: {sorted(answer_keys)}")
        if "run" in item:
            run = _parse_run(item["run"], at, problems)
            return Answer(key, run=run) if run else None
        if not isinstance(item["value"], (str, int)):
            problems.append(f"{at}: value must be text")
            return None
        _check_placeholders(str(item["value"]), at, problems)
        return Answer(key, value=str(item["value"]))
    problems.append(f"{at}: unknown step {sorted(item)}; use a command list, write:, answer: or apply:")
    return None


def _relative_ok(path: str) -> bool:
    return bool(path) and not path.startswith(("/", ".")) and "/" not in path and "\0" not in path


def _check_placeholders(text: str, at: str, problems: list[str]) -> None:
    for m in PLACEHOLDER.finditer(text):
        name, arg = m.group(1), m.group(2)
        if name in WITH_ARG and arg is None:
            problems.append(f"{at}: {{{name}:NAME}} needs the object's name, e.g. {{{name}:node1}}")
        elif name in PLAIN and arg is not None:
            problems.append(f"{at}: {{{name}}} takes no name")
        elif name not in WITH_ARG and name not in PLAIN:
            problems.append(f"{at}: unknown placeholder {m.group(0)} "
                            f"(known: {', '.join(sorted(WITH_ARG | PLAIN))})")


# ---------------------------------------------------------------- expansion

@dataclass(frozen=True)
class Context:
    """What placeholders are filled from: the lab's name, its plan (pure, from the design) and the workspace."""
    lab: str
    plan: Any | None              # lab.planner.Plan, None for an exercise without a lab
    workspace: Path


def expand(text: str, ctx: Context) -> str:
    return PLACEHOLDER.sub(lambda m: _value(m.group(1), m.group(2), ctx), text)


def _value(name: str, arg: str | None, ctx: Context) -> str:
    if name == "lab":
        return ctx.lab
    if name == "workspace":
        return str(ctx.workspace)
    if ctx.plan is None:
        raise PodlabError(f"{{{name}}} needs a lab, and this exercise has none")
    a, topo = ctx.plan.addresses, ctx.plan.topology
    plain = {"router": lambda: str(a.router_ip), "podcidr": lambda: str(topo.pod_cidr),
             "nodemask": lambda: str(topo.node_mask), "max_nodes": lambda: str(a.capacity.max_nodes),
             "mtu": lambda: str(topo.mtu), "podmtu": lambda: str(a.pod_mtu), "bridge": lambda: topo.bridge}
    if name in plain:
        return plain[name]()
    nodes = {n.name: n for n in a.nodes}
    pods = {p.name: p for p in a.pods}
    if name == "ip":
        for group in (nodes, pods, {h.name: h for h in a.outside}):
            if arg in group:
                return str(group[arg].ip)
        if arg == "router":
            return str(a.router_ip)
        raise PodlabError(f"{{ip:{arg}}}: lab {ctx.lab} has no pod, node or host named {arg!r}")
    if name == "veth":
        if arg not in pods or pods[arg].veth is None:
            raise PodlabError(f"{{veth:{arg}}}: lab {ctx.lab} has no pod {arg!r} with its own veth")
        return str(pods[arg].veth)
    if arg not in nodes:
        raise PodlabError(f"{{{name}:{arg}}}: lab {ctx.lab} has no node {arg!r} (nodes: {', '.join(nodes)})")
    node = nodes[arg]
    if name in ("birdconf", "birdctl"):
        return _bird_path(name, node.name, node.netns, ctx)
    return {"block": str(node.block), "gateway": str(node.gateway), "vtep": str(node.block.network_address),
            "vtepmac": node.vtep_mac}[name]


def _bird_path(name: str, node: str, node_ns: str, ctx: Context) -> str:
    """A node's BIRD configuration file or control socket, as its lab has them."""
    from lab import state
    from lab.ops import BgpEstablished, StartDaemon

    assert ctx.plan is not None
    for op in ctx.plan.ops:
        if isinstance(op, StartDaemon) and isinstance(op.ready, BgpEstablished) and op.ns == node_ns:
            return state.expand(op.config[0] if name == "birdconf" else op.ready.socket, ctx.lab)
    raise PodlabError(f"{{{name}:{node}}}: lab {ctx.lab} runs no BIRD on {node} (BGP is the calico design's)")


def expand_run(run: Run, ctx: Context) -> Run:
    return Run(run.target, tuple(expand(w, ctx) for w in run.argv))


# ---------------------------------------------------------------- showing and applying

def render(step: Step, ctx: Context) -> str:
    """A step as the line a person would type."""
    if isinstance(step, Run):
        r = expand_run(step, ctx)
        return f"sudo podlab exec {r.target} -- {shlex.join(r.argv)}"
    if isinstance(step, Write):
        text = expand(step.text, ctx).rstrip("\n")
        if "\n" in text:
            return f"write into {ctx.workspace / step.path}:\n" + "\n".join(f"    {line}" for line in text.splitlines())
        return f"write into {ctx.workspace / step.path}: {text}"
    if isinstance(step, Apply):
        return f"sudo podlab apply -f {ctx.workspace / step.path} --lab {ctx.lab}"
    if step.run is not None:
        return (f"{render(step.run, ctx)}\n    then: sudo podlab exercise answer ID "
                f"{step.key}=<what it printed>")
    return f"sudo podlab exercise answer ID {step.key}={shlex.quote(expand(step.value or '', ctx))}"


def run_in(lab_name: str, run: Run, ctx: Context, timeout: float = STEP_TIMEOUT) -> subprocess.CompletedProcess:
    """Run a (placeholder-expanded) command inside its lab object; PodlabError if it fails."""
    from lab import api
    from lab.engine import nsexec

    r = expand_run(run, ctx)
    target = api.Lab(lab_name).target(r.target)
    shown = f"{r.target}: {shlex.join(r.argv)}"
    try:
        done = subprocess.run(nsexec.command(r.argv, target.netns, target.uts), capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout)
    except FileNotFoundError:
        raise PodlabError(f"step '{shown}': {r.argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise PodlabError(f"step '{shown}' did not finish in {timeout:.0f} s") from None
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise PodlabError(f"step '{shown}' failed (exit {done.returncode})" + (f": {said[-1]}" if said else ""))
    return done


def apply(step: Step, ctx: Context, record_answer) -> str:
    """Do one step; returns a line saying what was done. record_answer(key, value) stores answers."""
    if isinstance(step, Run):
        run_in(ctx.lab, step, ctx)
        return render(step, ctx)
    if isinstance(step, Write):
        path = ctx.workspace / step.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(expand(step.text, ctx))
        return f"wrote {path}"
    if isinstance(step, Apply):
        from lab import api
        lines: list[str] = []
        api.change(ctx.lab, api.load_topology(str(ctx.workspace / step.path)), lines.append)
        return "\n".join([render(step, ctx), *lines])
    if step.run is not None:
        value = run_in(ctx.lab, step.run, ctx).stdout.strip()
    else:
        value = expand(step.value or "", ctx)
    record_answer(step.key, value)
    return f"answer {step.key} = {value}"
