"""A running lab's Services follow their pods' readiness, and go when deleted.

A pod whose container exits (and waits to restart) leaves its Services' endpoints and every node's
kube-proxy rules, so requests to the ClusterIP never reach it, and comes back when it runs again;
kubectl's delete of a Service, a Deployment or a namespace removes what it says (a Service's rules
by a transaction that leaves the other Services' rules as they were, its DNS record with it) and
`check` passes after; `get services|endpoints -w` print the changes."""
from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import threading
import time

import pytest

from lab import api, check, cli, workloads
from lab.engine import netns
from lab.services import dnsclient


def podlab(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return cli.main(list(args), out, err), out.getvalue(), err.getvalue()


def table(lab: api.Lab, node: str) -> str:
    ns = lab.addresses.node(node).netns
    return subprocess.run(["ip", "netns", "exec", ns, "nft", "-a", "list", "table", "ip", "kube-proxy"],
                          capture_output=True, text=True, check=True).stdout


def in_rules(lab: api.Lab, ip: str) -> list[bool]:
    """On each node: does kube-proxy's table DNAT to this address?"""
    return [f"dnat to {ip}:" in table(lab, n.name) for n in lab.addresses.nodes]


def until(what, timeout: float = 10.0, pause: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (got := what()):
            return got
        time.sleep(pause)
    return what()


def get(ns: str, ip: str, port: int = 80) -> str:
    """One HTTP request from inside a namespace: the answer's body, or the error."""
    try:
        with netns.socket_in(ns, socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect((ip, port))
            s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return data.decode(errors="replace")
    except OSError as e:
        return f"error: {e}"


def state_of(lab_name: str, pod: str) -> str | None:
    pods = workloads.read_status(lab_name).get("pods", {})
    return next(iter(pods.get(pod, {}).get("containers", {}).values()), {}).get("state")


FLAPPY = """
design: kindnet
nodes: [node1, node2]
pods:
  - {name: client, node: node1, image: busybox}
  - {name: web1, node: node1, image: nginx, labels: {app: web}}
  - name: flappy
    node: node2
    labels: {app: web}
    containers:
      - name: server
        image: python
        ports: [80]
        # serves until told to stop (the file appears), then exits 1: CrashLoopBackOff, restarted after 1 s
        command: [sh, -c, "python3 -m http.server 80 & p=$!; while [ ! -e STOP ]; do sleep 0.05; done; rm -f STOP; kill $p; exit 1"]
services:
  - {name: web, selector: {app: web}, ports: [{port: 80}]}
  - {name: other, selector: {app: web}, ports: [{port: 8080, targetPort: 80}]}
"""


@pytest.fixture
def flappy(lab_from_yaml, tmp_path):
    stop = tmp_path / "stop"
    lab = lab_from_yaml(FLAPPY.replace("STOP", str(stop)), prefix="eplive")
    return lab, stop


def test_a_pod_that_exits_leaves_its_services_and_returns_when_it_runs_again(flappy):
    lab, stop = flappy
    ip = str(lab.addresses.pod("flappy").ip)
    cluster_ip = str(next(s for s in lab.topology.services if s.name == "web").cluster_ip)
    client = lab.addresses.pod("client").netns
    assert state_of(lab.name, "flappy") == "Running" and all(in_rules(lab, ip))
    other_before = re.findall(r"chain service-\S+default/other/\S+ \{.*?\n\t\}", table(lab, "node1"), re.S)
    assert other_before
    for attempt in range(2):            # the first crash waits 1 s to restart, the second 2 s
        stop.touch()
        assert until(lambda: not any(in_rules(lab, ip)), timeout=5), "the exited pod stayed in kube-proxy's rules"
        assert state_of(lab.name, "flappy") != "Running"
        code, out, _ = podlab("get", "endpoints", "--lab", lab.name)
        web_row = next(line for line in out.splitlines() if line.split()[0] == "web")
        assert f"{lab.addresses.pod('web1').ip}:80" in web_row and ip not in web_row, out
        answers = [get(client, cluster_ip) for _ in range(40)]
        if any(in_rules(lab, ip)):      # it came back during the requests: not a clean window, again
            continue
        assert all("Welcome to the home page of host web1!" in a for a in answers), \
            [a[:80] for a in answers if "web1" not in a][:3]
        break
    else:
        pytest.fail("never saw a whole window of requests while the pod was not ready")
    # It runs again: back in every node's rules, in `get endpoints`, and serving through the ClusterIP.
    assert until(lambda: all(in_rules(lab, ip)), timeout=8), "the pod running again did not come back"
    assert state_of(lab.name, "flappy") == "Running"
    code, out, _ = podlab("get", "endpoints", "--lab", lab.name, "-o", "json")
    web = next(r for r in json.loads(out) if r["name"] == "web")
    assert f"{ip}:80" in web["endpoints"]
    assert until(lambda: "Directory listing" in get(client, cluster_ip), timeout=8, pause=0.05)
    # The other Service of the same pods was rewritten too (it has the pod again), in its own chain.
    assert re.findall(r"chain service-\S+default/other/\S+ \{.*?\n\t\}", table(lab, "node1"), re.S)
    assert all(r.passed for r in check.run(api.Lab(lab.name)))


def test_the_agents_kube_proxy_sends_one_transaction_per_node_and_says_so(flappy):
    lab, stop = flappy
    before = workloads.read_status(lab.name)["kubeProxy"]["syncs"]
    stop.touch()
    assert until(lambda: workloads.read_status(lab.name)["kubeProxy"]["syncs"] > before, timeout=5)
    last = workloads.read_status(lab.name)["kubeProxy"]["last"]
    assert last["nodes"] == 2 and last["seconds"] < 1.0 and workloads.read_status(lab.name)["kubeProxy"]["failures"] == 0


LAYERED = """
design: flannel
nodes: [node1, node2]
pods:
  - {name: client, node: node1, image: busybox}
  - {name: db, node: node2, image: nginx, namespace: team, labels: {app: db}}
deployments:
  - {name: web, replicas: 2, image: nginx}
  - {name: api, replicas: 1, image: echoserver, namespace: team}
services:
  - {name: web, selector: {app: web}, ports: [{port: 80}]}
  - {name: keep, selector: {app: web}, ports: [{port: 8080, targetPort: 80}]}
  - {name: api, namespace: team, selector: {app: api}, ports: [{port: 80, targetPort: 8080}]}
"""


def ask(lab: api.Lab, pod: str, name: str) -> dnsclient.Answer:
    dns_ip = next(str(s.cluster_ip) for s in lab.topology.services if s.name == "kube-dns")
    sock = netns.socket_in(lab.addresses.pod(pod).netns, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        return until(lambda: _ask(sock, dns_ip, name), timeout=10, pause=0.2)
    finally:
        sock.close()


def _ask(sock, server: str, name: str) -> dnsclient.Answer | None:
    try:
        return dnsclient.ask(sock, server, name, "A", timeout=1)
    except (TimeoutError, OSError):
        return None                    # the DNS pod restarting with its new records


def chain_handles(text: str, fragment: str) -> list[str]:
    """The rule handles of the chains whose name has `fragment`: made again, they would change."""
    out = []
    for chain in re.findall(r"chain (\S+) \{(.*?)\n\t\}", text, re.S):
        if fragment in chain[0]:
            out += re.findall(r"# handle (\d+)", chain[1])
    return out


def test_delete_service_deployment_and_namespace(lab_from_yaml):
    lab = lab_from_yaml(LAYERED, prefix="epdel")
    name = lab.name
    web_ip = str(next(s.cluster_ip for s in lab.topology.services if s.name == "web"))
    keep = {n.name: chain_handles(table(lab, n.name), "default/keep/") for n in lab.addresses.nodes}
    assert all(keep.values())
    assert ask(lab, "client", "web.default.svc.cluster.local").ok

    code, out, err = podlab("delete", "--lab", name, "service", "web")
    assert code == 0 and 'service "web" deleted' in out, err
    lab = api.Lab(name)
    for node in lab.addresses.nodes:
        text = table(lab, node.name)
        assert f"{web_ip} . " not in text and "default/web/" not in text, text
        # the other Services' chains are the very same rules: not made again
        assert chain_handles(text, "default/keep/") == keep[node.name]
    assert ask(lab, "client", "web.default.svc.cluster.local").rcode == "NXDOMAIN"
    code, out, _ = podlab("get", "services", "--lab", name)
    assert not [line for line in out.splitlines()[1:] if line.split()[0] == "web"]
    code, _, err = podlab("delete", "--lab", name, "svc", "web")
    assert code == 1 and 'Error from server (NotFound): services "web" not found' in err

    web_pods = {p.name for p in lab.topology.pods if p.deployment == "web"}
    code, out, err = podlab("delete", "--lab", name, "deployment", "web")
    assert code == 0 and 'deployment.apps "web" deleted' in out, err
    lab = api.Lab(name)
    assert not web_pods & set(lab.targets()) and not [p for p in lab.topology.pods if p.deployment == "web"]
    keep_ip = str(next(s.cluster_ip for s in lab.topology.services if s.name == "keep"))
    for node in lab.addresses.nodes:         # `keep` has no endpoints left: rejected, its chains gone
        text = table(lab, node.name)
        assert re.search(rf'{keep_ip} \. tcp \. 8080 comment "default/keep" : goto reject-chain', text), text
        assert not chain_handles(text, "default/keep/")
    code, _, err = podlab("delete", "--lab", name, "deploy", "web", "-n", "default")
    assert code == 1 and 'Error from server (NotFound): deployments.apps "web" not found' in err
    code, _, err = podlab("delete", "--lab", name, "deployment", "api")     # it is in namespace team
    assert code == 1 and 'deployments.apps "api" not found' in err

    code, _, err = podlab("delete", "--lab", name, "namespace", "default")
    assert code == 1 and 'Error from server (Forbidden): namespaces "default" is forbidden' in err
    code, out, err = podlab("delete", "--lab", name, "namespace", "team")
    assert code == 0 and 'namespace "team" deleted' in out, err
    lab = api.Lab(name)
    assert not [p for p in lab.topology.pods if p.namespace == "team"]
    assert not [s for s in lab.topology.services if s.namespace == "team"]
    assert all("team/api" not in table(lab, n.name) for n in lab.addresses.nodes)
    code, _, err = podlab("delete", "--lab", name, "ns", "team")
    assert code == 1 and 'Error from server (NotFound): namespaces "team" not found' in err
    assert {p.name for p in lab.topology.pods} == {"client"} | {p.name for p in lab.topology.pods
                                                               if p.namespace == "kube-system"}
    code, out, err = podlab("check", "--lab", name)
    assert code == 0, out[-2000:]


WATCHED = """
design: kindnet
nodes: [node1, node2]
pods:
  - {name: client, node: node1, image: busybox}
services:
  - {name: web, selector: {app: web}, ports: [{port: 80}]}
  - {name: spare, selector: {app: nobody}, ports: [{port: 81}]}
"""

POD = ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-pod\n  labels: {app: web}\nspec:\n"
       "  containers:\n  - name: nginx\n    image: nginx\n")


def test_get_endpoints_and_services_watch_print_the_changes(lab_from_yaml, tmp_path):
    lab = lab_from_yaml(WATCHED, prefix="epwatch")
    seen: dict[str, str] = {}

    def watch(what: str) -> None:
        seen[what] = podlab("get", what, "--lab", lab.name, "-w", "--watch-seconds", "4")[1]
    threads = [threading.Thread(target=watch, args=(w,)) for w in ("endpoints", "services")]
    for t in threads:
        t.start()
    time.sleep(0.8)
    (tmp_path / "pod.yaml").write_text(POD)
    assert podlab("apply", "--lab", lab.name, "-f", str(tmp_path / "pod.yaml"))[0] == 0
    assert podlab("delete", "--lab", lab.name, "service", "spare")[0] == 0
    for t in threads:
        t.join()
    ip = api.Lab(lab.name).addresses.pod("web-pod").ip
    first, *changes = seen["endpoints"].splitlines()
    assert first.split() == ["NAME", "ENDPOINTS", "AGE"]      # namespace default's, as kubectl (-A: NAMESPACE first)
    assert any(line.split()[:2] == ["web", f"{ip}:80"] for line in changes), seen["endpoints"]
    assert "spare   deleted" in changes, seen["endpoints"]
    services = seen["services"].splitlines()
    assert any(line.split()[0] == "spare" for line in services[1:])      # the listing
    assert services[-1] == "spare   deleted", seen["services"]


def test_a_restarted_agent_makes_each_table_again_from_the_ready_pods(flappy):
    import os
    import signal
    lab, _stop = flappy
    ip = str(lab.addresses.pod("flappy").ip)
    node1 = lab.addresses.node("node1").netns
    text = table(lab, "node1")
    chain = re.search(r"chain (service-\S+default/web/\S+) \{", text)[1]
    # The table drifts while nobody watches: node1's web chain loses its rules by hand.
    subprocess.run(["ip", "netns", "exec", node1, "nft", "flush", "chain", "ip", "kube-proxy", chain], check=True)
    pid = workloads.agent_pid(lab.name)
    os.kill(pid, signal.SIGKILL)             # this test's own lab's agent, by PID
    assert until(lambda: not workloads.agent_alive(lab.name), timeout=5)
    code, out, err = podlab("restart-agent", lab.name)
    assert code == 0, err
    assert until(lambda: state_of(lab.name, "flappy") == "Running", timeout=10)

    def web_chain_whole() -> bool:
        found = re.search(rf"chain {re.escape(chain)} \{{.*?\n\t\}}", table(lab, "node1"), re.S)
        return bool(found) and "numgen random mod 2" in found[0] and all(in_rules(lab, ip))
    assert until(web_chain_whole, timeout=5), table(lab, "node1")
    assert workloads.read_status(lab.name)["kubeProxy"]["failures"] == 0
    assert all(r.passed for r in check.run(api.Lab(lab.name)))
