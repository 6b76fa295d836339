"""`podlab up` killed with SIGKILL anywhere leaves nothing that `down`, `clean` or the next `up`
cannot remove, and nothing its journal does not name.

The crash points (lab.faults) are every journal record, every namespace mount, every netlink
batch, the agent's start and lab.json: the test counts them in a full run, then kills `up` at
every one of them in turn, and at random moments too. After each crash it checks that the journal survived and names everything that
exists, removes the lab in one of three ways (down, clean, the next up) and checks that no
namespace, mount, process or state file is left, that other software's look-alike namespaces
survived, and that the root network namespace did not change.
"""
from __future__ import annotations

import io
import json
import os
import random
import shutil
import signal
import subprocess
import time

import pytest
from labcheck import diff_root_state, root_netns_state
from reliab import DESIGN, Design, Foreign, lab_agent_processes, processes_with, residue, run, start, untracked

from lab import cli, state

FIGURES: dict[str, int] = {}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A state directory of our own, for `podlab` subprocesses and for this process alike."""
    r = tmp_path_factory.mktemp("state")
    r.chmod(0o700)
    old, state.ROOT = state.ROOT, r
    yield r
    state.ROOT = old


def podlab(*args: str) -> tuple[int, str, str]:
    """The CLI in this process: the same code as the `podlab` command, without its start-up time.
    (The `up` that crashes always runs as a process of its own.)"""
    out, err = io.StringIO(), io.StringIO()
    return cli.main(list(args), out, err), out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def design(tmp_path_factory, root):
    d = Design.write(tmp_path_factory.mktemp("topo"), "crash")
    yield d
    if (root / d.name).exists():   # a failed test left it: remove it while its journal is still there
        podlab("down", d.name)


@pytest.fixture(scope="module")
def foreign(design):
    # Names a later lab or a careless cleaner might take for the lab's: <lab>-node3, <lab>-web2.
    f = Foreign([f"{design.name}-node3", f"{design.name}-web2"])
    yield f
    f.remove()


def count_points(design, root) -> list[str]:
    log = root.parent / f"{design.name}.points"
    r = run(["up", str(design.path), "--name", design.name], root, {"PODLAB_CRASH_LOG": str(log)})
    assert r.returncode == 0, r.stderr
    points = [line.split(" ", 1)[1] for line in log.read_text().splitlines()]
    assert podlab("down", design.name)[0] == 0
    return points


def recover(how: str, design, root) -> None:
    existed = (root / design.name).exists()   # a kill during Python's start-up leaves nothing at all
    if how == "down":
        code, out, err = podlab("down", design.name)
        assert code == 0 if existed else "is not up" in err, err
    elif how == "clean":
        whole = (root / design.name / "lab.json").exists()   # killed too late: the lab is up
        code, out, err = podlab("clean")
        assert code == 0 and (f"lab {design.name}:" in out) == (existed and not whole), out + err
        if whole:
            assert f"left alone (up): {design.name}" in out
            assert podlab("down", design.name)[0] == 0
    else:  # the next up of the same lab removes the half-built one and succeeds
        code, out, err = podlab("up", str(design.path), "--name", design.name)
        assert code == 0, err
        status = json.loads(podlab("status", "-o", "json")[1])
        assert [s["name"] for s in status] == [design.name] and status[0]["agent"]
        code, out, err = podlab("down", design.name)
        assert code == 0, err
        FIGURES["next_up_succeeded"] = FIGURES.get("next_up_succeeded", 0) + 1


def after_crash_checks(design, root, foreign, point: str) -> None:
    journal = root / design.name / "journal.jsonl"
    if journal.exists():
        lines = journal.read_text().splitlines()
        for line in lines:
            json.loads(line)   # every record is whole: the journal survives a SIGKILL
    problems = untracked(design, root, set(foreign.names))
    assert not problems, f"crash at {point}: {problems}"


def test_crash_at_every_kind_of_point(design, root, foreign):
    before = root_netns_state()
    points = count_points(design, root)
    # Two daemons: the workload agent and the cluster DNS's dnsmasq (a container of the agent's).
    assert {"journal lab", "netns mounted", "netlink batch", "journal daemon x2", "journal process", "daemon handed over",
            "daemons ready", "lab.json written"} <= set(points)
    chosen = list(range(1, len(points) + 1))   # every one of them: a small lab has a few dozen
    ways = ["down", "clean", "up"]
    for i, k in enumerate(chosen):
        r = run(["up", str(design.path), "--name", design.name], root, {"PODLAB_CRASH_AT": str(k)})
        assert r.returncode == -signal.SIGKILL, f"point {k} ({points[k - 1]}): {r.returncode} {r.stderr}"
        after_crash_checks(design, root, foreign, f"{k} ({points[k - 1]})")
        recover(ways[i % 3], design, root)
        problems = residue(design, root, set(foreign.names)) + foreign.intact()
        assert not problems, f"after a crash at point {k} ({points[k - 1]}) and '{ways[i % 3]}': {problems}"
    FIGURES["crash_points_total"] = len(points)
    FIGURES["crash_points_tried"] = len(chosen)
    after = root_netns_state()
    assert after == before, diff_root_state(before, after)


def test_crash_at_random_moments(design, root, foreign):
    started = time.monotonic()
    r = run(["up", str(design.path), "--name", design.name], root)
    full = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    assert podlab("down", design.name)[0] == 0
    rng = random.Random(4)
    killed = 0
    for i in range(6):
        p = start(["up", str(design.path), "--name", design.name], root)
        time.sleep(rng.uniform(0.05, full))
        p.send_signal(signal.SIGKILL)   # our own child, not yet reaped: its PID is ours
        code = p.wait()
        p.stdout.close()
        p.stderr.close()
        killed += code == -signal.SIGKILL
        after_crash_checks(design, root, foreign, f"random moment {i}")
        recover(["clean", "down", "up"][i % 3], design, root)
        problems = residue(design, root, set(foreign.names)) + foreign.intact()
        assert not problems, f"after a kill at a random moment ({i}): {problems}"
    FIGURES["random_kills"] = killed
    assert killed >= 3, "the kills should mostly land while up is running"


def test_a_calico_up_killed_while_it_starts_bird_leaves_no_bird(root, tmp_path):
    """Crash points from the first BIRD's start to lab.json: `down` and `clean` stop every BIRD,
    recorded by PID or found in the lab's namespaces (one started just before the kill)."""
    d = Design.write(tmp_path, "crashbgp", DESIGN.replace("mode: vxlan", "design: calico"))
    points = count_points(d, root)
    first = points.index("journal process") + 1    # the agent's record; the BIRDs come after it
    chosen = [k for k in range(first, len(points) + 1) if points[k - 1] in
              ("process started", "journal process", "daemons ready", "lab.json written")]
    assert points.count("process started") == 2 and chosen
    for i, k in enumerate(chosen):
        r = run(["up", str(d.path), "--name", d.name], root, {"PODLAB_CRASH_AT": str(k)})
        assert r.returncode == -signal.SIGKILL, f"point {k} ({points[k - 1]}): {r.returncode} {r.stderr}"
        recover(["down", "clean"][i % 2], d, root)
        problems = residue(d, root)
        assert not problems, f"after a crash at point {k} ({points[k - 1]}): {problems}"
    FIGURES["bgp_crash_points_tried"] = len(chosen)


