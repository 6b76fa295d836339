"""Rolling updates of a running lab, as the deployment controller makes them: a changed pod template
(an image, a label, an env value applied; `rollout restart`'s annotation) is a new ReplicaSet, whose
pods (new names, new addresses) replace the old ones step by step within maxSurge and
maxUnavailable, while the Service keeps its ClusterIP and answers every request.
"""
from __future__ import annotations

import io
import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab import api, check, cli
from lab.engine.journal import Journal

MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  strategy:
{strategy}
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web{labels}
    spec:
      containers:
      - name: web
        image: {image}
        env:
        - name: GREETING
          value: {greeting}
"""
ZERO_DOWNTIME = "    type: RollingUpdate\n    rollingUpdate:\n      maxSurge: 1\n      maxUnavailable: 0"
CLUSTER = """\
design: kindnet
nodes: [node1, node2]
pods:
  - {name: client, node: node1, image: busybox}
services:
  - {name: web, selector: {app: web}, ports: [{port: 80}]}
"""
# Requests to the ClusterIP from inside the client pod, each on a new connection, until told to stop:
# how many were answered, which pod answered, and every failure.
LOOP = r"""
import http.client, json, os, re, sys, time
ip, stop, out = sys.argv[1], sys.argv[2], sys.argv[3]
ok, failed, served = 0, [], {}
while not os.path.exists(stop):
    try:
        c = http.client.HTTPConnection(ip, 80, timeout=2)
        c.request("GET", "/")
        body = c.getresponse().read().decode()
        c.close()
        host = re.search(r"host (\S+?)!", body)
        served[host.group(1) if host else body[:60]] = served.get(host.group(1) if host else body[:60], 0) + 1
        ok += 1
    except Exception as e:
        failed.append(f"{time.time():.3f} {e!r}")
with open(out, "w") as f:
    json.dump({"ok": ok, "failed": failed, "served": served}, f)
"""


def podlab(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return cli.main(list(args), out, err), out.getvalue(), err.getvalue()


def manifest(image: str = "nginx", labels: str = "", greeting: str = "hello", replicas: int = 3,
             strategy: str = ZERO_DOWNTIME) -> str:
    return MANIFEST.format(image=image, labels=labels, greeting=greeting, replicas=replicas, strategy=strategy)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    d = tmp_path_factory.mktemp("rollout")
    (d / "cluster.yaml").write_text(CLUSTER)
    name = f"ro-{secrets.token_hex(2)}"
    api.up(api.load_topology(str(d / "cluster.yaml"), name))
    try:
        yield name, d
    finally:
        api.down(name)


def web(name: str) -> dict[str, str]:
    """The Deployment's pods: name -> address."""
    lab = api.Lab(name)
    return {p.name: str(p.ip) for p in lab.addresses.pods if p.name.startswith("web-")}


def apply(name: str, d: Path, text: str) -> str:
    path = d / "web.yaml"
    path.write_text(text)
    code, out, err = podlab("apply", "--lab", name, "-f", str(path))
    assert code == 0, out + err
    return out


class Requests:
    """The loop of requests to the Service, run in the client pod while a rollout goes on."""

    def __init__(self, name: str, d: Path, ip: str):
        self.stop, self.out = d / f"stop-{secrets.token_hex(3)}", d / f"out-{secrets.token_hex(3)}"
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
        self.proc = subprocess.Popen([sys.executable, "-m", "lab", "exec", "--lab", name, "client", "--",
                                      sys.executable, "-c", LOOP, ip, str(self.stop), str(self.out)], env=env,
                                     cwd="/")
        time.sleep(0.5)      # requests before the rollout: the old pods answer
        assert self.proc.poll() is None

    def finish(self) -> dict:
        time.sleep(0.3)      # requests after the rollout too: the new pods answer
        self.stop.write_text("")
        assert self.proc.wait(timeout=30) == 0
        return json.loads(self.out.read_text())


def hash_of(pod: str) -> str:
    return pod.split("-")[1]


@pytest.mark.parametrize("change", ["image", "label", "env", "restart"])
def test_a_rollout_replaces_every_pod_while_the_service_answers_every_request(lab, change):
    name, d = lab
    apply(name, d, manifest())
    before = web(name)
    assert len(before) == 3 and len({hash_of(p) for p in before}) == 1
    cluster_ip = str(next(s for s in api.Lab(name).topology.services if s.name == "web").cluster_ip)
    loop = Requests(name, d, cluster_ip)
    if change == "restart":
        code, out, err = podlab("rollout", "restart", "--lab", name, "deployment", "web")
        assert code == 0, out + err
        assert "deployment.apps/web restarted" in out
    else:
        out = apply(name, d, {"image": manifest(image="nginx:1.25"), "label": manifest(labels="\n        tier: v2"),
                              "env": manifest(greeting="bonjour")}[change])
    seen = loop.finish()
    assert not seen["failed"], seen
    after = web(name)
    # Every pod replaced: new names with another pod-template-hash, new addresses, as many as before.
    assert len(after) == 3 and not set(after) & set(before)
    assert len({hash_of(p) for p in after}) == 1 and hash_of(next(iter(after))) != hash_of(next(iter(before)))
    assert not set(after.values()) & set(before.values())
    # The Service answered from both generations, and kept its address.
    assert set(seen["served"]) & set(before) and set(seen["served"]) & set(after), seen["served"]
    assert str(next(s for s in api.Lab(name).topology.services if s.name == "web").cluster_ip) == cluster_ip
    # As kubectl rollout status prints it, the new replicas counted up one by one (maxSurge 1).
    for n in range(3):
        assert f'Waiting for deployment "web" rollout to finish: {n} out of 3 new replicas have been updated...' in out
    assert out.rstrip().endswith('deployment "web" successfully rolled out'), out
    assert all(r.passed for r in check.run(api.Lab(name)))
    code, out, _ = podlab("rollout", "status", "--lab", name, "deployment", "web")
    assert code == 0 and out.strip() == 'deployment "web" successfully rolled out'
    # The old ReplicaSet stays, scaled to 0, as revision history.
    code, out, _ = podlab("get", "rs", "--lab", name)
    rows = {line.split()[0]: line.split()[1:4] for line in out.splitlines()[1:]}
    assert rows[f"web-{hash_of(next(iter(after)))}"] == ["3", "3", "3"]
    assert rows[f"web-{hash_of(next(iter(before)))}"] == ["0", "0", "0"]
    code, out, _ = podlab("get", "deployments", "--lab", name)
    assert out.splitlines()[1].split()[:4] == ["web", "3/3", "3", "3"]
    code, _, err = podlab("get", "rs", "web-nothere", "--lab", name)
    assert code == 1 and 'Error from server (NotFound): replicasets.apps "web-nothere" not found' in err


