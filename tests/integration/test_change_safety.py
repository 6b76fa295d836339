"""Safe under change: a change of a running lab (apply, delete, scale, a node joining) killed with SIGKILL at any
of its crash points leaves a lab that the next command finds cut short, finishes and reports; the
lab is then exactly what the change asked for (its pods, their addresses, their namespaces and
every kernel object of its plan, nothing more), `check` passes, and `down` leaves nothing. A
rollout, a change per step, killed in any step is at a step for the next command, and carried on.

Also: a change the kernel refuses half way is undone (and a crash while undoing it is finished by
undoing); two changes at once are made one after the other, the second from the lab the first
left; a Deployment scaled beyond its nodes' pod CIDRs leaves the pods that got no address Pending
with host-local's reason, and the rest of the cluster working.
"""
from __future__ import annotations

import os
import secrets
import select
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
from labcheck import diff_root_state, kernel_objects, planned_objects, root_netns_state
from reliab import lab_agent_processes, mounts, podlab, root, run, start  # noqa: F401  (root is a fixture)

from lab import api, apply_cli, check, naming, record, state, workloads
from lab.change import plan_change

NAME = f"cs-{secrets.token_hex(2)}"   # one name for the module: pod names and addresses repeat run to run
CLUSTER = """\
design: kindnet
nodes: [node1, node2]
pods:
  - {name: client, node: node1, image: busybox}
deployments:
  - {name: web, replicas: 2, image: nginx}
services:
  - {name: web, selector: {app: web}, ports: [{port: 80}]}
"""
POD = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: {name}\nspec:\n  containers:\n" \
      "  - name: {name}\n    image: nginx\n"
FIGURES: dict[str, object] = {}


@pytest.fixture(scope="module")
def files(tmp_path_factory, root):
    d = tmp_path_factory.mktemp("changes")
    (d / "cluster.yaml").write_text(CLUSTER)
    (d / "three-nodes.yaml").write_text(CLUSTER.replace("[node1, node2]", "[node1, node2, node3]"))
    for pod in ("nginx-pod", "extra", "one", "two"):
        (d / f"{pod}.yaml").write_text(POD.format(name=pod))
    before = root_netns_state()
    yield d
    if (root / NAME).exists():
        podlab("down", NAME)
    assert not diff_root_state(before, root_netns_state())


def fresh(files: Path, text: str | None = None) -> api.Lab:
    path = files / "cluster.yaml"
    if text is not None:
        path = files / "other.yaml"
        path.write_text(text)
    return api.up(api.load_topology(str(path), NAME))


def pods_of(lab: api.Lab) -> dict[str, tuple[str, str]]:
    return {p.name: (p.node, str(p.ip)) for p in lab.addresses.pods}


def ours(foreign: frozenset[str] = frozenset()) -> set[str]:
    """The network namespaces of this module's lab that exist (its names all start with NAME-)."""
    return {n for n in os.listdir("/run/netns") if n.startswith(f"{NAME}-") and n not in foreign}


def consistent(foreign: frozenset[str] = frozenset()) -> api.Lab:
    """The lab is whole: no change pending, exactly the namespaces and kernel objects its plan has,
    the agent serving exactly its pods, and `check` passing."""
    assert not record.change_pending(state.lab_dir(NAME))
    lab = api.Lab(NAME)
    want = planned_objects(lab)
    assert ours(foreign) == set(want)
    assert kernel_objects(set(want)) == want
    assert set(workloads.read_status(NAME).get("pods", {})) == {p.name for p in lab.addresses.pods}
    failed = [r for r in check.run(lab) if not r.passed]
    assert not failed, failed[:3]
    return lab


def down_leaves_nothing(foreign: frozenset[str] = frozenset()) -> None:
    code, _, err = podlab("down", NAME)
    assert code == 0, err
    problems = []
    if ours(foreign):
        problems.append(f"namespaces left: {sorted(ours(foreign))}")
    lab_dir = str(state.lab_dir(NAME))
    left = [m for m in mounts() if m.startswith(lab_dir) or (m.startswith(f"/run/netns/{NAME}-")
                                                              and m[len("/run/netns/"):] not in foreign)]
    if left:
        problems.append(f"mounts left: {left[:4]}")
    if lab_agent_processes(NAME):
        problems.append(f"agent left: {lab_agent_processes(NAME)}")
    if state.lab_dir(NAME).exists() or state.lock_path(NAME).exists():
        problems.append("state directory or lock file left")
    assert not problems, problems


def web_pods(lab: api.Lab) -> list[str]:
    return sorted(p.name for p in lab.topology.pods if p.deployment == "web")