def test_a_name_recorded_but_never_made_is_left_to_whoever_takes_it(design, root, tmp_path):
    """`up` dies after journalling its namespaces but before making one; another program then
    creates a namespace of that very name. `down` must not remove it, and `up` says it is taken."""
    points = count_points(design, root)
    k = points.index("journal netns-made") + 1      # the first namespace is made, the others only intended
    r = run(["up", str(design.path), "--name", design.name], root, {"PODLAB_CRASH_AT": str(k)})
    assert r.returncode == -signal.SIGKILL
    taken = design.netns[-1]
    subprocess.run(["ip", "netns", "add", taken], check=True)
    try:
        r = run(["down", design.name], root)
        assert r.returncode == 0, r.stderr
        assert subprocess.run(["ip", "netns", "pids", taken], capture_output=True).returncode == 0
        assert taken in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        r = run(["up", str(design.path), "--name", design.name], root)
        assert r.returncode == 1 and f"network namespace {taken} already exists" in r.stderr
        assert "Traceback" not in r.stderr
    finally:
        subprocess.run(["ip", "netns", "del", taken], check=True)
    assert not residue(design, root)


def test_grandchildren_of_a_killed_agent_are_stopped_by_down(design, root):
    """The agent is SIGKILLed: its command container dies with it (PDEATHSIG), but the
    container's own child does not. `down` finds it by its network namespace."""
    assert run(["up", str(design.path), "--name", design.name], root).returncode == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not processes_with(f"sleep {design.token}"):
        time.sleep(0.05)
    [(agent, _)] = lab_agent_processes(design.name)
    os.kill(agent, signal.SIGKILL)   # the agent of this test's own lab, by PID
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and lab_agent_processes(design.name):
        time.sleep(0.05)
    orphans = [pid for pid, args in processes_with(f"sleep {design.token}") if args.startswith("sleep")]
    assert orphans, "the container's child should have outlived the agent"
    r = run(["down", design.name], root)
    assert r.returncode == 0, r.stderr
    assert not residue(design, root)


