"""Init containers and emptyDir volumes, the parts that need no root: the topology format and the
manifests that write it, the agent's spec, the pod's STATUS as kubectl prints it, nginx's static
files, and the pod directories' ownership records."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import lab.state
from lab import manifests, render, topology
from lab.errors import PodlabError, TopologyError
from lab.workloads import parse_spec, servers, static, volumes

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "integration" / "manifests" / "seed_001_nginx_deployment.yaml"


def test_the_fixture_is_seed_001s_deployment_unchanged():
    """The seed's text lost its indentation when it was saved; line for line, the rest is the same."""
    seeds = sorted((ROOT.parent / "shared" / "seeds").glob("001_*.txt"))
    if not seeds:
        pytest.skip("the seed articles are not beside this checkout")
    seed = seeds[0].read_text().splitlines()
    fixture = [line.strip() for line in FIXTURE.read_text().splitlines()]
    start = seed.index("apiVersion: apps/v1")
    assert seed[start:start + len(fixture)] == fixture


def test_seed_001s_manifest_becomes_a_deployment_with_its_init_container_and_volume():
    found = manifests.read(FIXTURE.read_text(), "nginx.yaml")
    assert found.not_emulated == []
    (d,) = found.deployments
    assert d["volumes"] == [{"name": "html", "emptyDir": {}}]
    assert d["initContainers"][0]["command"][:2] == ["sh", "-c"]
    assert d["containers"][0]["volumeMounts"] == [{"name": "html", "mountPath": "/usr/share/nginx/html"}]
    topo = topology.loads(json.dumps({"nodes": ["n1"], "deployments": [d]}))
    pod = topo.pods[0]
    assert [c.name for c in pod.init_containers] == ["init"] and pod.init_containers[0].workload == "command"
    assert pod.volumes[0].name == "html" and pod.containers[0].volume_mounts[0].mount_path == "/usr/share/nginx/html"


@pytest.mark.parametrize("change, message", [
    (("emptyDir: {}", "configMap: {name: x}"), "configMap volumes are not emulated yet"),
    (("          mountPath: /usr/share/nginx/html\n      containers", "          mountPath: /usr/share/nginx/html\n"
      "          subPath: x\n      containers"), "subPath is not emulated yet"),
    (("        image: busybox\n", "        image: busybox\n        restartPolicy: Always\n"), "sidecar"),
])
def test_manifests_podlab_cannot_run_are_errors_that_say_where(change, message):
    with pytest.raises(PodlabError, match=message):
        manifests.read(FIXTURE.read_text().replace(*change), "nginx.yaml")


def test_fields_that_change_nothing_here_are_listed_as_not_emulated():
    text = FIXTURE.read_text().replace("emptyDir: {}", "emptyDir: {medium: Memory}")
    assert manifests.read(text, "x").not_emulated == ["spec.volumes[0].emptyDir.medium"]


def test_the_topology_format_checks_volumes_and_mounts_all_at_once():
    with pytest.raises(TopologyError) as e:
        topology.loads("""
nodes: [node1]
pods:
  - name: a
    volumes: [{name: html, emptyDir: {}}, {name: html, emptyDir: {}}, {name: c}]
    initContainers:
      - {name: init, image: busybox, volumeMounts: [{name: nope, mountPath: /x}]}
    containers:
      - {name: init, image: nginx, volumeMounts: [{name: html, mountPath: x}, {name: html, mountPath: /a/../b},
                                                  {name: html, mountPath: /q}, {name: html, mountPath: /q/}]}
""")
    text = str(e.value)
    for expected in ["volumes[1].name (line 5): volume name 'html' is already used",
                     "volumes[2] (line 5): volume 'c' needs a source",
                     "initContainers[0].volumeMounts[0].name (line 7): no volume named 'nope'",
                     "initContainers[0].command (line 7): init container 'init' needs a command",
                     "volumeMounts[0].mountPath (line 9): mountPath 'x' must be an absolute path",
                     "must not contain '..'", "/q is already mounted by",
                     "containers[0].name (line 9): container name 'init' is already used in this pod by "
                     "pods[0].initContainers[0].name"]:
        assert expected in text, text


