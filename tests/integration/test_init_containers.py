"""Init containers and emptyDir volumes, for real: seed 001's Deployment manifest, unchanged, serves
the page its busybox init container wrote into the pod's emptyDir; a failing init container keeps
the pod in Init:Error / Init:CrashLoopBackOff with its container never started; a pod's volumes go
with the pod and with the lab; nothing is made on the host's filesystem."""
from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from labcheck import assert_no_residue

from lab import api, cli, render, state, workloads
from lab.workloads import volumes

SEED_001_DEPLOYMENT = Path(__file__).parent / "manifests" / "seed_001_nginx_deployment.yaml"
SERVICE = """apiVersion: v1
kind: Service
metadata:
  name: nginx-service
spec:
  selector:
    app: nginx
  ports:
  - name: name-of-service-port
    protocol: TCP
    port: 80
    targetPort: http-web-svc
"""
FAILING = """apiVersion: v1
kind: Pod
metadata:
  name: broken
spec:
  initContainers:
  - name: migrate
    image: busybox
    command: ['sh', '-c', 'echo trying >> /work/tries; exit 3']
    volumeMounts:
    - name: work
      mountPath: /work
  containers:
  - name: web
    image: nginx
    ports:
    - containerPort: 80
  volumes:
  - name: work
    emptyDir: {}
---
apiVersion: v1
kind: Pod
metadata:
  name: slow
spec:
  initContainers:
  - name: wait
    image: busybox
    command: ['sleep', '1.5']
  containers:
  - name: web
    image: nginx
"""
# Paths the host does not have (checked below): made only in each container's own mount namespace.
SIDECARS = """apiVersion: v1
kind: Pod
metadata:
  name: sidecars
spec:
  initContainers:
  - name: write
    image: busybox
    command: ['sh', '-c', 'hostname > /podlab-test-cache/name && echo data > /usr/share/podlab-test/x/f']
    volumeMounts:
    - {name: cache, mountPath: /podlab-test-cache}
    - {name: data, mountPath: /usr/share/podlab-test/x}
  containers:
  - name: reader
    image: busybox
    command: ['sh', '-c', 'cat /srv/podlab-test/name /usr/share/podlab-test/x/f; echo more > /srv/podlab-test/no && echo wrote; sleep 3600']
    volumeMounts:
    - {name: cache, mountPath: /srv/podlab-test, readOnly: true}
    - {name: data, mountPath: /usr/share/podlab-test/x}
  volumes:
  - {name: cache, emptyDir: {}}
  - {name: data, emptyDir: {}}
"""
HOST_PATHS = ["/usr/share/nginx", "/podlab-test-cache", "/srv/podlab-test", "/usr/share/podlab-test"]
LAB = "initc"


