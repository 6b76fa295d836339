"""The pieces of podlab's cleanup guarantees that need no root: name guards, the journal's
ownership records, locks, crash points, kernel limits and features, restart reporting."""
from __future__ import annotations

import fcntl
import io
import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab import api, clean, cli, faults, render, state, topology, workloads
from lab.engine import features, netns
from lab.engine.journal import Journal, ns_id
from lab.errors import PodlabError, TopologyError
from lab.ops import CreateNamespace, CreateVxlan


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setattr(state, "ROOT", tmp_path / "state")
    return tmp_path / "state"


HOSTILE = ["../x", "..", ".", "-rf", "a b", "x/y", "", "a" * 300, "ünï", "lab\n", "/etc", "x\0y", "--all", "A"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_lab_names_never_reach_a_path(name):
    with pytest.raises(PodlabError, match="invalid lab name") as caught:
        state.lab_dir(name)
    assert isinstance(caught.value, ValueError)       # callers that caught ValueError still do
    assert len(str(caught.value).splitlines()) == 1 and len(str(caught.value)) < 250
    with pytest.raises(PodlabError):
        state.lock_path(name)


@given(st.text(max_size=80))
@settings(max_examples=300)
def test_any_lab_name_is_refused_or_stays_inside_the_state_directory(name):
    try:
        d = state.lab_dir(name)
    except PodlabError:
        return
    assert d.parent == state.ROOT and d.name == name and "/" not in name and not name.startswith("-")


@given(st.text(max_size=40))
@settings(max_examples=200)
def test_namespace_names_cannot_point_outside_run_netns(name):
    try:
        path = netns.netns_path(name)
    except ValueError:
        return
    assert os.path.dirname(path) == netns.NETNS_DIR and os.path.basename(path) == name


def test_the_journal_ignores_what_it_did_not_write_whole(root):
    j = Journal("lab1")
    j.record("netns", name="lab1-a", uts="/x")
    j.record("netns-made", name="lab1-a", net=[4, 100, 5], uts=[4, 101, 5])
    with open(j.path, "a") as f:
        f.write('{"kind": "netns-made", "name": "lab1-b", "net": [4, "x", 1]}\n')   # malformed identity
        f.write('{"kind": "netns-made", "name": 7, "net": [4, 1, 1]}\n')           # not a name
        f.write('{"kind": "process", "pid": -1}\n{"kind": "process", "pid": "1"}\n')
        f.write('{"kind": "netns", "name": "lab1-c"')                              # cut short by a crash
    assert list(j.made_namespaces()) == ["lab1-a"]
    assert ns_id(j.made_namespaces()["lab1-a"]) == (4, 100, 5)
    assert j.processes() == []
    assert [e["name"] for e in j.of_kind("netns")] == ["lab1-a"]
    assert oct(os.stat(j.path).st_mode & 0o777) == "0o600"


def test_crash_points_do_nothing_unless_asked():
    assert not faults._ACTIVE
    faults.point("anything")   # returns: no SIGKILL


def test_lock_is_exclusive_and_goes_with_the_lab(root):
    with state.locked("lab1"):
        with pytest.raises(state.LabBusy, match="is busy"):
            with state.locked("lab1"):
                pass
        assert clean.lock_held("lab1")
    assert not state.lock_path("lab1").exists(), "a lab without a directory keeps no lock file"
    state.ensure_lab_dir("lab2")
    with state.locked("lab2"):
        pass
    assert state.lock_path("lab2").exists(), "a lab that exists keeps its lock file"


def test_a_lock_file_unlinked_by_its_last_holder_is_not_trusted(root):
    """The race the unlink allows: B opened the old file before A unlinked it. B must not
    think it holds the lock while C holds the new file's."""
    state.ensure_root()
    path = state.lock_path("lab1")
    old = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.unlink(path)                    # A leaves; B still has `old` open
    fcntl.flock(old, fcntl.LOCK_EX)    # ... and can lock the orphaned file
    with state.locked("lab1"):          # C takes the real one, undisturbed
        with pytest.raises(state.LabBusy):
            with state.locked("lab1"):
                pass
    os.close(old)


def test_stale_locks_and_unfinished_labs(root):
    state.ensure_root()
    (root / ".gone.lock").write_text("")
    (root / ".bad name.lock").write_text("")
    state.ensure_lab_dir("half")
    assert clean.stale_locks() == ["gone"]
    assert [lab for lab, _ in clean.unfinished()] == ["half"]
    assert "left half-built" in clean.unfinished()[0][1]


def test_state_root_is_tightened_to_0700(root):
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    state.ensure_lab_dir("lab1")
    assert oct(root.stat().st_mode & 0o777) == "0o700"
    assert oct((root / "lab1").stat().st_mode & 0o777) == "0o700"
    with state.private_files():
        (root / "lab1" / "f").write_text("x")
    assert oct((root / "lab1" / "f").stat().st_mode & 0o777) == "0o600"


def test_process_identity():
    assert isinstance(workloads.process_start(os.getpid()), int)
    assert workloads.process_start(2**22 + 12345) is None


# --------------------------------------------------------------------------- kernel limits
def _problems(text: str) -> str:
    with pytest.raises(TopologyError) as caught:
        topology.loads(text)
    return str(caught.value)


def test_a_bridge_holds_at_most_1024_ports():
    big = "network: {podCIDR: 10.128.0.0/9, nodeCIDRMaskSize: 20}\nnodes: [n1, n2]\n"
    ok = topology.loads(big + "deployments: [{name: w, replicas: 1023, image: busybox, nodes: [n1]}]\n")
    assert len(ok.pods) == 1024       # and the cluster DNS pod on n1
    text = _problems(big + "deployments: [{name: w, replicas: 1024, image: busybox, nodes: [n1]}]\n")
    assert "1025 pods (the cluster DNS pod among them; 'dns: false' turns it off)" in text
    big = "dns: false\n" + big
    ok = topology.loads(big + "deployments: [{name: w, replicas: 1024, image: busybox, nodes: [n1]}]\n")
    assert len(ok.pods) == 1024
    text = _problems(big + "deployments: [{name: w, replicas: 1025, image: busybox, nodes: [n1]}]\n")
    assert "nodes[0]" in text and "BR_MAX_PORTS" in text and "1025 pods" in text and "nothing was created" in text
    text = _problems("mode: l2\n" + big + "deployments: [{name: w, replicas: 1024, image: busybox, nodes: [n1]}]\n")
    assert "1025 ports" in text and "and the uplink" in text
    # hostNetwork pods take no bridge port
    topology.loads(big + "deployments: [{name: w, replicas: 1024, image: busybox, nodes: [n1]}, "
                         "{name: h, replicas: 5, image: busybox, hostNetwork: true, nodes: [n1]}]\n")


def test_the_underlay_switch_holds_at_most_1024_ports():
    head = "network: {podCIDR: 10.128.0.0/9, nodeCIDRMaskSize: 24, nodeSubnet: 172.16.0.0/16}\nnodes: 1000\n"
    topology.loads(head + "outside: [" + ", ".join(f"o{i}" for i in range(24)) + "]\n")
    text = _problems(head + "outside: [" + ", ".join(f"o{i}" for i in range(25)) + "]\n")
    assert "outside" in text and "1025 ports on the underlay switch" in text and "BR_MAX_PORTS" in text


def test_interface_names_longer_than_the_kernel_allows_are_refused():
    assert "IFNAMSIZ" in _problems("nodes: [node1]\nnetwork: {bridge: averyverylongbridge}\n")
    assert "15 characters" in _problems("nodes: [averyverylongnodename]\n")


def test_features_a_plan_needs_and_the_message_when_missing(monkeypatch):
    ops = [CreateNamespace("a-n", "n", "node"),
           CreateVxlan("a-n", "flannel.1", 1, __import__("ipaddress").IPv4Address("192.168.0.1"), "eth0", 8472,
                       1450, "02:00:00:00:00:01")]
    assert features.needed(ops) == ["vxlan"]
    assert features.needed(ops[:1]) == []
    monkeypatch.setattr(features, "_cache", {"vxlan": False})
    with pytest.raises(PodlabError) as caught:
        features.require(ops)
    message = str(caught.value)
    assert "lacks vxlan" in message and "modprobe vxlan" in message and "mode: l3" in message
    assert "Nothing was created" in message
    assert "netem" in features.missing_message(["netem"]) and "sch_netem" in features.missing_message(["netem"])


# --------------------------------------------------------------------------- restarts
def test_a_dead_agent_keeps_the_restarts_counted_so_far():
    status = {"containers": {"a": {"state": "Running", "restarts": 3}, "b": {"state": "Waiting", "restarts": 2}}}
    assert render._pod_state(status, 2, agent_alive=False) == ("0/2", "Unknown", 5)
    assert render._pod_state(status, 2, agent_alive=True)[1:] == ("CrashLoopBackOff", 5)
    assert render._pod_state({"containers": "junk"}, 1, agent_alive=False) == ("0/1", "Unknown", 0)
    message = render.agent_down("lab1", {"pid": 1234})
    assert "pid 1234" in message and "sudo podlab restart-agent lab1" in message


def test_a_new_agent_carries_restart_counts_over(root):
    from lab.workloads.agent import Agent
    spec = workloads.parse_spec({"lab": "lab1", "pods": [
        {"pod": "p", "netns": "lab1-p", "uts": None,
         "containers": [{"name": "c", "command": ["true"]}, {"name": "web", "workload": "http"}]}]})
    state.ensure_lab_dir("lab1")
    previous = {"pid": 1, "lab": "lab1", "agentRestarts": 1,
                "pods": {"p": {"containers": {"c": {"restarts": 4}, "web": {"restarts": 0}}}}}
    workloads.write_json_atomic(state.lab_dir("lab1") / "agent.json", previous)
    agent = Agent(spec)
    assert agent.agent_restarts == 2
    assert {n: c.restarts for n, c in agent.pods[0].containers.items()} == {"c": 5, "web": 1}
    assert agent.status()["agentRestarts"] == 2
    workloads.write_json_atomic(state.lab_dir("lab1") / "agent.json", {"lab": "other", "pid": 1})
    assert Agent(spec).agent_restarts == 0


def test_reliability_commands_need_root(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    for argv in (["clean"], ["clean", "--dry-run"], ["restart-agent", "lab1"]):
        out, err = io.StringIO(), io.StringIO()
        assert cli.main(argv, out, err) == 1
        assert err.getvalue().count("\n") == 1 and "needs root" in err.getvalue()
        assert f"sudo podlab {argv[0]}" in err.getvalue()


def test_clean_json_output_shape(root, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["clean", "--dry-run", "-o", "json"], out, err) == 0
    data = json.loads(out.getvalue())
    assert data == {"dryRun": True, "orphans": [], "busy": [], "healthy": [], "staleLocks": [], "failed": []}


def test_a_reload_of_a_spec_it_cannot_read_changes_nothing_and_says_so(root, tmp_path, capsys):
    """SIGHUP with a spec that is not JSON: the agent keeps its pods and logs why (its `log` must not
    be shadowed by a local of the same name, which made this an UnboundLocalError)."""
    import asyncio

    from lab.workloads.agent import Agent
    spec = workloads.parse_spec({"lab": "lab1", "pods": [
        {"pod": "p", "netns": "lab1-p", "uts": None, "containers": [{"name": "web", "workload": "http"}]}]})
    state.ensure_lab_dir("lab1")
    broken = tmp_path / "spec.json"
    broken.write_text("{not json")
    agent = Agent(spec, spec_path=str(broken))
    asyncio.run(agent.reload())
    assert [p.spec.pod for p in agent.pods] == ["p"]
    out = capsys.readouterr().out
    assert f"reload: {broken}:" in out and "nothing changed" in out
