"""podlab removes exactly what it made and never touches anything else.

Other software's namespaces (some named exactly like a lab's would be), links and processes
survive every podlab command; `clean` removes orphaned labs by their ownership records and
leaves alone labs that are up or being built; a name podlab made, deleted and taken since by
another program is not removed; state files are root's only; every command that needs root
says so in one line.
"""
from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from labcheck import diff_root_state, root_netns_state
from reliab import Design, Foreign, design, residue, run

from lab import api, cli, state
from lab.engine import netns

SMALL = design("l3", "outside: [ecs]\n")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A state directory of our own: `clean` here never sees other tests' labs."""
    r = tmp_path_factory.mktemp("state")
    r.chmod(0o755)   # podlab must tighten it to 0700 itself
    old, state.ROOT = state.ROOT, r
    yield r
    state.ROOT = old


@pytest.fixture(scope="module")
def topo_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("topo")


def podlab(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(args), out, err)
    return code, out.getvalue(), err.getvalue()


def test_other_softwares_objects_survive_every_command(root, topo_dir):
    before = root_netns_state()
    d = Design.write(topo_dir, "own", SMALL)
    # Look-alikes: names a lab could have, a bridge called cni0, a veth, a process inside.
    foreign = Foreign([f"{d.name}-node3", f"{d.name}-ecs2", f"{d.name}x-node1"])
    subprocess.run(["ip", "-n", f"{d.name}-node3", "link", "add", "cni0", "type", "bridge"], check=True)
    try:
        steps = [("up", str(d.path), "--name", d.name), ("status",), ("get", "pods", "-o", "wide"),
                 ("get", "nodes"), ("exec", "web", "--lab", d.name, "--", "true"),
                 ("inspect", "node1", "--lab", d.name), ("check", "--lab", d.name), ("clean", "--dry-run"),
                 ("clean",), ("down", d.name), ("clean",), ("down", "--all")]
        for step in steps:
            code, out, err = podlab(*step)
            assert code == 0, f"{step}: {err}"
            problems = foreign.intact()
            assert not problems, f"after 'podlab {' '.join(step)}': {problems}"
            links = subprocess.run(["ip", "-n", f"{d.name}-node3", "-br", "link"], capture_output=True, text=True)
            assert "cni0" in links.stdout
        assert not residue(d, root, set(foreign.names))
    finally:
        foreign.remove()
    after = root_netns_state()
    assert after == before, diff_root_state(before, after)


def test_clean_removes_orphans_and_only_orphans(root, topo_dir):
    before = root_netns_state()
    healthy = Design.write(topo_dir, "ok", SMALL)
    halfway = Design.write(topo_dir, "half", SMALL)
    emptied = Design.write(topo_dir, "gone", SMALL)
    building = Design.write(topo_dir, "busy", SMALL)
    foreign = Foreign([f"{halfway.name}-node3"])
    try:
        assert podlab("up", str(healthy.path), "--name", healthy.name)[0] == 0
        # A crashed up: killed after its namespaces and some links were made.
        r = run(["up", str(halfway.path), "--name", halfway.name], root, {"PODLAB_CRASH_AT": "12"})
        assert r.returncode == -signal.SIGKILL
        assert any(netns.exists(n) for n in halfway.netns)
        # A lab whose namespaces someone deleted by hand: its agent and state remain.
        assert podlab("up", str(emptied.path), "--name", emptied.name)[0] == 0
        for n in emptied.netns:
            subprocess.run(["ip", "netns", "del", n], check=True)   # this test's own lab
        # A lab whose `up` is running right now (we hold its lock, as `up` would).
        (root / building.name).mkdir(mode=0o700)
        (root / ".stale-lab.lock").write_text("")
        with state.locked(building.name):
            code, out, _ = podlab("clean", "--dry-run")
            assert code == 0 and f"lab {halfway.name}: left half-built" in out and f"lab {emptied.name}: all" in out
            assert any(netns.exists(n) for n in halfway.netns), "a dry run removes nothing"
            code, out, err = podlab("clean")
            assert code == 0, err
            assert f"lab {building.name}: skipped" in out
            assert f"left alone (up): {healthy.name}" in out
            assert (root / building.name).is_dir()
            code, out, _ = podlab("status")
            assert f"lab {building.name}: being built" in out
        (root / building.name).rmdir()
        assert not residue(halfway, root, set(foreign.names)) and not foreign.intact()
        assert not residue(emptied, root)
        assert not (root / ".stale-lab.lock").exists()
        assert json.loads(podlab("status", "-o", "json")[1])[0]["name"] == healthy.name
        assert all(netns.exists(n) for n in healthy.netns)
        assert podlab("down", healthy.name)[0] == 0
        assert not residue(healthy, root)
        code, out, _ = podlab("clean")
        assert "nothing to clean" in out
    finally:
        foreign.remove()
        for d in (healthy, halfway, emptied):
            if (root / d.name).exists():
                api.down(d.name)
    after = root_netns_state()
    assert after == before, diff_root_state(before, after)


