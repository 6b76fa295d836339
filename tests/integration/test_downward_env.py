"""A container's env from its pod's fields (the downward API), for real, read back with `podlab logs`:
each pod's process sees its own address, its node's name and address, its name; a pod the Deployment
makes again sees its new address. `logs` reads an init container's output too, and --tail."""
from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
from reliab import podlab

from lab import api

CLUSTER = "design: kindnet\nnodes: [node1, node2]\npods:\n  - {name: client, node: node1, image: busybox}\n"
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: who
spec:
  replicas: 2
  selector:
    matchLabels: {app: who}
  template:
    metadata:
      labels: {app: who}
    spec:
      initContainers:
      - name: hello
        image: busybox
        command: ["sh", "-c", "echo first line; echo init on $MY_NODE"]
        env:
        - name: MY_NODE
          valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
      containers:
      - name: app
        image: busybox
        command: ["sh", "-c", "echo ip=$MY_IP host=$MY_HOST node=$MY_NODE name=$MY_NAME; sleep 3600"]
        env:
        - name: MY_IP
          valueFrom: {fieldRef: {fieldPath: status.podIP}}
        - name: MY_HOST
          valueFrom: {fieldRef: {fieldPath: status.hostIP}}
        - name: MY_NODE
          valueFrom: {fieldRef: {apiVersion: v1, fieldPath: spec.nodeName}}
        - name: MY_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
"""


@pytest.fixture(scope="module")
def lab(lab_from_yaml, tmp_path_factory):
    name = lab_from_yaml(CLUSTER, "dw").name
    path = tmp_path_factory.mktemp("downward") / "who.yaml"
    path.write_text(DEPLOYMENT)
    code, out, err = podlab("apply", "--lab", name, "-f", str(path))
    assert code == 0, out + err
    return name


def logged(name: str, *args: str, timeout: float = 10) -> str:
    """The log, once it has a line (the container starts a moment after the change)."""
    deadline = time.monotonic() + timeout
    while True:
        code, out, err = podlab("logs", "--lab", name, *args)
        if out.strip() or time.monotonic() > deadline:
            assert code == 0, err
            return out
        time.sleep(0.1)


def expected(name: str, pod: str) -> str:
    lab = api.Lab(name)
    p = next(p for p in lab.addresses.pods if p.name == pod)
    return f"ip={p.ip} host={lab.addresses.node(p.node).ip} node={p.node} name={pod}\n"


def who(name: str) -> list[str]:
    return sorted(p.name for p in api.Lab(name).topology.pods if p.deployment == "who")


def test_each_pod_sees_its_own_address_node_and_name(lab):
    pods = who(lab)
    assert len(pods) == 2
    for pod in pods:
        assert logged(lab, pod) == expected(lab, pod)
    assert {expected(lab, p).split()[2] for p in pods} == {"node=node1", "node=node2"}


def test_a_pod_made_again_sees_its_new_address(lab):
    old = who(lab)[0]
    old_ip = re.search(r"ip=(\S+)", logged(lab, old))[1]
    code, out, err = podlab("delete", "--lab", lab, "pod", old)
    assert code == 0, out + err
    replacement = next(p for p in who(lab) if f"pod/{p} created" in out)
    assert logged(lab, replacement) == expected(lab, replacement)
    assert f"ip={old_ip} " not in logged(lab, replacement)      # host-local's next address, not the old one


def test_logs_reads_an_init_container_and_the_tail(lab):
    pod = who(lab)[0]
    node = next(p.node for p in api.Lab(lab).topology.pods if p.name == pod)
    assert logged(lab, pod, "-c", "hello") == f"first line\ninit on {node}\n"
    assert logged(lab, pod, "-c", "hello", "--tail", "1") == f"init on {node}\n"
    code, out, err = podlab("logs", "--lab", lab, "deployment/who")
    assert code == 0 and out in {expected(lab, p) for p in who(lab)} and "Found 2 pods, using pod/" in err
    code, out, err = podlab("logs", "--lab", lab, "client")
    assert code == 0 and out == "" and "built-in idle workload" in err
    code, out, err = podlab("logs", "--lab", lab, "node1")
    assert code == 1 and "node1 is a node, not a pod" in err


CRASHING = """\
apiVersion: v1
kind: Pod
metadata:
  name: flaky
spec:
  containers:
  - name: app
    image: busybox
    command: ["sh", "-c", "echo run at $(date +%s%N); exit 1"]
"""


def test_logs_previous_is_the_instance_before_and_tail_is_checked(lab, tmp_path):
    (tmp_path / "flaky.yaml").write_text(CRASHING)
    assert podlab("apply", "--lab", lab, "-f", str(tmp_path / "flaky.yaml"))[0] == 0
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and podlab("logs", "--lab", lab, "flaky", "-p")[0] != 0:
        time.sleep(0.2)
    code, previous, err = podlab("logs", "--lab", lab, "flaky", "-p")
    assert code == 0, err
    current = logged(lab, "flaky")
    assert previous.startswith("run at ") and current.startswith("run at ") and previous != current
    code, _, err = podlab("logs", "--lab", lab, "flaky", "--tail", "-2")
    assert code == 1 and "--tail must be greater than or equal to -1" in err
    assert podlab("logs", "--lab", lab, "flaky", "--tail", "0") == (0, "", "")
    assert podlab("delete", "--lab", lab, "pod", "flaky")[0] == 0
    code, _, err = podlab("logs", "--lab", lab, who(lab)[0], "-p")       # never restarted
    assert code == 1 and 'previous terminated container "app" in pod' in err


def test_logs_follow_ends_when_the_pod_goes(lab):
    pod = who(lab)[-1]
    follow = subprocess.Popen([sys.executable, "-m", "lab", "logs", "--lab", lab, "-f", pod],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert follow.stdout.readline() == expected(lab, pod)
        assert podlab("delete", "--lab", lab, "pod", pod)[0] == 0
        assert follow.wait(5) == 0
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()


@pytest.mark.parametrize("failing", ["node1", "node2"])
def test_a_scaled_down_replicaset_deletes_its_unavailable_pod_first(lab, tmp_path, failing):
    """Two pods, one per node; the one on `failing` crash-loops (its env names its node). Scaled to 1,
    the ReplicaSet deletes that one, whichever is newer."""
    manifest = DEPLOYMENT.replace("name: who", "name: half").replace("app: who", "app: half").replace(
        'command: ["sh", "-c", "echo ip=$MY_IP host=$MY_HOST node=$MY_NODE name=$MY_NAME; sleep 3600"]',
        f'command: ["sh", "-c", "if [ $MY_NODE = {failing} ]; then exit 1; fi; sleep 3600"]')
    (tmp_path / "half.yaml").write_text(manifest)
    assert podlab("apply", "--lab", lab, "-f", str(tmp_path / "half.yaml"))[0] == 0
    try:
        pods = {p.name: p.node for p in api.Lab(lab).topology.pods if p.deployment == "half"}
        assert sorted(pods.values()) == ["node1", "node2"]
        from lab import workloads
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(workloads.ready_pods(workloads.read_status(lab)) & set(pods)) < 1:
            time.sleep(0.1)
        code, out, err = podlab("scale", "--lab", lab, "deployment", "half", "--replicas", "1")
        assert code == 0, out + err
        kept = [p.name for p in api.Lab(lab).topology.pods if p.deployment == "half"]
        assert len(kept) == 1 and pods[kept[0]] != failing
    finally:
        podlab("delete", "--lab", lab, "deployment", "half")
