"""The workload agent's pure parts: spec, HTTP parsing, answers, /dial, back-off, port claims. No root."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

import lab.state
import lab.workloads as wl
from lab.errors import PodlabError
from lab.workloads import ContainerSpec, PodSpec, agent, servers


def _pod(**over: object) -> dict:
    pod = {"pod": "nginx-6bfd886fb5-fvngf", "netns": "default-nginx-6bfd886fb5-fvngf",
           "uts": "/run/podlab/demo/uts/default-nginx-6bfd886fb5-fvngf",
           "containers": [{"name": "nginx", "workload": "http", "ports": [80]}]}
    pod.update(over)
    return pod


# --- spec -----------------------------------------------------------------------------------

def test_spec_parses_all_workloads() -> None:
    spec = wl.parse_spec({"lab": "demo", "pods": [_pod(containers=[
        {"name": "nginx", "workload": "http", "ports": [80]},
        {"name": "echo", "workload": "echo"},
        {"name": "sh", "command": ["python3", "-m", "http.server", "8080"], "ports": [8080]},
        {"name": "pause", "workload": "idle"}])]})
    c = spec.pods[0].containers
    assert [x.workload for x in c] == ["http", "echo", "command", "idle"]
    assert c[2].command == ("python3", "-m", "http.server", "8080") and c[2].ports == (8080,)
    assert spec.pods[0].netns == "default-nginx-6bfd886fb5-fvngf"


@pytest.mark.parametrize("pod, where", [
    (_pod(containers=[{"name": "x", "workload": "apache"}]), "pods[0].containers[0].workload"),
    (_pod(containers=[{"name": "x", "workload": "http", "ports": [0]}]), "pods[0].containers[0].ports"),
    (_pod(containers=[{"name": "x", "workload": "http", "ports": ["80"]}]), "pods[0].containers[0].ports"),
    (_pod(containers=[{"name": "x", "workload": "command", "command": "sleep 10"}]), "pods[0].containers[0].command"),
    (_pod(containers=[{"name": "x", "workload": "command"}]), "pods[0].containers[0].command"),
    (_pod(containers=[{"name": "x"}, {"name": "x"}]), "pods[0].containers[1].name"),
    (_pod(netns="../../etc"), "pods[0].netns"),
    (_pod(uts="relative/path"), "pods[0].uts"),
])
def test_spec_errors_name_the_field(pod: dict, where: str) -> None:
    with pytest.raises(ValueError, match=rf"^{re.escape(where)}: "):
        wl.parse_spec({"lab": "demo", "pods": [pod]})


def test_spec_rejects_duplicate_pods_and_bad_lab() -> None:
    with pytest.raises(ValueError, match="duplicate pod"):
        wl.parse_spec({"lab": "demo", "pods": [_pod(), _pod()]})
    with pytest.raises(ValueError, match="invalid lab name"):
        wl.parse_spec({"lab": "../x", "pods": []})


def test_write_spec_validates_and_round_trips(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab.state, "ROOT", tmp_path)
    path = wl.write_spec("demo", [_pod()])
    assert path == tmp_path / "demo" / "agent-spec.json"
    assert wl.load_spec(path).pods[0].containers[0].name == "nginx"
    with pytest.raises(PodlabError, match="unknown workload"):
        wl.write_spec("demo", [_pod(containers=[{"name": "x", "workload": "nope"}])])


def test_status_and_liveness_without_an_agent(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab.state, "ROOT", tmp_path)
    assert wl.read_status("demo") == {} and not wl.agent_alive("demo")
    lab.state.ensure_lab_dir("demo")
    # A PID file naming a process that is not our agent (here: pytest itself) is never trusted.
    (tmp_path / "demo" / "agent.pid").write_text(f"{os.getpid()}\n")
    assert wl.agent_pid("demo") is None
    wl.stop_agent("demo")  # must not signal pytest


# --- HTTP -----------------------------------------------------------------------------------

def test_parse_request_crlf_and_query() -> None:
    req = servers.parse_request(b"GET /echo?msg=hello+world%21&x= HTTP/1.1\r\nHost: 10.0.0.1\r\nUser-Agent: curl\r\n\r\n")
    assert (req.method, req.path) == ("GET", "/echo")
    assert req.query == {"msg": "hello world!", "x": ""}
    assert req.headers == {"host": "10.0.0.1", "user-agent": "curl"}


def test_parse_request_bare_lf_from_nc() -> None:
    req = servers.parse_request(b"get /hostname HTTP/1.0\n\n")
    assert (req.method, req.path, req.query) == ("GET", "/hostname", {})


@pytest.mark.parametrize("head", [b"GET /\r\n\r\n", b"hello\r\n\r\n", b"GET / HTTP/1.1\r\nno colon\r\n\r\n"])
def test_parse_request_rejects_garbage(head: bytes) -> None:
    with pytest.raises(servers.BadRequest):
        servers.parse_request(head)


def test_response_has_exact_length_and_closes() -> None:
    body = servers.welcome_page("nginx-6bfd886fb5-fvngf")
    assert body == b"Welcome to the home page of host nginx-6bfd886fb5-fvngf!\n"
    raw = servers.response(200, body, "text/html")
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and rest == body
    assert f"Content-Length: {len(body)}".encode() in head and b"Connection: close" in head


def test_large_size_is_capped_and_checked() -> None:
    assert servers.large_size({"bytes": "1500"}) == 1500
    assert servers.large_size({"bytes": str(10**9)}) == 10 * 1024 * 1024
    with pytest.raises(servers.BadRequest):
        servers.large_size({"bytes": "lots"})


def test_echo_answers() -> None:
    def ask(path: str) -> tuple[int, bytes]:
        return servers.echo_answer("echo-1", servers.parse_request(f"GET {path} HTTP/1.1\r\n\r\n".encode()),
                                   ("10.244.1.5", 40000))
    assert ask("/hostname") == (200, b"echo-1")
    assert ask("/clientip") == (200, b"10.244.1.5:40000")
    assert ask("/echo?msg=hi%20there") == (200, b"hi there")
    assert ask("/nope")[0] == 404


def test_udp_answers() -> None:
    client = ("10.244.2.7", 5353)
    assert servers.udp_answer("echo-1", b"hostname\n", client) == b"echo-1"
    assert servers.udp_answer("echo-1", b"clientip", client) == b"10.244.2.7:5353"
    assert servers.udp_answer("echo-1", b"echo hello", client) == b"hello"
    assert servers.udp_answer("echo-1", b"shutdown", client) is None


@pytest.mark.parametrize("head, rest", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b""), (b"GET / HTTP/1.0\n\n", b""),
    (b"GET / HTTP/1.0\nHost: x\r\n\r\n", b"body\r\n\r\n"), (b"\r\n", b"GET / HTTP/1.1\r\n\r\n"),
])
def test_head_end_finds_the_first_empty_line(head: bytes, rest: bytes) -> None:
    assert servers.head_end(head + rest) == len(head)


@pytest.mark.parametrize("data", [b"", b"GET / HTTP/1.1\r\nHost: x\r\n", b"GET / HTTP/1.1\r\n\r"])
def test_head_end_waits_for_the_rest(data: bytes) -> None:
    assert servers.head_end(data) == -1


def test_respond_serves_nginx_page_for_any_path_and_head_without_body() -> None:
    page = servers.welcome_page("web-1")
    get = servers.respond("web-1", "http", b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n", ("10.244.0.2", 4000))
    assert get == servers.response_head(200, len(page), "text/html") + page
    head = servers.respond("web-1", "http", b"HEAD / HTTP/1.1\r\n\r\n", ("10.244.0.2", 4000))
    assert head == servers.response_head(200, len(page), "text/html")


def test_respond_echo_paths_refusals_and_garbage() -> None:
    client = ("10.244.1.5", 40000)
    assert servers.respond("echo-1", "echo", b"GET /clientip HTTP/1.1\r\n\r\n", client).endswith(b"\r\n\r\n10.244.1.5:40000")
    assert servers.respond("echo-1", "echo", b"GET /nope HTTP/1.1\r\n\r\n", client).startswith(b"HTTP/1.1 404 ")
    assert servers.respond("echo-1", "echo", b"POST / HTTP/1.1\r\n\r\n", client).startswith(b"HTTP/1.1 405 ")
    bad = servers.respond("web-1", "http", b"hello\r\n\r\n", client)
    assert bad.startswith(b"HTTP/1.1 400 ") and bad.endswith(b"bad request line 'hello'\n")


def test_respond_leaves_large_and_dial_to_the_caller() -> None:
    client = ("10.244.1.5", 40000)
    large = servers.respond("web-1", "http", b"GET /large?bytes=5000 HTTP/1.1\r\n\r\n", client)
    assert isinstance(large, servers.LargeAnswer) and large.size == 5000
    assert large.head == servers.response_head(200, 5000, "application/octet-stream")
    # HEAD, and an empty body, are answered at once.
    assert servers.respond("web-1", "http", b"HEAD /large HTTP/1.1\r\n\r\n", client) == \
        servers.response_head(200, 1048576, "application/octet-stream")
    assert servers.respond("web-1", "http", b"GET /large?bytes=0 HTTP/1.1\r\n\r\n", client) == \
        servers.response_head(200, 0, "application/octet-stream")
    assert servers.respond("web-1", "http", b"GET /large?bytes=x HTTP/1.1\r\n\r\n", client).startswith(b"HTTP/1.1 400 ")
    dial = servers.respond("echo-1", "echo", b"GET /dial?host=10.244.0.3&port=80 HTTP/1.1\r\n\r\n", client)
    assert isinstance(dial, servers.DialAnswer) and dial.dial.host == "10.244.0.3" and dial.with_body
    assert servers.respond("echo-1", "echo", b"GET /dial?host=db&port=80 HTTP/1.1\r\n\r\n", client) \
        .startswith(b"HTTP/1.1 400 ")


# --- /dial ----------------------------------------------------------------------------------

def test_dial_json_shape() -> None:
    assert json.loads(servers.dial_json(["pod-a"], [])) == {"responses": ["pod-a"]}
    assert servers.dial_json(["pod-a"], []) == b'{"responses":["pod-a"]}'
    assert json.loads(servers.dial_json([], ["timed out"])) == {"responses": [], "errors": ["timed out"]}


def test_parse_dial() -> None:
    d = servers.parse_dial({"request": "hostname", "protocol": "udp", "host": "10.244.1.5", "port": "8081", "tries": "3"})
    assert (d.request, d.protocol, d.host, d.port, d.tries) == ("hostname", "udp", "10.244.1.5", 8081, 3)
    assert servers.parse_dial({"host": "10.0.0.1", "port": "8080"}).protocol == "http"
    for bad in ({"host": "svc.default", "port": "80"}, {"host": "10.0.0.1", "port": "0"},
                {"host": "10.0.0.1", "port": "80", "protocol": "sctp"}, {"host": "10.0.0.1", "port": "80", "tries": "99"}):
        with pytest.raises(servers.BadRequest):
            servers.parse_dial(bad)


# --- supervision and ports ------------------------------------------------------------------

def test_backoff_schedule() -> None:
    assert [agent.backoff(n) for n in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert agent.backoff(1000) == 30


def test_listeners_defaults() -> None:
    assert agent.listeners(ContainerSpec("n", "http")) == [("tcp", 80)]
    assert agent.listeners(ContainerSpec("n", "http", (80, 443))) == [("tcp", 80), ("tcp", 443)]
    assert agent.listeners(ContainerSpec("e", "echo")) == [("tcp", 8080), ("udp", 8081)]
    assert agent.listeners(ContainerSpec("e", "echo", (9000,))) == [("tcp", 9000), ("udp", 8081)]
    assert agent.listeners(ContainerSpec("b", "idle", (80,))) == []


def test_port_clash_fails_the_later_container() -> None:
    # Command containers only claim their declared ports (nothing is bound), so this needs no namespace.
    pod = PodSpec("p", "ns", None, (ContainerSpec("web", "command", (80,), ("sleep", "1")),
                                    ContainerSpec("web2", "command", (80,), ("sleep", "1")),
                                    ContainerSpec("other", "command", (81,), ("sleep", "1"))))
    out = agent.bind_pod(pod)
    assert out == {"web": [], "web2": "port 80 already in use by container web", "other": []}


# --- start-up -------------------------------------------------------------------------------

def test_an_agent_whose_starter_is_gone_exits_at_once(tmp_path) -> None:
    """--parent: a starter that died before setpriv set the parent-death signal would never record
    the agent; the agent then ends before it reads anything. Under its real parent it goes on."""
    def run(parent: int) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", wl.AGENT_MODULE, "--lab", "demo", "--spec",
                               str(tmp_path / "absent.json"), "--parent", str(parent)],
                              capture_output=True, text=True, timeout=30)
    gone = run(os.getpid() + 1 if os.getppid() != os.getpid() + 1 else os.getpid() + 2)
    assert gone.returncode == 1 and gone.stderr == ""
    ours = run(os.getpid())
    assert ours.returncode == 2 and "absent.json" in ours.stderr   # past the check: the spec is missing