def test_a_name_taken_by_someone_else_after_podlab_made_it_is_not_removed(root, topo_dir):
    d = Design.write(topo_dir, "swap", SMALL)
    assert podlab("up", str(d.path), "--name", d.name)[0] == 0
    name = f"{d.name}-web"
    # Someone deletes the pod's namespace by hand and another program creates one of that name.
    subprocess.run(["ip", "netns", "del", name], check=True)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        code, out, err = podlab("down", d.name)
        assert code == 0, err
        assert netns.exists(name), "the other program's namespace was removed"
        assert not residue(d, root, {name})
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def test_state_files_are_root_only(root, topo_dir):
    d = Design.write(topo_dir, "mode", SMALL)
    assert podlab("up", str(d.path), "--name", d.name)[0] == 0
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not list((root / d.name / "logs").glob("*.log")):
            time.sleep(0.05)
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
        checked = 0
        for path in [root / d.name, *(root / d.name).rglob("*"), *root.glob(".*.lock")]:
            if os.path.ismount(path):
                continue   # the UTS namespace mounts: nsfs files, inside a 0700 directory
            mode = stat.S_IMODE(path.lstat().st_mode)
            want = 0o700 if path.is_dir() else 0o600
            assert mode == want, f"{path} has mode {mode:o}, not {want:o}"
            checked += 1
        assert checked >= 10
        if Path("/run/podlab").is_dir():
            assert stat.S_IMODE(Path("/run/podlab").stat().st_mode) == 0o700
    finally:
        assert podlab("down", d.name)[0] == 0


AS_NOBODY = """
import io, json, os, sys
import lab.cli, lab.api, lab.topology, lab.render   # imported while root: the interpreter may be unreadable
lab.cli.build_parser()
os.setgroups([]); os.setgid(65534); os.setuid(65534)
results = {}
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    try:
        code = lab.cli.main(argv, out, err)
    except SystemExit as e:           # argparse wanted other arguments
        code = e.code
    except BaseException as e:        # anything else would be a traceback for the user
        code, err = "raised", io.StringIO(repr(e))
    results[" ".join(argv)] = [code, err.getvalue()]
print(json.dumps(results))
"""


def test_every_root_command_says_it_needs_root_in_one_line():
    """Run as user nobody (one process for all commands: it drops root, then runs each)."""
    cli.build_parser()
    args = {"exec": ["x", "--", "true"], "shell": ["x"], "ping": ["a", "b"], "curl": ["a", "b"],
            "inspect": ["x"], "get": ["pods"], "down": ["x"], "trace": ["a", "b"], "explain": ["a", "b"],
            "capture": ["x"], "nslookup": ["a", "b"], "mtu": ["a", "b"], "apply": ["-f", "x.yaml"],
            "delete": ["pod", "x"], "scale": ["deployment", "x", "--replicas", "1"], "rollout": ["restart", "deployment", "x"],
            "run": ["x", "--image", "busybox"]}
    attempts = [[c, *args.get(c, []), *more] for c in sorted(cli.ROOT_COMMANDS) for more in ([], ["x"], ["x", "y"])]
    r = subprocess.run([sys.executable, "-c", AS_NOBODY, json.dumps(attempts)], capture_output=True, text=True,
                       cwd="/", env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])))
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)
    tried = 0
    for command in sorted(cli.ROOT_COMMANDS):
        # the first attempt argparse accepted (2: it wanted other arguments)
        code, err = next((res for argv, res in results.items() if argv.split()[0] == command and res[0] != 2),
                         (2, "argparse refused every attempt"))
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1, f"{command}: {code} {err}"
        assert "needs root" in lines[0] and f"sudo podlab {command}" in lines[0], lines[0]
        tried += 1
    assert tried >= 12