def steps_of(name: str, since: int) -> list[tuple[int, int]]:
    """The (old, new) pod counts after each change the journal recorded since entry `since`."""
    pods = set(web(name))
    entries = [e for e in Journal(name).entries()[since:] if e["kind"] == "change"]
    # Walk back from the end: the lab's pods now, each change undone in turn.
    states = [set(pods)]
    for e in reversed(entries):
        pods = (pods - set(e["added"])) | {p for p in e["removed"] if p.startswith("web-")}
        states.append(set(pods))
    states.reverse()
    new = hash_of(next(iter(states[-1])))
    counts = [(sum(hash_of(p) != new for p in s), sum(hash_of(p) == new for p in s)) for s in states]
    return [c for i, c in enumerate(counts) if i == 0 or c != counts[i - 1]]


@pytest.mark.parametrize(("strategy", "steps"), [
    # maxSurge 1, maxUnavailable 0: a new pod, then an old one goes once the new one is Ready.
    (ZERO_DOWNTIME, [(3, 0), (3, 1), (2, 1), (2, 2), (1, 2), (1, 3), (0, 3)]),
    # maxSurge 0, maxUnavailable 1: an old pod goes first, then a new one comes.
    ("    rollingUpdate:\n      maxSurge: 0\n      maxUnavailable: 1",
     [(3, 0), (2, 0), (2, 1), (1, 1), (1, 2), (0, 2), (0, 3)]),
    # maxSurge 100%: every new pod at once, then every old one.
    ("    rollingUpdate:\n      maxSurge: 100%\n      maxUnavailable: 0", [(3, 0), (3, 3), (0, 3)]),
    # Recreate: every old pod goes, then the new ones come.
    ("    type: Recreate", [(3, 0), (0, 0), (0, 3)]),
])
def test_each_step_stays_within_max_surge_and_max_unavailable(lab, strategy, steps):
    name, d = lab
    apply(name, d, manifest(strategy=strategy))
    since = len(Journal(name).entries())
    apply(name, d, manifest(image=f"nginx:{secrets.token_hex(2)}", strategy=strategy))
    assert steps_of(name, since) == steps


def test_a_changed_service_keeps_its_cluster_ip(lab):
    name, d = lab
    ip = next(s for s in api.Lab(name).topology.services if s.name == "web").cluster_ip
    path = d / "svc.yaml"
    path.write_text("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    app: web\n"
                    "  ports:\n  - name: http\n    port: 8080\n    targetPort: 80\n")
    code, out, err = podlab("apply", "--lab", name, "-f", str(path))
    assert code == 0, out + err
    svc = next(s for s in api.Lab(name).topology.services if s.name == "web")
    assert svc.cluster_ip == ip and [p.port for p in svc.ports] == [8080]
    code, out, _ = podlab("exec", "--lab", name, "client", "--", "wget", "-qO-", "-T", "3", f"http://{ip}:8080/")
    assert code == 0 and re.search(r"host web-\w+-\w+!", out), out


def test_a_second_restart_within_the_same_second_is_refused_as_kubectl_refuses_it(lab, monkeypatch):
    """restartedAt has a second's resolution: a second restart in the same second would patch nothing,
    and kubectl says so and exits 1 rather than printing "restarted" over a rollout that never came."""
    from lab import rollout
    name, d = lab
    apply(name, d, manifest())
    monkeypatch.setattr(rollout, "restarted_at", lambda now=None: "2026-12-06T21:00:00Z")
    code, out, err = podlab("rollout", "restart", "--lab", name, "deployment", "web")
    assert code == 0 and "deployment.apps/web restarted" in out, out + err
    before, since = web(name), len(Journal(name).entries())
    code, out, err = podlab("rollout", "restart", "--lab", name, "deployment", "web")
    assert code == 1 and out == ""
    assert err.strip() == ("error: failed to create patch for web: if restart has already been triggered within "
                           "the past second, please wait before attempting to trigger another")
    assert web(name) == before and len(Journal(name).entries()) == since
