"""Helpers for the reliability tests: podlab as a subprocess with a private state directory,
other software's objects that must survive, and a residue check that looks at everything a
lab can leave (namespaces, mounts, processes, state files), not just at what podlab reports."""
from __future__ import annotations

import io
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lab import api, cli, planner, state
from lab.engine import netns

# A small lab with everything that can be left behind: namespaces and UTS mounts, the agent,
# a command container whose child outlives it (the `sleep` it starts in the background).
def design(mode: str = "vxlan", extra: str = "") -> str:
    """The small lab in `mode` (a Design.write template: {token} and {token2} are its sleeps)."""
    return f"""\
mode: {mode}
nodes: [node1, node2]
pods:
  - {{{{name: web, node: node1, image: nginx}}}}
  - name: cmd
    node: node2
    containers:
      - {{{{name: c, image: busybox, command: [sh, -c, "sleep {{token}} & exec sleep {{token2}}"]}}}}
{extra}"""


DESIGN = design()


def run(args: list[str], root: Path, extra_env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, PODLAB_STATE_DIR=str(root), **(extra_env or {}))
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd="/")


def start(args: list[str], root: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    env = dict(os.environ, PODLAB_STATE_DIR=str(root), **(extra_env or {}))
    return subprocess.Popen([sys.executable, "-m", "lab", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd="/")


@dataclass
class Design:
    """A topology file with unique sleep durations, so its processes can be found by the test."""
    path: Path
    name: str
    token: str = ""
    token2: str = ""
    netns: list[str] = field(default_factory=list)

    @classmethod
    def write(cls, directory: Path, prefix: str, text: str = DESIGN) -> "Design":
        name = f"{prefix}-{secrets.token_hex(3)}"
        token, token2 = str(86400 + secrets.randbelow(10**6)), str(86400 + secrets.randbelow(10**6))
        path = directory / f"{name}.yaml"
        path.write_text(text.format(token=token, token2=token2))
        d = cls(path, name, token, token2)
        d.netns = [op.ns for op in planner.build(api.load_topology(str(path), name)).ops if hasattr(op, "hostname")]
        return d


def mounts() -> list[str]:
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        out.append(point.encode().decode("unicode_escape"))
    return out


def processes_with(*needles: str) -> list[tuple[int, str]]:
    """Processes whose command line contains one of the needles (a test's unique tokens)."""
    found = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            args = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(n in args for n in needles):
            found.append((int(p.name), args))
    return found


def lab_agent_processes(lab: str) -> list[tuple[int, str]]:
    return [(pid, args) for pid, args in processes_with(f"--lab {lab} ") if "lab.workloads.agent" in args]


def residue(d: Design, root: Path, foreign: set[str] = frozenset()) -> list[str]:
    """Everything of lab `d` still on the host, as readable problems (empty: nothing left)."""
    problems = []
    left = [n for n in d.netns if n not in foreign and netns.exists(n)]
    if left:
        problems.append(f"namespaces left: {left}")
    lab_dir = str(root / d.name)
    ours = [m for m in mounts() if m == lab_dir or m.startswith(lab_dir + "/")
            or any(m == f"/run/netns/{n}" for n in d.netns if n not in foreign)]
    if ours:
        problems.append(f"mounts left: {ours[:4]}")
    procs = [p for p in processes_with(f"sleep {d.token}", f"sleep {d.token2}") if "sleep" in p[1]]
    procs += lab_agent_processes(d.name)
    procs += [p for p in processes_with(f"/{d.name}/bird/") if "bird" in p[1]]   # calico designs' BIRDs
    if procs:
        problems.append(f"processes left: {procs[:4]}")
    if (root / d.name).exists():
        problems.append(f"state directory left: {sorted(p.name for p in (root / d.name).iterdir())}")
    if (root / f".{d.name}.lock").exists():
        problems.append("lock file left")
    return problems


def untracked(d: Design, root: Path, foreign: set[str] = frozenset()) -> list[str]:
    """Objects of a crashed `up` that its journal does not name: there must be none."""
    journal = root / d.name / "journal.jsonl"
    entries = [json.loads(line) for line in journal.read_text().splitlines()] if journal.exists() else []
    made = {e["name"]: tuple(e["net"]) for e in entries if e["kind"] == "netns-made"}
    problems = []
    for n in d.netns:
        if n in foreign or not netns.exists(n):
            continue
        path = netns.netns_path(n)
        if made.get(n) == netns.identity(path):
            continue
        if n in made and os.path.getsize(path) == 0 and not os.path.ismount(path):
            continue   # killed inside mount(2): the journalled mount point, not yet mounted on
        problems.append(f"namespace {n} exists but the journal has no matching record")
    # An agent the journal does not name yet dies with `up` (PR_SET_PDEATHSIG): give the kernel a
    # moment to deliver that, then none may be left.
    recorded = {e["pid"] for e in entries if e["kind"] == "process"}
    deadline = time.monotonic() + 3
    while (unnamed := [pid for pid, _ in lab_agent_processes(d.name) if pid not in recorded]) \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    problems += [f"agent {pid} runs but the journal does not name it" for pid in unnamed]
    return problems


class Foreign:
    """Another program's objects: namespaces named like a lab's, a veth pair, a process inside.

    Made with iproute2 (not podlab), removed by this test by name and PID, which it owns.
    """

    def __init__(self, names: list[str]):
        self.names = names
        self.procs: list[subprocess.Popen] = []
        for n in names:
            subprocess.run(["ip", "netns", "add", n], check=True)
            subprocess.run(["ip", "-n", n, "link", "add", "fgn0", "type", "veth", "peer", "name", "fgn1"], check=True)
            subprocess.run(["ip", "-n", n, "link", "set", "fgn0", "up"], check=True)
        self.token = str(86400 + secrets.randbelow(10**6))
        if names:
            self.procs.append(subprocess.Popen(["ip", "netns", "exec", names[0], "sleep", self.token]))

    def intact(self) -> list[str]:
        problems = [f"foreign namespace {n} removed" for n in self.names if not netns.exists(n)]
        for n in self.names:
            if netns.exists(n):
                links = subprocess.run(["ip", "-n", n, "-br", "link"], capture_output=True, text=True).stdout
                if "fgn0" not in links:
                    problems.append(f"foreign link fgn0 in {n} removed")
        problems += [f"foreign process {p.pid} ended" for p in self.procs if p.poll() is not None]
        return problems

    def remove(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.wait()
        for n in self.names:
            subprocess.run(["ip", "netns", "del", n], check=False)


# Shared by the reliability tests: a private state directory per module, and the CLI in-process.
@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp("state")
    old, state.ROOT = state.ROOT, r
    yield r
    state.ROOT = old


def podlab(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return cli.main(list(args), out, err), out.getvalue(), err.getvalue()