@pytest.fixture(scope="module", autouse=True)
def figures():
    """Printed once the module's tests are done (seen with -s): how much they tried. Not a test:
    it could not fail."""
    yield
    print(f"\ncrash figures: {FIGURES}")


def test_a_mount_point_left_by_a_crash_inside_mount_is_removed_and_no_other_file(root):
    """A crash between creating /run/netns/NAME and mounting on it leaves an empty file. It is
    ours if its creation time matches the journal's record; an older one is someone else's."""
    from lab.engine import apply, netns
    from lab.engine.journal import Journal
    lab = f"mnt-{os.urandom(3).hex()}"
    mine, theirs = f"{lab}-node1", f"{lab}-node2"
    open(netns.netns_path(theirs), "x").close()     # another program's empty file, made earlier
    try:
        time.sleep(1.1)
        j = Journal(lab)
        for name in (mine, theirs):
            j.record("netns", name=name, uts=str(root / lab / "uts" / name))
            j.record("netns-made", name=name, net=[1, 2, 3], uts=[1, 2, 3])
        open(netns.netns_path(mine), "x").close()   # the mount point mount(2) never got to mount on
        assert apply.destroy(lab) == [mine]
        assert not os.path.exists(netns.netns_path(mine))
        assert os.path.exists(netns.netns_path(theirs))
    finally:
        for name in (mine, theirs):
            if os.path.exists(netns.netns_path(name)):
                os.unlink(netns.netns_path(name))   # this test's own files
        j.close()
        shutil.rmtree(root / lab, ignore_errors=True)


def test_a_linked_mount_point_left_by_a_crash_is_removed_by_its_inode(root):
    """Mount points are hard links of one unnamed inode the journal records (netns.MountPoints).
    A crash between the link and the mount leaves a bare link: `down` knows it by that inode,
    and leaves an empty file of somebody else's, made at the same moment, alone."""
    from lab.engine import apply, netns
    from lab.engine.journal import Journal
    lab = f"lnk-{os.urandom(3).hex()}"
    mine, theirs = f"{lab}-node1", f"{lab}-node2"
    j = Journal(lab)
    points = netns.MountPoints(lambda dev, ino: j.record("mountpoint", dev=dev, ino=ino))
    try:
        for name in (mine, theirs):
            j.record("netns", name=name, uts=str(root / lab / "uts" / name))
            j.record("netns-made", name=name, net=[1, 2, 3], uts=[1, 2, 3])
        points.make(netns.netns_path(mine))          # linked; the mount never happened
        with pytest.raises(FileExistsError):
            points.make(netns.netns_path(mine))      # a name is never taken twice
        time.sleep(2.2)
        os.rename(netns.netns_path(mine), netns.netns_path(mine) + ".x")   # a later ctime, so the
        os.rename(netns.netns_path(mine) + ".x", netns.netns_path(mine))   # ctime rule cannot save it
        assert os.stat(netns.netns_path(mine)).st_ctime > time.time() - 1
        open(netns.netns_path(theirs), "x").close()  # another program's empty file, made now
        assert apply.destroy(lab) == [mine]
        assert not os.path.exists(netns.netns_path(mine))
        assert os.path.exists(netns.netns_path(theirs))
    finally:
        points.close()
        for name in (mine, theirs):
            if os.path.exists(netns.netns_path(name)):
                os.unlink(netns.netns_path(name))   # this test's own files
        j.close()
        shutil.rmtree(root / lab, ignore_errors=True)