# Each change, and the crash points to kill it at (by name: the first point of that name in a run
# of the change; the scale passes every kind of point a change has).
CHANGES = {
    "scale": (lambda lab, f: ["scale", "deployment", "web", "--replicas", "4"],
              ["change intent written", "journal change", "pods let go", "journal netns x2", "journal netns-made",
               "netns mounted", "netlink batch", "files written", "new pods served",
               "record topology.yaml written", "record allocation.json written", "change ended"]),
    "delete a Deployment's pod": (lambda lab, f: ["delete", "pod", web_pods(lab)[0]],
                                  ["journal netns-removed", "journal mountpoint", "netlink batch",
                                   "new pods served"]),
    "apply a Pod": (lambda lab, f: ["apply", "-f", str(f / "nginx-pod.yaml")],
                    ["journal netns-made", "files written"]),
    "delete a Pod": (lambda lab, f: ["delete", "pod", "client"], ["pods let go", "record allocation.json written"]),
    "a node joins": (lambda lab, f: ["apply", "-f", str(f / "three-nodes.yaml")],
                     ["netns mounted", "netlink batch", "record topology.yaml written"]),
}


def test_a_change_killed_at_any_point_is_finished_by_the_next_command(files):
    started = time.monotonic()
    tried = []
    for what, (argv, wanted) in CHANGES.items():
        lab = fresh(files)
        args = [*argv(lab, files), "--lab", NAME]
        log = files / f"{what}.points"
        log.unlink(missing_ok=True)
        r = run(args, state.ROOT, {"PODLAB_CRASH_LOG": str(log)})
        assert r.returncode == 0, r.stderr
        after = pods_of(api.Lab(NAME))
        points = [line.split(" ", 1)[1] for line in log.read_text().splitlines()]
        down_leaves_nothing()
        missing = [p for p in wanted if p not in points]
        assert not missing, f"{what}: no crash point {missing} in {points}"
        for i, point in enumerate(wanted):
            k = points.index(point) + 1
            lab = fresh(files)
            before = pods_of(lab)
            r = run(args, state.ROOT, {"PODLAB_CRASH_AT": str(k)})
            assert r.returncode == -signal.SIGKILL, f"{what} at {k} ({point}): {r.returncode} {r.stderr}"
            cut_short = point not in ("change ended", "journal change-done")
            assert record.change_pending(state.lab_dir(NAME)) == cut_short
            # A reader sees the lab as it was until the change is finished.
            assert pods_of(api.Lab(NAME)) == (before if cut_short else after)
            if i % 2 == 0:    # the next command reads the lab ...
                r = run(["get", "pods", "-A", "--lab", NAME, "-o", "wide"], state.ROOT)
                assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
                assert ("was cut short; completing it" in r.stderr) == cut_short, r.stderr
                assert all(pod in r.stdout for pod in after), r.stdout
                expect = after
            else:             # ... or changes it
                r = run(["apply", "-f", str(files / "extra.yaml"), "--lab", NAME], state.ROOT)
                assert r.returncode == 0 and "pod/extra created" in r.stdout, r.stdout + r.stderr
                assert ("was cut short; completing it" in r.stdout + r.stderr) == cut_short, r.stdout + r.stderr
                expect = {**after, "extra": pods_of(api.Lab(NAME))["extra"]}
            lab = consistent()
            assert pods_of(lab) == expect, f"{what} killed at {k} ({point})"
            down_leaves_nothing()
            tried.append(f"{what}: {point}")
    assert len(tried) >= 10
    FIGURES["crash points"] = len(tried)
    FIGURES["seconds"] = round(time.monotonic() - started, 1)


# A rollout (2 replicas, maxSurge 1 and maxUnavailable 0 from the 25% defaults) is five changes:
# the template recorded (its ReplicaSet has no pods yet), a new pod, an old one gone, a new one, the
# last old one gone. Killed at these points of them: (change, point), change 0 the first.
ROLLOUT_KILLS = [(0, "record topology.yaml written"), (1, "journal netns-made"), (1, "netlink batch"),
                 (1, "change ended"), (2, "pods let go"), (2, "journal netns-removed"), (3, "netns mounted"),
                 (3, "new pods served"), (3, "journal change-done"), (4, "pods let go"),
                 (4, "record allocation.json written")]
ROLLOUT_STATES = [(2, 0), (2, 1), (1, 1), (1, 2), (0, 2)]     # (old, new) web pods between the changes


def _generations(lab: api.Lab, old_hash: str) -> tuple[int, int]:
    pods = web_pods(lab)
    return sum(p.split("-")[1] == old_hash for p in pods), sum(p.split("-")[1] != old_hash for p in pods)


