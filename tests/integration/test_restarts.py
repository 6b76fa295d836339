"""Long-running labs: processes that die are restarted and counted, or shown as failed.

- A command container that keeps exiting is restarted with back-off: `get pods` shows its
  RESTARTS growing and CrashLoopBackOff; `status` sums the restarts.
- The workload agent itself is killed: `status` says AGENT DEAD and what to do, `get pods`
  warns and shows the pods Unknown while keeping their restart counts; `restart-agent`
  brings it back, counts a restart for every container, stops what the dead containers
  left running in the pods and leaves a shell someone opened in a pod alone.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from reliab import Design, lab_agent_processes, podlab, processes_with, residue, root  # noqa: F401  (root is a fixture)

from lab import state

DESIGN = """\
mode: l3
nodes: [node1]
pods:
  - {{name: web, image: nginx}}
  - name: flaky
    containers:
      - {{name: c, image: busybox, command: [sh, -c, "exit 3"]}}
  - name: steady
    containers:
      - {{name: c, image: busybox, command: [sh, -c, "sleep {token} & exec sleep {token2}"]}}
"""


@pytest.fixture(scope="module")
def lab(root, tmp_path_factory):
    d = Design.write(tmp_path_factory.mktemp("topo"), "rst", DESIGN)
    assert podlab("up", str(d.path), "--name", d.name)[0] == 0
    yield d
    if (root / d.name).exists():
        assert podlab("down", d.name)[0] == 0
    assert not residue(d, root)


def pods(lab) -> dict[str, dict]:
    code, out, err = podlab("get", "pods", "-o", "json", "--lab", lab.name)
    assert code == 0, err
    return {p["name"]: p for p in json.loads(out)}


def wait_for(cond, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := cond()):
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_a_crashing_container_is_restarted_and_counted(lab):
    wait_for(lambda: pods(lab)["flaky"]["restarts"] >= 2)       # back-off 1 s, then 2 s
    p = pods(lab)
    assert p["flaky"]["status"] in ("CrashLoopBackOff", "Running")
    assert p["web"]["restarts"] == 0 and p["web"]["status"] == "Running"
    code, out, _ = podlab("get", "pods", "--lab", lab.name)
    row = next(line for line in out.splitlines() if line.startswith("flaky"))
    assert int(row.split()[3]) >= 2, row   # the RESTARTS column
    status = json.loads(podlab("status", "-o", "json")[1])
    assert status[0]["restarts"] >= 2 and status[0]["agent"]


def test_a_dead_agent_is_reported_and_can_be_restarted(lab):
    wait_for(lambda: processes_with(f"sleep {lab.token}"))
    before = pods(lab)
    # A shell someone opened in a pod: not the agent's, it must survive restart-agent.
    shell = subprocess.Popen(["ip", "netns", "exec", f"{lab.name}-steady", "sleep", lab.token2 + "1"])
    try:
        [(agent, _)] = lab_agent_processes(lab.name)
        os.kill(agent, signal.SIGKILL)   # the agent of this test's own lab, by PID
        wait_for(lambda: not lab_agent_processes(lab.name))

        code, out, err = podlab("status")
        assert code == 0 and "DEAD" in out and f"sudo podlab restart-agent {lab.name}" in out, out
        code, out, err = podlab("get", "pods", "--lab", lab.name)
        assert code == 0 and "warning: the workload agent" in err and "restart-agent" in err
        after = pods(lab)
        assert {p["status"] for p in after.values()} == {"Unknown"}
        assert after["flaky"]["restarts"] >= before["flaky"]["restarts"], "restarts counted so far stay visible"

        leftover = [pid for pid, args in processes_with(f"sleep {lab.token}") if args.startswith("sleep")]
        assert leftover, "the container's background child outlived the agent"

        code, out, err = podlab("restart-agent", lab.name)
        assert code == 0 and "restarted" in out, err
        code, _, err = podlab("restart-agent", lab.name)
        assert code == 1 and "is running" in err
        wait_for(lambda: all(p["status"] in ("Running", "CrashLoopBackOff") for p in pods(lab).values()))
        again = pods(lab)
        assert again["web"]["restarts"] == before["web"]["restarts"] + 1
        assert again["steady"]["restarts"] == before["steady"]["restarts"] + 1
        assert all(pid not in [p for p, _ in processes_with(f"sleep {lab.token}")] for pid in leftover), \
            "what the dead container left was stopped"
        assert shell.poll() is None, "a shell someone opened in a pod was killed"
        assert json.loads((state.lab_dir(lab.name) / "agent.json").read_text())["agentRestarts"] == 1
        code, out, _ = podlab("curl", "steady", "web", "--lab", lab.name)
        assert code == 0 and "host web!" in out
    finally:
        if shell.poll() is None:
            shell.send_signal(signal.SIGKILL)   # our own child
        shell.wait()
