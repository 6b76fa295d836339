"""Pods and containers: hostnames, localhost between containers, hostNetwork, and the CLI on a real lab."""
from __future__ import annotations

import io
import json
import os
import time

import pytest

from lab import cli, workloads

DESIGN = """
mode: vxlan
nodes: [node1, node2]
pods:
  - name: web
    node: node1
    containers:
      - {name: nginx, image: nginx, ports: [80]}
      - {name: sidecar, image: echoserver, ports: [8080]}
      - {name: tool, image: busybox, command: [sleep, "1000"]}
  - {name: monitor, node: node1, hostNetwork: true, image: nginx}
  - {name: client, node: node2, image: busybox}
  - name: early
    node: node2
    containers:
      - {name: look, image: busybox, command: [sh, -c, "ip -4 -o addr show dev eth0; ip route; sleep 1000"]}
"""


@pytest.fixture(scope="module")
def lab(lab_from_yaml):
    return lab_from_yaml(DESIGN, prefix="pods")


def podlab(lab, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main([argv[0], "--lab", lab.name, *argv[1:]], out, err)
    return code, out.getvalue(), err.getvalue()


def test_exec_runs_in_the_pod_with_its_hostname_and_passes_exit_status(lab):
    code, out, _ = podlab(lab, "exec", "client", "--", "hostname")
    assert (code, out.strip()) == (0, "client")
    code, _, _ = podlab(lab, "exec", "client", "--", "sh", "-c", "exit 7")
    assert code == 7
    code, out, _ = podlab(lab, "exec", "client", "--", "ip", "-o", "-4", "addr", "show", "eth0")
    assert str(lab.addresses.pod("client").ip) in out


def test_containers_of_a_pod_reach_each_other_on_localhost(lab):
    code, out, _ = podlab(lab, "exec", "web", "-c", "sidecar", "--", "curl", "-s", "-m", "3", "http://127.0.0.1/")
    assert code == 0 and out.strip() == "Welcome to the home page of host web!"
    code, out, _ = podlab(lab, "exec", "web", "--", "curl", "-s", "-m", "3", "http://localhost:8080/hostname")
    assert out.strip() == "web"


def test_command_container_runs_inside_the_pod(lab):
    status = workloads.read_status(lab.name)["pods"]["web"]["containers"]["tool"]
    assert status["state"] == "Running"
    pid = status["pid"]
    web_ns = os.stat(f"/run/netns/{lab.addresses.pod('web').netns}").st_ino
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == web_ns


def test_command_containers_start_once_the_pod_network_is_set_up(lab):
    """As a kubelet starts containers after CNI ADD: a command's first look at the network
    sees the pod's address and its default route (the agent serves before the links exist)."""
    from lab import state
    log = state.lab_dir(lab.name) / "logs" / "early_look.log"
    pod = lab.addresses.pod("early")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "default" not in (log.read_text() if log.exists() else ""):
        time.sleep(0.05)
    text = log.read_text()
    assert f"inet {pod.ip}/" in text and "default via" in text, text


def test_host_network_pod_serves_on_the_node_address(lab):
    node = lab.addresses.node("node1")
    monitor = lab.addresses.pod("monitor")
    assert monitor.ip == node.ip and monitor.netns == node.netns
    code, out, _ = podlab(lab, "curl", "client", f"{node.ip}:80")
    assert code == 0 and "host monitor!" in out


def test_get_pods_json_and_status(lab):
    code, out, _ = podlab(lab, "get", "pods", "-o", "json")
    pods = {p["name"]: p for p in json.loads(out)}
    assert pods["web"]["ready"] == "3/3" and pods["web"]["status"] == "Running"
    assert pods["web"]["netns"] == lab.addresses.pod("web").netns and pods["web"]["node"] == "node1"
    code, out, _ = podlab(lab, "get", "nodes", "-o", "json")
    nodes = json.loads(out)
    assert [(n["name"], n["podCIDR"]) for n in nodes] == [("node1", "10.244.0.0/24"), ("node2", "10.244.1.0/24")]


def test_second_up_of_a_running_lab_is_refused(lab):
    from lab import api
    from lab.errors import PodlabError
    topo = api.Lab(lab.name).topology
    with pytest.raises(PodlabError, match="already up"):
        api.up(topo)


def test_check_cli_prints_a_passing_matrix(lab):
    code, out, _ = podlab(lab, "check")
    assert code == 0 and "PASS" in out


def test_exec_and_shell_work_with_a_terminal(lab):
    """With a pty, the command inherits it (exec -it); a shell prompt names the pod."""
    import shlex
    import subprocess
    import sys
    cmd = f"{shlex.quote(sys.executable)} -m lab exec --lab {lab.name} client -- tty"
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and "/dev/pts/" in r.stdout
    shell = f"{shlex.quote(sys.executable)} -m lab shell --lab {lab.name} client"
    r = subprocess.run(["script", "-qec", shell, "/dev/null"], input="hostname\nexit 3\n", capture_output=True,
                       text=True, timeout=30)
    assert "[pod client]" in r.stdout and "\nclient" in r.stdout.replace("\r", "")
    assert r.returncode == 3


def test_the_bridge_keeps_its_mac_while_ports_come_and_go(lab):
    """As the CNI bridge plugin does, cni0's MAC is set, not the kernel's pick of its ports'
    lowest MAC: unplugging and plugging a pod's veth must not change it (pods' ARP entries for
    the gateway would go stale, and the node could not reach them for seconds)."""
    import subprocess
    node = lab.addresses.node("node1")
    bridge = lab.topology.bridge

    def mac() -> str:
        out = subprocess.run(["ip", "-n", node.netns, "-o", "link", "show", bridge],
                             capture_output=True, text=True, check=True).stdout
        return out.split("link/ether ")[1].split()[0]

    before = mac()
    for pod in lab.addresses.pods:
        if pod.node == "node1" and pod.veth:
            for args in (["nomaster"], ["master", bridge]):
                subprocess.run(["ip", "-n", node.netns, "link", "set", pod.veth, *args], check=True)
                assert mac() == before, f"{bridge}'s MAC changed when {pod.veth} was set {' '.join(args)}"
            # Plugged back as the bridge plugin plugs it, for the tests that follow.
            subprocess.run(["ip", "-n", node.netns, "link", "set", pod.veth, "type", "bridge_slave", "hairpin", "on"],
                           check=True)