def test_a_rollout_killed_at_any_step_is_finished_or_carried_on_by_the_next_command(files):
    """`apply` of a Deployment with another image rolls it in steps, each a change of its own;
    SIGKILLed in any of them, the next command that reads the lab finds it at a step (the one cut
    short completed), both generations running and listed, `check` passing; `rollout status` (or
    the next command that changes the lab) carries the rollout on to the end: the same new pods as
    a rollout never killed. `down` leaves nothing."""
    (files / "rolled.yaml").write_text(CLUSTER.replace("image: nginx}", "image: nginx:1.25}"))
    args = ["apply", "-f", str(files / "rolled.yaml"), "--lab", NAME]
    lab = fresh(files)
    old = pods_of(lab)
    old_hash = web_pods(lab)[0].split("-")[1]
    log = files / "rollout.points"
    log.unlink(missing_ok=True)
    r = run(args, state.ROOT, {"PODLAB_CRASH_LOG": str(log)})
    assert r.returncode == 0 and 'deployment "web" successfully rolled out' in r.stdout, r.stdout + r.stderr
    rolled = web_pods(api.Lab(NAME))
    assert len(rolled) == 2 and not set(rolled) & set(old)
    points = [line.split(" ", 1)[1] for line in log.read_text().splitlines()]
    down_leaves_nothing()
    starts = [i for i, p in enumerate(points) if p == "change intent written"]
    assert len(starts) == 4, points                     # four steps after the template's own change
    bounds = [0, *starts, len(points)]
    tried = []
    for i, (change, point) in enumerate(ROLLOUT_KILLS):
        k = points.index(point, bounds[change], bounds[change + 1]) + 1
        fresh(files)
        r = run(args, state.ROOT, {"PODLAB_CRASH_AT": str(k)})
        assert r.returncode == -signal.SIGKILL, f"{change}/{point} at {k}: {r.returncode} {r.stderr}"
        cut_short = record.change_pending(state.lab_dir(NAME))
        assert cut_short == (change > 0 and point not in ("change ended", "journal change-done"))
        if i % 2 == 0:    # the next command reads the lab: it is at a step, both generations listed ...
            r = run(["get", "pods", "--lab", NAME], state.ROOT)
            assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
            assert ("was cut short; completing it" in r.stderr) == cut_short, r.stderr
            lab = consistent()
            assert _generations(lab, old_hash) in ROLLOUT_STATES, web_pods(lab)
            assert all(pod in r.stdout for pod in web_pods(lab))
            r = run(["rollout", "status", "deployment", "web", "--lab", NAME], state.ROOT)   # ... then goes on
            assert r.returncode == 0 and r.stdout.rstrip().endswith('deployment "web" successfully rolled out'), \
                r.stdout + r.stderr
        else:             # ... or changes it, and carries the rollout on
            r = run(["apply", "-f", str(files / "extra.yaml"), "--lab", NAME], state.ROOT)
            assert r.returncode == 0 and "pod/extra created" in r.stdout, r.stdout + r.stderr
            assert ("was cut short; completing it" in r.stdout + r.stderr) == cut_short, r.stdout + r.stderr
        lab = consistent()
        assert web_pods(lab) == rolled, f"killed at {change}/{point}"
        assert not {ip for pod, (_, ip) in pods_of(lab).items() if pod in rolled} & {ip for _, ip in old.values()}
        down_leaves_nothing()
        tried.append(f"{change}: {point}")
    assert len(tried) >= 10
    FIGURES["rollout crash points"] = len(tried)


def test_a_change_the_kernel_refuses_half_way_is_undone_and_a_crash_while_undoing_is_finished(files):
    """Replacing a Deployment's pod: its namespace goes, then the replacement's name turns out taken
    (another program made a namespace of that name meanwhile): the change is undone, the pod that
    went is back with its address, the other program's namespace untouched. Killed while undoing,
    the next command finishes the undoing."""
    lab = fresh(files)
    before = pods_of(lab)
    victim = web_pods(lab)[0]
    replacement = plan_change(lab.plan, replace(apply_cli._with_pods(lab, [], {victim}, "test"), name=NAME)).added[0]
    taken = naming.netns_name(NAME, replacement)
    subprocess.run(["ip", "netns", "add", taken], check=True)
    foreign = frozenset({taken})
    try:
        log = files / "undo.points"
        log.unlink(missing_ok=True)
        r = run(["delete", "pod", victim, "--lab", NAME], state.ROOT, {"PODLAB_CRASH_LOG": str(log)})
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert f"network namespace {taken} already exists" in r.stderr and "it was undone" in r.stderr, r.stderr
        assert pods_of(consistent(foreign)) == before
        points = [line.split(" ", 1)[1] for line in log.read_text().splitlines()]
        undo = points.index("change undo written")
        assert "journal netns-removed" in points[:undo] and "netns mounted" in points[undo:]
        for point in ("change undo written", "netns mounted", "record allocation.json written"):
            k = points.index(point, undo) + 1
            r = run(["delete", "pod", victim, "--lab", NAME], state.ROOT, {"PODLAB_CRASH_AT": str(k)})
            assert r.returncode == -signal.SIGKILL, r.stderr
            r = run(["get", "pods", "--lab", NAME], state.ROOT)
            assert r.returncode == 0 and "was cut short; undoing it" in r.stderr, r.stderr
            assert pods_of(consistent(foreign)) == before
        assert subprocess.run(["ip", "netns", "pids", taken]).returncode == 0    # still there, still theirs
        down_leaves_nothing(foreign)
        assert taken in os.listdir("/run/netns")
    finally:
        subprocess.run(["ip", "netns", "del", taken], check=False)   # this test's own namespace


