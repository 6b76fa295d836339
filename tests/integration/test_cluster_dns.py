"""The cluster DNS of every lab, as every Kubernetes cluster has it: a lab whose file has no
`services:` still resolves pod names (seed 001's `ping 10-244-2-84.default.pod.cluster.local`),
takes its first Service in place, and its DNS follows pods applied and deleted without a query
going unanswered; `dns: false` leaves a lab without it."""
from __future__ import annotations

import io
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from lab import api, cli, state
from lab.engine import netns
from lab.services import dnsclient

DNS_IP = "10.96.0.10"
# Seed 001's cluster: three nodes, nginx x3 (one lands on node3, 10.244.2.x), a pod to ask from.
NO_SERVICES = """
mode: vxlan
nodes: [node1, node2, node3]
deployments:
  - {name: nginx, replicas: 3, image: nginx}
pods:
  - {name: busybox, node: node1, image: busybox}
"""
WEB_SERVICE = """apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 80}]
"""


def web_pod(name: str, node: str) -> str:
    return (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: web}}\nspec:\n"
            f"  nodeName: {node}\n  containers:\n  - {{name: nginx, image: nginx, ports: [{{containerPort: 80}}]}}\n")


@pytest.fixture(scope="module")
def lab(lab_from_yaml):
    return lab_from_yaml(NO_SERVICES, prefix="cdns")