def test_the_agents_spec_carries_init_containers_and_volumes_only_for_pods_that_have_them():
    from lab import planner
    topo = topology.loads("nodes: [n1]\npods:\n  - {name: plain, image: nginx}\n  - name: web\n"
                          "    volumes: [{name: html, emptyDir: {}}]\n"
                          "    initContainers: [{name: i, command: ['true'], volumeMounts: [{name: html, mountPath: /w}]}]\n"
                          "    containers: [{name: c, image: nginx, volumeMounts: [{name: html, mountPath: /w, readOnly: true}]}]\n")
    spec_op = next(op for op in planner.build(topo).ops if getattr(op, "path", "").endswith("agent-spec.json"))
    pods = {p["pod"]: p for p in json.loads(spec_op.content)["pods"]}
    assert set(pods["plain"]) == {"pod", "netns", "uts", "mounts", "containers"}
    assert "volumeMounts" not in pods["plain"]["containers"][0]
    assert pods["web"]["volumes"] == ["html"]
    spec = parse_spec(json.loads(spec_op.content))
    web = next(p for p in spec.pods if p.pod == "web")
    assert web.init_containers[0].workload == "command" and web.init_containers[0].volume_mounts[0].path == "/w"
    assert web.containers[0].volume_mounts[0].read_only


@pytest.mark.parametrize("pod, where", [
    ({"volumes": ["v"], "containers": [{"name": "c", "volumeMounts": [{"name": "w", "mountPath": "/x"}]}]},
     "pods[0].containers[0].volumeMounts[0].name"),
    ({"volumes": ["v"], "containers": [{"name": "c", "volumeMounts": [{"name": "v", "mountPath": "x"}]}]},
     "pods[0].containers[0].volumeMounts[0].mountPath"),
    ({"initContainers": [{"name": "i", "workload": "http"}], "containers": []}, "pods[0].initContainers[0].workload"),
    ({"initContainers": [{"name": "c", "command": ["true"]}], "containers": [{"name": "c"}]},
     "pods[0].containers[0].name"),
    ({"volumes": ["../x"], "containers": []}, "pods[0].volumes"),
])
def test_spec_errors_name_the_field(pod, where):
    with pytest.raises(ValueError, match=re.escape(where + ":")):
        parse_spec({"lab": "demo", "pods": [{"pod": "p", "netns": "demo-p", "uts": None, **pod}]})


# --- STATUS, as kubectl's printer says it (pkg/printers/internalversion/printers.go) ------------

def _status(init: dict, main: dict) -> dict:
    return {"initContainers": {"init": init}, "containers": {"nginx": main}}


@pytest.mark.parametrize("init, main, expected", [
    ({"state": "Waiting"}, {"state": "Waiting", "reason": "PodInitializing"}, ("0/1", "Init:0/1", 0)),
    ({"state": "Running"}, {"state": "Waiting", "reason": "PodInitializing"}, ("0/1", "Init:0/1", 0)),
    ({"state": "Terminated", "reason": "Error", "exitCode": 3, "restarts": 2}, {"state": "Waiting"},
     ("0/1", "Init:Error", 2)),
    ({"state": "Waiting", "reason": "CrashLoopBackOff", "exitCode": 3, "restarts": 1}, {"state": "Waiting"},
     ("0/1", "Init:CrashLoopBackOff", 1)),
    ({"state": "Terminated", "exitCode": 137}, {"state": "Waiting"}, ("0/1", "Init:ExitCode:137", 0)),
    ({"state": "Terminated", "reason": "Completed", "exitCode": 0, "restarts": 4},
     {"state": "Waiting", "reason": "PodInitializing"}, ("0/1", "PodInitializing", 0)),
    ({"state": "Terminated", "reason": "Completed", "exitCode": 0}, {"state": "Running", "restarts": 1},
     ("1/1", "Running", 1)),
])
def test_pod_status_while_and_after_its_init_containers_run(init, main, expected):
    assert render._pod_state(_status(init, main), 1, True, ["init"]) == expected


def test_the_first_unfinished_init_container_decides():
    status = {"initContainers": {"a": {"state": "Terminated", "exitCode": 0}, "b": {"state": "Running"}},
              "containers": {"c": {"state": "Waiting"}}}
    assert render._pod_state(status, 1, True, ["a", "b"])[1] == "Init:1/2"


# --- nginx's static files ---------------------------------------------------------------------

def _docroot(tmp_path: Path) -> static.View:
    html, img = tmp_path / "html", tmp_path / "img"
    (html / "sub").mkdir(parents=True)
    (html / "empty").mkdir()
    img.mkdir()
    (html / "index.html").write_text("Welcome to the home page of host web-0!\n")
    (html / "sub" / "index.htm").write_text("sub")
    (html / "style.css").write_text("p {}")
    (img / "a.png").write_bytes(b"\x89PNG")
    (tmp_path / "secret").write_text("host file")
    (html / "leak").symlink_to(tmp_path / "secret")
    return [("img", img), ("", html)]


