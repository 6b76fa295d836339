"""The workload agent against real namespaces: pages, echo, UDP, /dial, localhost between containers,
port clashes, command containers (namespaces, restarts, logs), deleted namespaces, clean stop, memory.

Needs root (tests/conftest.py: CI runs it as root). Every namespace is named wlt-<random>-... and removed afterwards.
"""
from __future__ import annotations

import ctypes
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import lab.state
import lab.workloads as wl
from lab.engine import netns
from lab.errors import PodlabError

pytestmark = pytest.mark.root

WEB, CLIENT, CRASH, DOOMED = ("web-6bfd886fb5-fvngf", "client-7d9c5c6f4-x2v9q",
                              "crash-5f7b9c8d6-kq2lp", "doomed-84c7d9f6b-zz9wd")
WEB_IP, CLIENT_IP = "10.123.0.1", "10.123.0.2"  # a veth between two of our namespaces, nowhere else


def welcome(pod: str) -> str:
    return f"Welcome to the home page of host {pod}!\n"


def wait_for(check: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def curl_in(ns: str, *args: str) -> str:
    """The real curl inside a namespace. `ip netns exec` copies the host's mount table, which is slow
    while other labs hold thousands of namespace mounts, so most checks use fetch() instead."""
    out = subprocess.run(["ip", "netns", "exec", ns, "curl", "-s", "--max-time", "20", *args],
                         capture_output=True, text=True, timeout=60)
    return out.stdout


def fetch(ns: str, url: str) -> tuple[int, str, bytes]:
    """GET `url` from a socket made inside namespace `ns`: (status, head, body)."""
    u = urlsplit(url)
    s = netns.socket_in(ns, socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(10)
        s.connect((u.hostname, u.port or 80))
        s.sendall(f"GET {u.path or '/'}{'?' + u.query if u.query else ''} HTTP/1.1\r\nHost: {u.netloc}\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), head.decode(), body


def get(ns: str, url: str) -> str:
    return fetch(ns, url)[2].decode()


def _link(ns: str, dev: str) -> dict:
    out = subprocess.run(["ip", "-n", ns, "-j", "link", "show", "dev", dev], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0]


def operstate(ns: str, dev: str) -> str:
    return _link(ns, dev)["operstate"]


def link_address(ns: str, dev: str) -> str:
    return _link(ns, dev)["address"]


def ns_inode(name: str) -> int:
    return os.stat(netns.netns_path(name)).st_ino


def pids_in(inodes: set[int]) -> set[int]:
    """Every process whose network namespace is one of ours."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                    found.add(int(entry))
            except OSError:
                pass
    return found


def socket_namespaces(pid: int) -> set[int]:
    """Network namespace inodes of every socket `pid` holds (pidfd_getfd(2) copies each, SIOCGSKNS names its netns)."""
    sys_pidfd_getfd, siocgskns = 438, 0x894C
    libc = ctypes.CDLL(None, use_errno=True)
    found: set[int] = set()
    pidfd = os.pidfd_open(pid)
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if not os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                    continue
            except OSError:
                continue
            mine = libc.syscall(sys_pidfd_getfd, pidfd, int(fd), 0)
            if mine < 0:
                continue
            try:
                ns_fd = fcntl.ioctl(mine, siocgskns)
                found.add(os.fstat(ns_fd).st_ino)
                os.close(ns_fd)
            except OSError:
                pass
            finally:
                os.close(mine)
    finally:
        os.close(pidfd)
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = tmp_path_factory.mktemp("podlab-state")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lab.state, "ROOT", d)
        mp.setenv("PODLAB_STATE_DIR", str(d))  # and the agent subprocess reads the same directory
        yield d


@contextmanager
def namespaces(lab_name: str, pods: dict[str, str]) -> Iterator[dict[str, str]]:
    """Create {netns: pod} namespaces with lo up; yield {netns: uts path}; always remove them."""
    uts = {ns: lab.state.uts_path(lab_name, ns) for ns in pods}
    try:
        for made in netns.create([(ns, pod, uts[ns]) for ns, pod in pods.items()], {}).values():
            made.close()
        for ns in pods:
            subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        yield uts
    finally:
        for ns in pods:
            netns.remove(ns, uts[ns])
        assert not any(netns.exists(ns) for ns in pods)


@pytest.fixture(scope="module")
def agent_lab(state_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    name = f"wlt-{secrets.token_hex(3)}"
    ns = {k: f"{name}-{k}" for k in ("web", "cli", "crash", "doom", "missing")}
    out = tmp_path_factory.mktemp("cmd-out")
    created = {ns["web"]: WEB, ns["cli"]: CLIENT, ns["crash"]: CRASH, ns["doom"]: DOOMED}
    with namespaces(name, created) as uts:
        ip = ["ip", "-n", ns["web"]]
        subprocess.run([*ip, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", ns["cli"]], check=True)
        for where, addr in ((ns["web"], WEB_IP), (ns["cli"], CLIENT_IP)):
            subprocess.run(["ip", "-n", where, "addr", "add", f"{addr}/24", "dev", "eth0"], check=True)
            subprocess.run(["ip", "-n", where, "link", "set", "eth0", "up"], check=True)
        # The kernel's linkwatch activates a veth's queue (operstate UP) later, up to seconds later
        # while other labs keep the RTNL lock busy; packets sent before that are dropped.
        for where in (ns["web"], ns["cli"]):
            wait_for(lambda: operstate(where, "eth0") == "UP", timeout=30, what=f"eth0 up in {where}")
        # Permanent neighbours: the kernel's ARP table is shared by all namespaces (gc_thresh3, 1024
        # dynamic entries), and a 1000-pod lab running beside these tests can fill it, making ARP fail.
        for here, there, addr in ((ns["web"], ns["cli"], CLIENT_IP), (ns["cli"], ns["web"], WEB_IP)):
            mac = link_address(there, "eth0")
            subprocess.run(["ip", "-n", here, "neigh", "replace", addr, "lladdr", mac, "dev", "eth0",
                            "nud", "permanent"], check=True)
        pods = [
            {"pod": WEB, "netns": ns["web"], "uts": uts[ns["web"]], "containers": [
                {"name": "nginx", "workload": "http", "ports": [80]},
                {"name": "sidecar", "workload": "echo", "ports": [8080]},
                {"name": "nginx2", "workload": "http", "ports": [80]},
                # Not exec'd: sh keeps a child (sleep), so stopping must reach grandchildren too.
                {"name": "shell", "workload": "command", "command": [
                    "sh", "-c", f"hostname > {out}/hostname; curl -s http://127.0.0.1/ > {out}/page; sleep 1000"]},
                # Ignores SIGTERM (and so does its sleep, which inherits that): stop must SIGKILL it.
                {"name": "stubborn", "workload": "command", "command": ["sh", "-c", "trap '' TERM; sleep 1000"]}]},
            {"pod": CLIENT, "netns": ns["cli"], "uts": uts[ns["cli"]], "containers": [
                {"name": "agnhost", "workload": "echo"}, {"name": "busybox", "workload": "idle"}]},
            {"pod": CRASH, "netns": ns["crash"], "uts": uts[ns["crash"]], "containers": [
                {"name": "app", "workload": "command", "command": ["sh", "-c", "echo started; exit 3"]},
                {"name": "typo", "workload": "command", "command": ["/nonexistent/bin/app"]}]},
            {"pod": DOOMED, "netns": ns["doom"], "uts": uts[ns["doom"]], "containers": [
                {"name": "nginx", "workload": "http"},
                {"name": "sleeper", "workload": "command", "command": ["sleep", "1000"]}]},
            {"pod": "missing-0", "netns": ns["missing"], "uts": None, "containers": [
                {"name": "nginx", "workload": "http"}]},
        ]
        pid = wl.start_agent(name, wl.write_spec(name, pods))
        inodes = {ns_inode(n) for n in created}
        try:
            yield {"lab": name, "ns": ns, "uts": uts, "pid": pid, "out": out, "inodes": inodes}
        finally:
            wl.stop_agent(name)
            assert not wl.agent_alive(name)
            assert not pids_in(inodes), "a process was left in a test namespace"


def container(lab_name: str, pod: str, name: str) -> dict:
    return wl.read_status(lab_name).get("pods", {}).get(pod, {}).get("containers", {}).get(name, {})


def udp_ask(ns: str, addr: tuple[str, int], message: bytes) -> tuple[str, tuple[str, int]]:
    s = netns.socket_in(ns, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(3)
        s.bind(("0.0.0.0", 0))
        s.sendto(message, addr)
        return s.recv(65536).decode(), s.getsockname()
    finally:
        s.close()


def test_status_is_ready_and_written(agent_lab: dict) -> None:
    status = wl.read_status(agent_lab["lab"])
    assert status["pid"] == agent_lab["pid"] and status["ready"] is True
    assert wl.agent_alive(agent_lab["lab"])
    nginx = container(agent_lab["lab"], WEB, "nginx")
    started = nginx.pop("startedAt")       # when it started running, as Kubernetes' containerStatuses say
    assert nginx == {"state": "Running", "restarts": 0, "pid": None, "message": ""}
    assert 0 <= time.time() - started < 3600
    assert container(agent_lab["lab"], CLIENT, "busybox")["state"] == "Running"


def test_nginx_page_names_the_pod(agent_lab: dict) -> None:
    assert curl_in(agent_lab["ns"]["web"], "http://127.0.0.1/") == welcome(WEB)
    assert get(agent_lab["ns"]["cli"], f"http://{WEB_IP}/any/path") == welcome(WEB)
    head = curl_in(agent_lab["ns"]["cli"], "-I", f"http://{WEB_IP}/")
    assert "200 OK" in head and "Content-Type: text/html" in head
    assert f"Content-Length: {len(welcome(WEB))}" in head and "Connection: close" in head


def test_echo_hostname_clientip_and_echo(agent_lab: dict) -> None:
    cli = agent_lab["ns"]["cli"]
    assert get(cli, "http://127.0.0.1:8080/hostname") == CLIENT
    ip, port = get(cli, "http://127.0.0.1:8080/clientip").rsplit(":", 1)
    assert ip == "127.0.0.1" and port.isdigit()
    # From another pod: the server sees the client pod's own address (no NAT between pods).
    assert get(cli, f"http://{WEB_IP}:8080/clientip").startswith(f"{CLIENT_IP}:")
    assert get(cli, "http://127.0.0.1:8080/echo?msg=hello") == "hello"
    assert fetch(cli, "http://127.0.0.1:8080/nope")[0] == 404


def test_udp_hostname_clientip_echo(agent_lab: dict) -> None:
    cli = agent_lab["ns"]["cli"]
    assert udp_ask(cli, ("127.0.0.1", 8081), b"hostname")[0] == CLIENT
    assert udp_ask(cli, (WEB_IP, 8081), b"hostname")[0] == WEB
    answer, me = udp_ask(cli, (WEB_IP, 8081), b"clientip")
    assert answer == f"{CLIENT_IP}:{me[1]}"
    assert udp_ask(cli, ("127.0.0.1", 8081), b"echo hi there")[0] == "hi there"


def test_dial_from_inside_the_pod(agent_lab: dict) -> None:
    cli = agent_lab["ns"]["cli"]
    for proto, port in (("http", 8080), ("udp", 8081)):
        url = f"http://127.0.0.1:8080/dial?request=hostname&protocol={proto}&host={WEB_IP}&port={port}&tries=2"
        assert json.loads(get(cli, url)) == {"responses": [WEB, WEB]}
    # The request leaves from the client pod's namespace, so the target sees the client pod's IP.
    url = f"http://127.0.0.1:8080/dial?request=clientip&protocol=http&host={WEB_IP}&port=8080"
    assert json.loads(get(cli, url))["responses"][0].startswith(f"{CLIENT_IP}:")
    failed = json.loads(get(cli, f"http://127.0.0.1:8080/dial?request=hostname&host={WEB_IP}&port=9"))
    assert failed["responses"] == [] and "refused" in failed["errors"][0]


def test_containers_of_a_pod_share_localhost(agent_lab: dict) -> None:
    web = agent_lab["ns"]["web"]
    # echo sidecar -> nginx container, over the pod's loopback
    url = "http://127.0.0.1:8080/dial?request=hostname&protocol=http&host=127.0.0.1&port=80"
    assert json.loads(get(web, url)) == {"responses": [welcome(WEB)]}
    # command container (a real process) -> nginx container
    page = agent_lab["out"] / "page"
    wait_for(lambda: page.exists() and page.read_text(), what="the shell container's curl")
    assert page.read_text() == welcome(WEB)


def test_port_clash_fails_only_the_later_container(agent_lab: dict) -> None:
    clash = container(agent_lab["lab"], WEB, "nginx2")
    assert clash["state"] == "Error" and clash["message"] == "port 80 already in use by container nginx"
    assert container(agent_lab["lab"], WEB, "nginx")["state"] == "Running"
    assert container(agent_lab["lab"], WEB, "sidecar")["state"] == "Running"


def test_command_container_joins_the_pod_namespaces(agent_lab: dict) -> None:
    shell = wait_for(lambda: container(agent_lab["lab"], WEB, "shell").get("pid"), what="the shell's pid")
    assert container(agent_lab["lab"], WEB, "shell")["state"] == "Running"
    assert os.stat(f"/proc/{shell}/ns/net").st_ino == ns_inode(agent_lab["ns"]["web"])
    assert os.stat(f"/proc/{shell}/ns/uts").st_ino == os.stat(agent_lab["uts"][agent_lab["ns"]["web"]]).st_ino
    hostname = agent_lab["out"] / "hostname"
    wait_for(lambda: hostname.exists() and hostname.read_text(), what="the shell's hostname")
    assert hostname.read_text() == WEB + "\n"



@pytest.mark.skipif(not os.path.exists("/etc/resolv.conf"), reason="no /etc/resolv.conf to mount over")
def test_a_command_container_sees_its_pods_files_and_dies_with_a_killed_agent(
        state_dir: Path, tmp_path: Path) -> None:
    """As a container runtime does: the pod's resolv.conf bind-mounted over /etc/resolv.conf in the
    container's own mount namespace (the host keeps its own), and the container SIGKILLed with the
    agent (PR_SET_PDEATHSIG) even when the agent itself is SIGKILLed and cannot stop it."""
    name = f"wlt-{secrets.token_hex(3)}"
    ns, resolv, seen = f"{name}-files", tmp_path / "resolv.conf", tmp_path / "seen"
    resolv.write_text("nameserver 10.96.0.10\n")
    host = Path("/etc/resolv.conf").read_text()
    with namespaces(name, {ns: "files-0"}) as uts:
        spec = wl.write_spec(name, [{"pod": "files-0", "netns": ns, "uts": uts[ns],
                                     "mounts": [[str(resolv), "/etc/resolv.conf"]], "containers": [
            {"name": "cmd", "workload": "command",
             "command": ["sh", "-c", f"hostname > {seen}; cat /etc/resolv.conf >> {seen}; exec sleep 1000"]}]}])
        pid, cmd = wl.start_agent(name, spec), None
        try:
            cmd = wait_for(lambda: container(name, "files-0", "cmd").get("pid"), what="the container's pid")
            wait_for(lambda: seen.exists() and "nameserver" in seen.read_text(), what="what the container saw")
            assert seen.read_text() == "files-0\nnameserver 10.96.0.10\n"
            assert Path("/etc/resolv.conf").read_text() == host
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)   # our own child (start_agent spawned it)
            wait_for(lambda: not alive(cmd), timeout=5, what="the container to die with its agent")
        finally:
            wl.stop_agent(name)
            if cmd and alive(cmd):   # it outlived its agent (the test failed): leave no orphan behind
                os.kill(cmd, signal.SIGKILL)


def test_exiting_command_is_restarted_with_backoff(agent_lab: dict) -> None:
    lab_name = agent_lab["lab"]
    wait_for(lambda: container(lab_name, CRASH, "app").get("restarts", 0) >= 2, timeout=15, what="two restarts")
    app = container(lab_name, CRASH, "app")
    assert app["state"] in ("Running", "Waiting")
    # Each instance's output on its own, as the kubelet keeps it: `logs` shows the last, `--previous` the one before.
    log = lab.state.container_log(lab_name, CRASH, "app")
    previous = lab.state.container_log(lab_name, CRASH, "app", previous=True)
    def text(path) -> str:      # a restart moves the log aside a moment before it writes the new one
        try:
            return path.read_text()
        except FileNotFoundError:
            return ""
    wait_for(lambda: "started" in text(log), timeout=5, what="the restarted instance's output")
    assert text(log).count("started") == 1 and text(previous).count("started") == 1
    if app["state"] == "Waiting":
        assert "CrashLoopBackOff: exited with code 3" in app["message"]
    typo = container(lab_name, CRASH, "typo")
    assert typo["state"] == "Waiting" and "cannot start /nonexistent/bin/app: No such file" in typo["message"]


def test_many_concurrent_clients(agent_lab: dict) -> None:
    n = 400
    socks = netns.run_in(agent_lab["ns"]["cli"],
                         lambda: [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)])
    try:
        for s in socks:  # all connected before any answer is read
            s.settimeout(10)
            s.connect((WEB_IP, 80))
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        for s in socks:
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(welcome(WEB).encode())
    finally:
        for s in socks:
            s.close()


def test_large_response(agent_lab: dict) -> None:
    status, head, body = fetch(agent_lab["ns"]["cli"], f"http://{WEB_IP}/large?bytes=3000000")
    assert status == 200 and "Content-Length: 3000000" in head and len(body) == 3000000


def test_missing_namespace_is_an_error_not_a_crash(agent_lab: dict) -> None:
    nginx = container(agent_lab["lab"], "missing-0", "nginx")
    assert nginx["state"] == "Error" and agent_lab["ns"]["missing"] in nginx["message"]


def test_deleted_namespace_stops_its_pod_only(agent_lab: dict) -> None:
    lab_name, doom = agent_lab["lab"], agent_lab["ns"]["doom"]
    sleeper = wait_for(lambda: container(lab_name, DOOMED, "sleeper").get("pid"), what="the sleeper's pid")
    inode = ns_inode(doom)
    assert inode in socket_namespaces(agent_lab["pid"])  # the check below can see it
    netns.remove(doom, agent_lab["uts"][doom])
    wait_for(lambda: container(lab_name, DOOMED, "nginx").get("state") == "Error", what="the pod to fail")
    assert "is gone" in container(lab_name, DOOMED, "nginx")["message"]
    wait_for(lambda: not alive(sleeper), what="the sleeper to be stopped")
    # Nothing of ours keeps the deleted namespace alive: no process in it, no socket of the agent.
    wait_for(lambda: not pids_in({inode}), what="the namespace to be empty")
    assert wl.agent_alive(lab_name) and inode not in socket_namespaces(agent_lab["pid"])
    assert get(agent_lab["ns"]["web"], "http://127.0.0.1/") == welcome(WEB)


def test_start_refuses_a_second_agent_and_reports_a_bad_spec(agent_lab: dict, tmp_path: Path) -> None:
    with pytest.raises(PodlabError, match="already running"):
        wl.start_agent(agent_lab["lab"], lab.state.lab_dir(agent_lab["lab"]) / "agent-spec.json")
    other = f"wlt-{secrets.token_hex(3)}"
    bad = tmp_path / "spec.json"
    bad.write_text(json.dumps({"lab": "someone-else", "pods": []}))
    with pytest.raises(PodlabError, match="is for lab 'someone-else'"):
        wl.start_agent(other, bad)
    assert not wl.agent_alive(other)


def test_stop_leaves_no_process_behind(agent_lab: dict) -> None:
    lab_name = agent_lab["lab"]
    shell = wait_for(lambda: container(lab_name, WEB, "shell").get("pid"), what="the shell's pid")
    stubborn = wait_for(lambda: container(lab_name, WEB, "stubborn").get("pid"), what="the stubborn pid")
    ours = pids_in(agent_lab["inodes"]) | {agent_lab["pid"], shell, stubborn}
    assert len(ours) >= 5  # the agent, and two sh with a sleep each
    started = time.monotonic()
    wl.stop_agent(lab_name)
    assert time.monotonic() - started < 4  # SIGTERM, 2 s grace, SIGKILL
    assert not [pid for pid in ours if alive(pid)]
    assert not pids_in(agent_lab["inodes"])
    assert not (lab.state.lab_dir(lab_name) / "agent.pid").exists()
    assert not wl.agent_alive(lab_name) and wl.read_status(lab_name)["ready"] is False
    wl.stop_agent(lab_name)  # a second stop is a no-op


def test_rss_for_300_pods(state_dir: Path) -> None:
    name = f"wlt-{secrets.token_hex(3)}"
    pods = {f"{name}-{i}": f"nginx-{i}" for i in range(300)}
    with namespaces(name, pods) as uts:
        spec = wl.write_spec(name, [{"pod": pod, "netns": ns, "uts": uts[ns], "containers": [
            {"name": "nginx", "workload": "http"}, {"name": "echo", "workload": "echo"}]} for ns, pod in pods.items()])
        pid = wl.start_agent(name, spec, timeout=60)
        try:
            assert get(f"{name}-150", "http://127.0.0.1/") == welcome("nginx-150")
            assert get(f"{name}-299", "http://127.0.0.1:8080/hostname") == "nginx-299"
            status = Path(f"/proc/{pid}/status").read_text()
            rss_kb = int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])
            print(f"\nworkload agent RSS with 300 pods (http + echo): {rss_kb / 1024:.1f} MB")
            assert rss_kb < 100 * 1024
        finally:
            wl.stop_agent(name)
        assert not alive(pid)


@contextmanager
def early_agent(name: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen, int, Path]]:
    """An agent handed over as `up` hands it over, before the network is ready: (process, pid,
    the file its command container would create)."""
    ns, marker = f"{name}-early", tmp_path / "started"
    with namespaces(name, {ns: "early-0"}) as uts:
        spec = wl.write_spec(name, [{"pod": "early-0", "netns": ns, "uts": uts[ns], "containers": [
            {"name": "nginx", "workload": "http"},
            {"name": "cmd", "workload": "command", "command": ["sh", "-c", f"touch {marker}; sleep 1000"]}]}])
        proc = wl.spawn_agent(name, spec, network_later=True)
        pid = wl.start_agent(name, spec, proc=proc)
        try:
            wait_for(lambda: wl.agent_pid(name) == pid, what="the agent's pid file")
            yield proc, pid, marker
        finally:
            wl.stop_agent(name)
        assert not alive(pid)


def test_an_early_agent_whose_starter_gives_up_starts_nothing(state_dir: Path, tmp_path: Path) -> None:
    """A failed `up` closes the agent's stdin (discard_agent): the network will never be ready."""
    name = f"wlt-{secrets.token_hex(3)}"
    with early_agent(name, tmp_path) as (proc, pid, marker):
        wl.discard_agent(proc)
        log = lab.state.lab_dir(name) / "agent.log"
        wait_for(lambda: "command containers not started" in log.read_text(), what="the agent's note")
        assert alive(pid) and not marker.exists() and wl.read_status(name).get("ready") is not True


def test_an_early_agent_stops_at_once_while_it_waits_for_the_network(state_dir: Path, tmp_path: Path) -> None:
    """SIGTERM ends an agent still waiting to hear that the network is ready (no 5 s SIGKILL grace)."""
    name = f"wlt-{secrets.token_hex(3)}"
    with early_agent(name, tmp_path) as (_proc, pid, marker):
        started = time.monotonic()
        wl.stop_agent(name)
        assert time.monotonic() - started < 2.5 and not alive(pid) and not marker.exists()


def test_an_agent_handed_over_early_serves_but_starts_commands_only_when_the_network_is_ready(
        state_dir: Path, tmp_path: Path) -> None:
    """`up` hands the agent over as soon as the namespaces exist (spawn_agent's network_later):
    it serves at once, and starts command containers only after network_ready(), as a kubelet
    starts containers once the CNI has set the pod's network up."""
    name = f"wlt-{secrets.token_hex(3)}"
    with early_agent(name, tmp_path) as (proc, pid, marker):
        def page() -> str | None:
            try:
                return get(f"{name}-early", "http://127.0.0.1/")
            except ConnectionRefusedError:
                return None
        assert wait_for(page, what="the pod's web server") == welcome("early-0")   # serving already
        time.sleep(0.3)
        assert not marker.exists(), "a command container started before the network was ready"
        assert wl.read_status(name).get("ready") is not True
        assert wl.network_ready(name, proc) == pid
        wait_for(marker.exists, what="the command container after network_ready")
        assert container(name, "early-0", "cmd")["state"] == "Running"