def podlab(lab_name: str, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main([argv[0], "--lab", lab_name, *argv[1:]], out, err)
    return code, out.getvalue(), err.getvalue()


def dashed(ip: object) -> str:
    return str(ip).replace(".", "-")


def ask_once(ns: str, name: str, timeout: float = 1.0, qtype: str = "A") -> dnsclient.Answer:
    """One query, one answer, no retry: from a new socket in the pod (a new source port, so a new
    flow through kube-proxy's DNAT each time), connected so a refusal (nothing listening) is an error."""
    sock = netns.socket_in(ns, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.settimeout(timeout)
        sock.connect((DNS_IP, 53))
        ident = int.from_bytes(os.urandom(2), "big")
        sock.send(dnsclient.query(name, qtype, ident))
        return dnsclient.parse(sock.recv(65535), ident)
    finally:
        sock.close()


def test_pod_names_resolve_and_carry_ping_in_a_lab_without_services(lab):
    target = next(p for p in lab.addresses.pods if p.node == "node3" and p.name.startswith("nginx-"))
    assert str(target.ip).startswith("10.244.2.")          # seed 001's 10-244-2-84: a pod on the third node
    name = f"{dashed(target.ip)}.default.pod.cluster.local"
    code, out, err = podlab(lab.name, "exec", "busybox", "--", "getent", "hosts", name)
    assert code == 0 and out.split()[0] == str(target.ip), err
    code, out, err = podlab(lab.name, "ping", "busybox", name, "-c", "1")
    assert code == 0 and f"PING {name} ({target.ip})" in out, err
    code, out, _ = podlab(lab.name, "exec", "busybox", "--", "cat", "/etc/resolv.conf")
    assert out == ("search default.svc.cluster.local svc.cluster.local cluster.local\n"
                   f"nameserver {DNS_IP}\noptions ndots:5\n")
    code, out, _ = podlab(lab.name, "exec", "busybox", "--", "getent", "hosts", "kubernetes.default")
    assert code == 0 and out.split()[0] == "10.96.0.1"


def test_get_pods_shows_the_default_namespace_and_all_with_dash_a(lab):
    dns_pod = next(p.name for p in lab.topology.pods if p.namespace == "kube-system")
    code, out, _ = podlab(lab.name, "get", "pods")
    assert code == 0 and dns_pod not in out and "busybox" in out and "NAMESPACE" not in out
    code, out, _ = podlab(lab.name, "get", "pods", "-A")
    rows = [line.split() for line in out.splitlines()]
    assert rows[0][:2] == ["NAMESPACE", "NAME"] and ["kube-system", dns_pod] in [r[:2] for r in rows]
    assert ["default", "busybox"] in [r[:2] for r in rows]
    code, out, _ = podlab(lab.name, "get", "pods", "-n", "kube-system")
    assert [line.split()[0] for line in out.splitlines()[1:]] == [dns_pod]
    code, out, err = podlab(lab.name, "get", "pods", "-n", "nosuch")
    assert code == 0 and out == "" and "No resources found in nosuch namespace." in err
    code, out, _ = podlab(lab.name, "get", "services")     # as kubectl: namespace default, no NAMESPACE column
    assert out.splitlines()[0].split()[0] == "NAME" and [r.split()[0] for r in out.splitlines()[1:]] == ["kubernetes"]
    code, out, _ = podlab(lab.name, "get", "services", "-A")
    assert "kube-system   kube-dns" in out and "default       kubernetes" in out


def test_a_lab_without_services_takes_its_first_service_in_place(lab, tmp_path):
    """The Service alone first: its named port is an SRV record, dnsmasq's configuration, so the
    DNS pod's dnsmasq restarts with the new one; then a pod behind it."""
    for i, text in enumerate([WEB_SERVICE, web_pod("web-0", "node2")]):
        manifest = tmp_path / f"web{i}.yaml"
        manifest.write_text(text)
        code, out, err = podlab(lab.name, "apply", "-f", str(manifest))
        assert code == 0, err
    srv = ask_once(lab.addresses.pod("busybox").netns, "_http._tcp.web.default.svc.cluster.local", qtype="SRV")
    assert [r.srv() for r in srv.records] == [(0, 100, 80, "web.default.svc.cluster.local.")]
    running = api.Lab(lab.name)
    ip = next(str(s.cluster_ip) for s in running.topology.services if s.name == "web")
    code, out, err = podlab(lab.name, "exec", "busybox", "--", "getent", "hosts", "web")
    assert code == 0 and out.split() == [ip, "web.default.svc.cluster.local"], err
    code, out, err = podlab(lab.name, "curl", "busybox", "web")
    assert out.strip() == "Welcome to the home page of host web-0!", err


def test_pods_applied_and_deleted_never_leave_a_dns_query_unanswered(lab, tmp_path):
    """A loop of queries from a pod through the DNS Service while pods come and go (behind a
    Service, so kube-proxy's table is replaced too): every query answered, and each new pod's
    record there as soon as `podlab apply` returns, gone once `podlab delete` does; dnsmasq
    never restarted (its records are read again, not its configuration)."""
    manifest = tmp_path / "web.yaml"
    manifest.write_text(WEB_SERVICE)
    assert podlab(lab.name, "apply", "-f", str(manifest))[0] == 0
    ns = lab.addresses.pod("busybox").netns
    dns_pod = next(p.name for p in lab.topology.pods if p.namespace == "kube-system")
    log = state.lab_dir(lab.name) / "logs" / f"{dns_pod}_dnsmasq.log"
    starts = log.read_text().count("started, version")
    failures: list[str] = []
    asked = 0
    stop = threading.Event()

    def loop() -> None:
        nonlocal asked
        while not stop.is_set():
            try:
                answer = ask_once(ns, "kubernetes.default.svc.cluster.local")
                if answer.values() != ["10.96.0.1"]:
                    failures.append(f"{answer.rcode} {answer.values()}")
            except OSError as e:        # a timeout, or refused: nothing listened
                failures.append(repr(e))
            asked += 1
            time.sleep(0.002)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        for i, node in enumerate(["node1", "node2", "node3", "node1"]):
            pod = tmp_path / f"p{i}.yaml"
            pod.write_text(web_pod(f"churn-{i}", node))
            code, out, err = podlab(lab.name, "apply", "-f", str(pod))
            assert code == 0, err
            ip = api.Lab(lab.name).addresses.pod(f"churn-{i}").ip
            record = f"{dashed(ip)}.default.pod.cluster.local"
            assert ask_once(ns, record).values() == [str(ip)]      # right after the command returned
            code, out, err = podlab(lab.name, "delete", "pod", f"churn-{i}")
            assert code == 0, err
            assert ask_once(ns, record).rcode == "NXDOMAIN"
    finally:
        stop.set()
        thread.join(timeout=5)
    assert asked > 50 and not failures, f"{len(failures)} of {asked} queries failed: {failures[:5]}"
    assert log.read_text().count("started, version") == starts       # the same dnsmasq all along


def test_dns_false_makes_a_lab_without_cluster_dns(lab_from_yaml):
    bare = lab_from_yaml("dns: false\nnodes: [node1]\npods:\n  - {name: a, image: busybox}\n", prefix="nodns")
    assert [p.name for p in bare.topology.pods] == ["a"] and bare.topology.services == ()
    code, out, _ = podlab(bare.name, "exec", "a", "--", "cat", "/etc/resolv.conf")
    assert code == 0 and out == Path("/etc/resolv.conf").read_text()     # no kubelet file: the node's resolver
    code, out, _ = podlab(bare.name, "exec", "node1", "--", "nft", "list", "ruleset")
    assert code == 0 and "kube-proxy" not in out
    code, _, err = podlab(bare.name, "get", "services")
    assert code != 0 and "dns: false" in err