def podlab(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return cli.main(list(args), out, err), out.getvalue(), err.getvalue()


def apply(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    code, out, err = podlab("apply", "--lab", LAB, "-f", str(path))
    assert code == 0, err
    return err


def statuses() -> dict[str, str]:
    lab = api.Lab(LAB)
    return {r["name"]: r["status"] for r in render.pod_rows(lab, workloads.read_status(LAB), workloads.agent_alive(LAB))}


def wait_running(names: list[str], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = statuses()
        if all(now.get(n) == "Running" for n in names):
            return
        time.sleep(0.1)
    raise AssertionError(f"not Running after {timeout:g} s: {statuses()}")


def fetch(url: str) -> tuple[int, str]:
    code, out, _ = podlab("exec", "--lab", LAB, "client", "--", "wget", "-qO-", "-T", "3", url)
    return code, out


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    assert not any(Path(p).exists() for p in HOST_PATHS), "the test needs paths this host lacks"
    path = tmp_path_factory.mktemp("init") / "cluster.yaml"
    path.write_text("design: flannel\nnodes: [node1, node2]\npods:\n  - {name: client, node: node1, image: busybox}\n"
                    "services: []\n")
    made = api.up(api.load_topology(str(path), name=LAB))
    names = [op.ns for op in made.plan.ops if hasattr(op, "hostname")]
    try:
        yield LAB
    finally:
        pod_dirs = list((state.lab_dir(LAB) / volumes.PODS).glob("*"))
        api.down(LAB)
        assert pod_dirs and not any(d.exists() for d in pod_dirs)    # the volumes went with the lab
        assert_no_residue(LAB, names)
        assert not any(Path(p).exists() for p in HOST_PATHS), "a mountPath was made on the host"


def test_seed_001s_deployment_serves_the_page_its_init_container_wrote(lab, tmp_path):
    err = apply(tmp_path, "nginx.yaml", SEED_001_DEPLOYMENT.read_text())
    assert "not emulated" not in err, err            # initContainers, volumeMounts, emptyDir: all run
    apply(tmp_path, "service.yaml", SERVICE)
    pods = [p for p in api.Lab(LAB).addresses.pods if p.name.startswith("nginx-")]
    assert len(pods) == 3
    wait_running([p.name for p in pods])
    for pod in pods:
        code, out = fetch(f"http://{pod.ip}/")
        assert code == 0 and out == f"Welcome to the home page of host {pod.name}!\n", out
        # From the file, not the built-in page (which answers any path): nginx's 404 for a missing one.
        index = volumes.volume_dir(LAB, pod.name, "html") / "index.html"
        assert index.read_text() == out
        assert fetch(f"http://{pod.ip}/missing.html")[0] != 0
    served = set()
    for _ in range(10):
        code, out = fetch("http://nginx-service.default.svc.cluster.local/")
        assert code == 0
        served |= {p.name for p in pods if out == f"Welcome to the home page of host {p.name}!\n"}
    assert served, out
    assert not Path("/usr/share/nginx").exists()


def test_exec_runs_in_the_containers_view_with_its_volumes(lab, tmp_path):
    """`podlab exec POD -c nginx -- cat` reads the emptyDir's file at the container's mountPath (the
    host has no /usr/share/nginx); without -c the first container, with kubectl's notice; the exec's
    staging goes with it."""
    if not any(p.name.startswith("nginx-") for p in api.Lab(LAB).addresses.pods):
        apply(tmp_path, "nginx.yaml", SEED_001_DEPLOYMENT.read_text())
    pod = sorted(p.name for p in api.Lab(LAB).addresses.pods if p.name.startswith("nginx-"))[0]
    wait_running([pod])
    page = f"Welcome to the home page of host {pod}!\n"
    code, out, err = podlab("exec", "--lab", LAB, pod, "-c", "nginx", "--", "cat", "/usr/share/nginx/html/index.html")
    assert (code, out, err) == (0, page, "")
    code, out, err = podlab("exec", "--lab", LAB, pod, "--", "cat", "/usr/share/nginx/html/index.html")
    assert (code, out) == (0, page) and err == 'Defaulted container "nginx" out of: nginx, init (init)\n'
    # What the exec writes in the volume, the container serves; its own files stay where they were.
    code, _, err = podlab("exec", "--lab", LAB, pod, "-c", "nginx", "--", "sh", "-c",
                          "echo from-exec > /usr/share/nginx/html/x.html && cat /etc/resolv.conf")
    assert code == 0, err
    assert fetch(f"http://{api.Lab(LAB).addresses.pod(pod).ip}/x.html") == (0, "from-exec\n")
    assert not [p.name for p in (volumes.pod_dir(LAB, pod) / "mounts").iterdir() if ".exec-" in p.name]
    code, _, err = podlab("exec", "--lab", LAB, pod, "-c", "init", "--", "true")
    assert code == 1 and "init container" in err
    code, _, err = podlab("exec", "--lab", LAB, pod, "-c", "nope", "--", "true")
    assert code == 1 and f"container nope is not valid for pod {pod} out of: nginx, init (init)" in err
    assert not Path("/usr/share/nginx").exists()


def test_a_deleted_pods_emptydir_goes_and_its_replacement_writes_its_own(lab, tmp_path):
    if not any(p.name.startswith("nginx-") for p in api.Lab(LAB).addresses.pods):
        apply(tmp_path, "nginx.yaml", SEED_001_DEPLOYMENT.read_text())
    before = {p.name for p in api.Lab(LAB).addresses.pods if p.name.startswith("nginx-")}
    wait_running(sorted(before))
    victim = sorted(before)[0]
    assert volumes.pod_dir(LAB, victim).is_dir()
    code, _, err = podlab("delete", "--lab", LAB, "pod", victim)
    assert code == 0, err
    assert not volumes.pod_dir(LAB, victim).exists()
    now = {p.name: p for p in api.Lab(LAB).addresses.pods if p.name.startswith("nginx-")}
    (new,) = set(now) - before
    wait_running([new])
    assert fetch(f"http://{now[new].ip}/") == (0, f"Welcome to the home page of host {new}!\n")


def test_a_failing_init_container_is_retried_and_the_pods_container_never_starts(lab, tmp_path):
    apply(tmp_path, "failing.yaml", FAILING)
    seen: dict[str, list[str]] = {"broken": [], "slow": []}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for name, status in statuses().items():
            if name in seen and (not seen[name] or seen[name][-1] != status):
                seen[name].append(status)
        time.sleep(0.05)
    assert seen["slow"][0] == "Init:0/1" and seen["slow"][-1] == "Running", seen
    assert "Running" not in seen["broken"] and {"Init:Error", "Init:CrashLoopBackOff"} <= set(seen["broken"]), seen
    status = workloads.read_status(LAB)["pods"]["broken"]
    assert status["initContainers"]["migrate"]["restarts"] >= 1
    assert status["containers"]["web"]["state"] == "Waiting" and status["containers"]["web"]["pid"] is None
    tries = (volumes.volume_dir(LAB, "broken", "work") / "tries").read_text().split()
    assert len(tries) >= 2            # each retry ran, with the same emptyDir
    code, out, _ = podlab("get", "pods", "--lab", LAB)
    assert any(line.split()[:3] in (["broken", "0/1", "Init:Error"], ["broken", "0/1", "Init:CrashLoopBackOff"])
               for line in out.splitlines()), out
    broken = api.Lab(LAB).addresses.pod("broken")
    assert fetch(f"http://{broken.ip}/")[0] != 0        # nothing listens: its nginx never started


def test_containers_share_volumes_at_their_own_mount_paths_read_only_when_asked(lab, tmp_path):
    """Missing mountPaths below / (an overlay of the root filesystem, chroot'ed into) and below
    /usr/share; a read-only mount refuses writes; the host's filesystem gets none of it."""
    apply(tmp_path, "sidecars.yaml", SIDECARS)
    wait_running(["sidecars"])
    log = state.lab_dir(LAB) / "logs" / "sidecars_reader.log"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "data" not in log.read_text():
        time.sleep(0.05)
    lines = log.read_text().splitlines()
    assert lines[:2] == ["sidecars", "data"], lines
    assert "wrote" not in lines and any("Read-only file system" in line for line in lines), lines
    assert not (volumes.volume_dir(LAB, "sidecars", "cache") / "no").exists()
    assert not any(Path(p).exists() for p in HOST_PATHS)


def test_after_the_agent_is_killed_down_still_removes_the_volumes_by_their_records(lab):
    """Last in this module: the fixture's `down` then finds the pods' directories from the journal
    alone (nobody stops the pods), and removes them."""
    import os
    import signal
    pid = workloads.agent_pid(LAB)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and workloads.agent_alive(LAB):
        time.sleep(0.05)
    assert not workloads.agent_alive(LAB)
    assert volumes.recorded(LAB) and all(d.is_dir() for d in volumes.recorded(LAB))