def _line_with(proc: subprocess.Popen, text: str, timeout: float = 30) -> str:
    """Read proc's stdout until a line containing `text` (the process keeps running)."""
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
        if text in line:
            return seen
    raise AssertionError(f"no {text!r} from {proc.args}: {seen}")


def test_two_changes_at_once_wait_for_each_other_and_both_are_made(files):
    """Two `podlab apply` of different pods to one lab while a third podlab holds its lock: both wait
    their turn, then both pods are there (the second change is planned from the lab the first one
    left, so it does not undo it), one change after the other in the journal."""
    lab = fresh(files)
    before = pods_of(lab)
    env = {"PYTHONUNBUFFERED": "1"}
    with state.locked(NAME):
        procs = [start(["apply", "-f", str(files / f"{pod}.yaml"), "--lab", NAME], state.ROOT, env)
                 for pod in ("one", "two")]
        for p in procs:
            _line_with(p, "waiting for another podlab to finish changing it")
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, out + err
    lab = consistent()
    now = pods_of(lab)
    assert set(now) == set(before) | {"one", "two"} and {k: now[k] for k in before} == before
    from lab.engine.journal import Journal
    kinds = [e["kind"] for e in Journal(NAME).entries() if e["kind"] in ("change", "change-done")]
    assert kinds == ["change", "change-done"] * 2
    down_leaves_nothing()


SMALL = CLUSTER.replace("nodes:", "network: {nodeCIDRMaskSize: 28}\nnodes:")


def test_scaled_beyond_its_nodes_pod_cidrs_the_pods_without_an_address_are_pending_and_the_rest_works(files):
    """A /28 per node: 14 addresses less the gateway = 13 pods a node. Scaled to 30 replicas, the
    pods that get no address wait in ContainerCreating with host-local's reason (as a kubelet's
    FailedCreatePodSandBox event gives it); the command says so and fails; everything else is made
    and works. A pod deleted frees an address: the next change gives it to a waiting pod."""
    fresh(files, SMALL)
    r = run(["scale", "deployment", "web", "--replicas", "30", "--lab", NAME], state.ROOT)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "Pending" in r.stderr and "no IP addresses available in range set: 10.244.0.1-10.244.0.14" in r.stderr \
        and "the rest of the change was made" in r.stderr, r.stderr
    lab = consistent()
    assert len(lab.addresses.pods) == 2 * 13 and {p.node for p in lab.pending} == {"node1", "node2"}
    waiting = {p.name for p in lab.pending}
    assert len(waiting) == 32 - 26       # 30 replicas, client and the DNS pod: 32 pods for 26 addresses
    code, out, err = podlab("get", "pods", "--lab", NAME, "-o", "wide")
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert all(rows[p][2] == "ContainerCreating" and rows[p][5] == "<none>" for p in waiting), out
    assert all(f"pod/{p} on" in err for p in waiting) and "FailedCreatePodSandBox" in err, err
    assert all(rows[p.name][2] == "Running" for p in lab.addresses.pods if not p.name.startswith("kube-dns")), out
    # The Service answers from the pods that run (the ClusterIP is probed by check above too).
    code, out, _ = podlab("exec", "--lab", NAME, "client", "--", "wget", "-qO-", "-T", "3",
                          "http://web.default.svc.cluster.local/")
    assert code == 0 and "web-" in out
    # client's address freed on node1: a pod waiting there gets it.
    r = run(["delete", "pod", "client", "--lab", NAME], state.ROOT)
    assert "pod/client deleted" in r.stdout and " created (" in r.stdout, r.stdout + r.stderr
    assert r.returncode == 0, r.stderr      # the pods still waiting were waiting before: not this change's failure
    lab = consistent()
    assert len(lab.addresses.pods) == 26 and len(lab.pending) == len(waiting) - 1
    r = run(["scale", "deployment", "web", "--replicas", "3", "--lab", NAME], state.ROOT)
    assert r.returncode == 0, r.stderr
    lab = consistent()
    assert not lab.pending and len(web_pods(lab)) == 3
    down_leaves_nothing()


@pytest.fixture(scope="module", autouse=True)
def figures():
    yield
    print(f"\nchange safety figures: {FIGURES}")
