"""A lab that changes while it runs: Kubernetes Pod manifests applied, pods deleted, as kubectl does."""
from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from lab import api, check, cli, render, workloads

SEED_004 = {
    "nginx_pod.yaml": "apiVersion: v1\nkind: Pod\nmetadata:\n  name: nginx-pod\n  labels:\n    app: nginx\nspec:\n"
                      "  containers:\n  - name: nginx-container\n    image: nginx\n    ports:\n    - containerPort: 80\n",
    "busybox_pod.yaml": "apiVersion: v1\nkind: Pod\nmetadata:\n  name: busybox\n  labels:\n    app: busybox\nspec:\n"
                        "  containers:\n  - name: busybox\n    image: busybox\n"
                        "    command: ['sh', '-c', 'echo The app is running! && sleep 3600']\n",
}


def podlab(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return cli.main(list(args), out, err), out.getvalue(), err.getvalue()


@pytest.fixture(params=["kindnet", "flannel", "calico"])
def lab(request, tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text(f"design: {request.param}\nnodes: [node1, node2]\n")
    name = f"live{request.param[:3]}"
    api.up(api.load_topology(str(path), name=name))
    yield name
    api.down(name)


def test_seed_004s_pod_manifests_become_two_pods_on_two_nodes_then_one_is_replaced(lab, tmp_path):
    for file, text in SEED_004.items():
        (tmp_path / file).write_text(text)
        code, out, err = podlab("apply", "--lab", lab, "-f", str(tmp_path / file))
        assert code == 0 and "created" in out, err
    running = api.Lab(lab)
    pods = {p.name: p for p in running.addresses.pods if not p.name.startswith("kube-dns-")}  # the cluster DNS
    assert set(pods) == {"nginx-pod", "busybox"} and pods["nginx-pod"].node != pods["busybox"].node
    assert all(r.passed for r in check.run(running))
    code, out, _ = podlab("exec", "--lab", lab, "busybox", "--", "wget", "-qO-", "-T", "3", f"http://{pods['nginx-pod'].ip}/")
    assert code == 0 and "nginx-pod" in out
    # Deleted and applied again: the same name, a new address (host-local / Calico IPAM hand out the next one).
    assert podlab("delete", "--lab", lab, "pod", "nginx-pod")[0] == 0
    assert "nginx-pod" not in api.Lab(lab).targets()
    assert podlab("apply", "--lab", lab, "-f", str(tmp_path / "nginx_pod.yaml"))[0] == 0
    again = api.Lab(lab)
    new = again.addresses.pod("nginx-pod")
    assert new.ip != pods["nginx-pod"].ip
    assert all(r.passed for r in check.run(again))


def test_a_bad_manifest_changes_nothing_and_says_where(lab, tmp_path):
    before = api.Lab(lab).addresses
    bad = tmp_path / "bad.yaml"
    bad.write_text(SEED_004["nginx_pod.yaml"].replace("  labels:", "  colour: red\n  labels:"))
    code, out, err = podlab("apply", "--lab", lab, "-f", str(bad))
    assert code != 0 and "document 1, metadata.colour (line 5): unknown field" in err and "Traceback" not in err
    assert api.Lab(lab).addresses == before


def test_a_service_follows_the_pods_that_come_and_go(tmp_path):
    path = tmp_path / "svc.yaml"
    path.write_text("design: kindnet\nnodes: [node1, node2]\npods:\n  - {name: client, node: node1, image: busybox}\n"
                    "services:\n  - {name: nginx, selector: {app: nginx}, ports: [{port: 80}]}\n")
    api.up(api.load_topology(str(path), name="livesvc"))
    try:
        (tmp_path / "nginx_pod.yaml").write_text(SEED_004["nginx_pod.yaml"])
        assert podlab("apply", "--lab", "livesvc", "-f", str(tmp_path / "nginx_pod.yaml"))[0] == 0
        lab = api.Lab("livesvc")
        code, out, err = podlab("exec", "--lab", "livesvc", "client", "--", "wget", "-qO-", "-T", "3",
                                "http://nginx.default.svc.cluster.local/")
        assert code == 0 and "nginx-pod" in out, err        # the cluster DNS restarted with the new records
        code, out, _ = podlab("get", "endpoints", "--lab", "livesvc")
        assert str(lab.addresses.pod("nginx-pod").ip) in out
        assert podlab("delete", "--lab", "livesvc", "pod", "nginx-pod")[0] == 0
        code, out, _ = podlab("exec", "--lab", "livesvc", "client", "--", "wget", "-qO-", "-T", "2",
                              f"http://{next(s for s in api.Lab('livesvc').topology.services if s.name == 'nginx').cluster_ip}/")
        assert code != 0                                     # no endpoints: kube-proxy rejects
    finally:
        api.down("livesvc")


def test_a_deployments_pods_are_replaced_scaled_and_rolled_and_its_service_keeps_its_address(tmp_path):
    path = tmp_path / "dep.yaml"
    path.write_text("design: flannel\nnodes: [node1, node2]\npods:\n  - {name: client, node: node1, image: busybox}\n"
                    "deployments:\n  - {name: web, replicas: 2, image: nginx}\n"
                    "services:\n  - {name: web, selector: {app: web}, ports: [{port: 80}]}\n")
    api.up(api.load_topology(str(path), name="livedep"))
    try:
        lab = api.Lab("livedep")
        cluster_ip = next(s for s in lab.topology.services if s.name == "web").cluster_ip
        old = {p.name: p for p in lab.addresses.pods if p.name.startswith("web-")}
        victim = sorted(old)[0]
        code, out, err = podlab("delete", "--lab", "livedep", "pod", victim)
        assert code == 0, err
        lab = api.Lab("livedep")
        now = {p.name: p for p in lab.addresses.pods if p.name.startswith("web-")}
        assert victim not in now and len(now) == 2
        replacement = next(n for n in now if n not in old)
        assert now[replacement].ip not in {p.ip for p in old.values()}          # a new name and a new address
        assert next(s for s in lab.topology.services if s.name == "web").cluster_ip == cluster_ip
        served = set()
        for _ in range(12):      # the ClusterIP answers from the new pod too (kube-proxy's random choice)
            code, out, _ = podlab("exec", "--lab", "livedep", "client", "--", "wget", "-qO-", "-T", "2", f"http://{cluster_ip}/")
            served |= {n for n in now if n in out}
        assert replacement in served
        for replicas in (4, 1):
            assert podlab("scale", "--lab", "livedep", "deployment", "web", "--replicas", str(replicas))[0] == 0
            lab = api.Lab("livedep")
            assert len([p for p in lab.topology.pods if p.deployment == "web"]) == replicas
            assert all(r.passed for r in check.run(lab))
        before = {p.name for p in api.Lab("livedep").topology.pods if p.deployment == "web"}
        assert podlab("rollout", "restart", "--lab", "livedep", "deployment", "web")[0] == 0
        after = {p.name for p in api.Lab("livedep").topology.pods if p.deployment == "web"}
        assert len(after) == 1 and not before & after
        assert all(r.passed for r in check.run(api.Lab("livedep")))
    finally:
        api.down("livedep")


# Seed 001's Deployment as the article writes it, and a Service for it (the article's next part).
SEED_001_DEPLOYMENT = (Path(__file__).parent / "manifests" / "seed_001_nginx_deployment.yaml").read_text() + """---
apiVersion: v1
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


def test_seed_001s_deployment_and_service_manifests_apply_to_a_lab_with_services(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("design: flannel\nnodes: [node1, node2]\npods:\n  - {name: client, node: node1, image: busybox}\n"
                    "services: []\n")
    api.up(api.load_topology(str(path), name="live001"))
    try:
        (tmp_path / "nginx.yaml").write_text(SEED_001_DEPLOYMENT)
        code, out, err = podlab("apply", "--lab", "live001", "-f", str(tmp_path / "nginx.yaml"))
        assert code == 0, err
        assert "not emulated" not in err, err       # its init container and emptyDir run (test_init_containers)
        lab = api.Lab("live001")
        pods = [p for p in lab.topology.pods if p.deployment == "nginx"]
        assert len(pods) == 3 and {p.node for p in pods} == {"node1", "node2"}
        # Their init containers run first (a moment); endpoints list every pod, ready or not, so wait
        # as `kubectl rollout status` would before asking the Service.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not all(
                r["status"] == "Running" for r in render.pod_rows(lab, workloads.read_status("live001"), True)):
            time.sleep(0.1)
        code, out, _ = podlab("exec", "--lab", "live001", "client", "--", "wget", "-qO-", "-T", "3",
                              "http://nginx-service.default.svc.cluster.local/")
        assert code == 0 and any(f"Welcome to the home page of host {p.name}!" in out for p in pods), out
        ip = next(s for s in lab.topology.services if s.name == "nginx-service").cluster_ip
        # applied again with another replica count: the Service keeps its address
        assert podlab("apply", "--lab", "live001", "-f", str(tmp_path / "nginx.yaml"))[0] == 0
        (tmp_path / "nginx.yaml").write_text(SEED_001_DEPLOYMENT.replace("replicas: 3", "replicas: 1"))
        assert podlab("apply", "--lab", "live001", "-f", str(tmp_path / "nginx.yaml"))[0] == 0
        again = api.Lab("live001")
        assert next(s for s in again.topology.services if s.name == "nginx-service").cluster_ip == ip
        assert len([p for p in again.topology.pods if p.deployment == "nginx"]) == 1
    finally:
        api.down("live001")


def test_run_and_get_pods_watch(tmp_path):
    import threading
    path = tmp_path / "w.yaml"
    path.write_text("design: kindnet\nnodes: [node1, node2]\npods:\n  - {name: web, node: node1, image: nginx}\n")
    api.up(api.load_topology(str(path), name="livewatch"))
    try:
        seen: dict[str, str] = {}

        def watch() -> None:
            seen["out"] = podlab("get", "pods", "--lab", "livewatch", "-w", "--watch-seconds", "4")[1]
        t = threading.Thread(target=watch)
        t.start()
        code, out, err = podlab("run", "--lab", "livewatch", "tmp-shell", "--rm", "-i", "--image", "nicolaka/netshoot",
                                "--", "sh", "-c", "hostname; ip -4 -o addr show eth0; sleep 1.5")
        assert code == 0 and "tmp-shell" in out and "pod/tmp-shell deleted" in out, err
        t.join()
        assert "tmp-shell" in seen["out"] and "tmp-shell   deleted" in seen["out"], seen["out"]
        assert "tmp-shell" not in api.Lab("livewatch").targets()
    finally:
        api.down("livewatch")


def test_a_lab_returned_by_a_change_keeps_the_placement_state_it_recorded(tmp_path):
    """Scaled down, then up again from the Lab that change() returned: the new pod gets a new name,
    not the one of the pod that went (the record's next ordinal, not the pods', counts)."""
    from lab import topology
    text = "name: livenext\ndesign: kindnet\nnodes: [node1]\ndeployments:\n  - {name: web, replicas: REPL, image: nginx}\n"
    api.up(topology.loads(text.replace("REPL", "3")))
    try:
        first = {p.name for p in api.Lab("livenext").topology.pods if p.deployment == "web"}
        lab = api.Lab("livenext")
        down = topology.loads(text.replace("REPL", "2"), default_name=lab.document_name, bound=lab.scheduling)
        lab = api.change("livenext", down, current=lab)
        up = topology.loads(text.replace("REPL", "3"), default_name=lab.document_name, bound=lab.scheduling)
        lab = api.change("livenext", up, current=lab)
        now = {p.name for p in lab.topology.pods if p.deployment == "web"}
        assert len(now) == 3 and len(now - first) == 1, (first, now)
    finally:
        api.down("livenext")