def test_static_files_as_nginx_serves_its_document_root(tmp_path):
    view = _docroot(tmp_path)
    assert static.answer(view, "/") == (200, b"Welcome to the home page of host web-0!\n", "text/html", {})
    assert static.answer(view, "/index.html")[:2] == (200, b"Welcome to the home page of host web-0!\n")
    assert static.answer(view, "/sub/")[:2] == (200, b"sub")
    assert static.answer(view, "/sub")[0::3] == (301, {"Location": "/sub/"})
    assert static.answer(view, "/style.css")[2] == "text/css"
    assert static.answer(view, "/img/a.png")[1:3] == (b"\x89PNG", "image/png")     # a volume mounted below the root
    assert static.answer(view, "/empty/")[0] == 403                                # no index, no autoindex
    assert static.answer(view, "/missing")[0] == 404
    assert static.answer(view, "/leak")[0] == 404                                  # a symlink out of the volume
    assert static.answer(view, "/../secret")[0] == 400
    assert static.answer(view, "/%2e%2e/secret")[0] == 400


def test_the_http_workload_serves_files_when_given_a_document_root_else_its_page(tmp_path):
    view = _docroot(tmp_path)
    client = ("10.244.0.9", 5000)
    got = servers.respond("web-0", "http", b"GET /missing HTTP/1.1\r\n\r\n", client, view)
    assert got.startswith(b"HTTP/1.1 404 Not Found\r\n")
    head = servers.respond("web-0", "http", b"HEAD / HTTP/1.1\r\n\r\n", client, view)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n") and b"Content-Length: 40\r\n" in head
    assert servers.respond("web-0", "http", b"GET /missing HTTP/1.1\r\n\r\n", client).startswith(b"HTTP/1.1 200 OK")


def test_the_document_root_is_the_volume_mounted_at_it_or_above_it(tmp_path, monkeypatch):
    monkeypatch.setattr(lab.state, "ROOT", tmp_path)
    vol = tmp_path / "demo" / "pods" / "web" / "volumes"
    assert volumes.document_root("demo", "web", [("x", "/data")]) is None
    assert volumes.document_root("demo", "web", [("html", "/usr/share/nginx/html")]) == [("", vol / "html")]
    assert volumes.document_root("demo", "web", [("share", "/usr/share/nginx"), ("img", "/usr/share/nginx/html/img")]) \
        == [("img", vol / "img"), ("", vol / "share" / "html")]


# --- ownership of the pods' directories --------------------------------------------------------

def test_pod_directories_are_removed_by_their_records_only(tmp_path, monkeypatch):
    monkeypatch.setattr(lab.state, "ROOT", tmp_path)
    d = volumes.make("demo", "web-0", ["html"])
    (d / "volumes" / "html" / "index.html").write_text("x")
    volumes.make("demo", "web-1", ["html"])
    volumes.remove("demo", "web-1")
    stranger = tmp_path / "demo" / "pods" / "not-recorded"
    stranger.mkdir()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    from lab.engine.journal import Journal
    Journal("demo").record("pod-dir", pod="x", path=str(outside))       # a record pointing outside: not ours
    assert volumes.recorded("demo") == [d]
    assert volumes.remove_recorded("demo") == []
    assert not d.exists() and stranger.exists() and outside.exists()
    assert volumes.recorded("demo") == []


# --- the init sequence, with a stand-in agent ---------------------------------------------------

def test_init_containers_run_in_order_each_retried_until_it_succeeds_then_the_pod_is_served(monkeypatch):
    import asyncio
    from types import SimpleNamespace

    from lab.workloads import init
    monkeypatch.setattr(init, "backoff", lambda failures: 0.02)
    exits = {"first": [3, None, 0], "second": [0]}      # None: it could not start (StartError)
    seen: list[tuple[str, str, str]] = []

    class Agent:
        network = SimpleNamespace(wait=lambda: asyncio.sleep(0))
        served = False

        def set(self, pod, c, state, message="", reason=""):
            seen.append((c.name, state, reason))

        async def run_once(self, pod, c):
            seen.append((c.name, "Running", ""))
            code = exits[c.name].pop(0)
            return code, f"exited with code {code}"

        async def serve(self, pod, bound):
            Agent.served = True

    def container(name):
        return SimpleNamespace(name=name, restarts=0, exit_code=None)
    pod = SimpleNamespace(gone=False, init={"first": container("first"), "second": container("second")})
    asyncio.run(init.initialize(Agent(), pod))
    assert Agent.served and pod.init["first"].restarts == 2 and pod.init["first"].exit_code == 0
    assert seen == [("first", "Running", ""), ("first", "Terminated", "Error"), ("first", "Waiting", "CrashLoopBackOff"),
                    ("first", "Running", ""), ("first", "Terminated", "StartError"),
                    ("first", "Waiting", "CrashLoopBackOff"), ("first", "Running", ""),
                    ("first", "Terminated", "Completed"), ("second", "Running", ""), ("second", "Terminated", "Completed")]
