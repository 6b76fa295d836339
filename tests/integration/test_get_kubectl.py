"""`podlab get` as kubectl get lists, on a real lab: one namespace without a NAMESPACE column or all
of them with it, names picking rows (a name not there is the API server's NotFound on stderr and
exit 1, the found ones printed), and each pod's and node's AGE counting from its own making, not
the lab's (a pod applied later is younger)."""
from __future__ import annotations

import io
import json
import threading
import time

import pytest

from lab import api, cli

DESIGN = """
design: flannel
nodes: [node1, node2]
pods:
  - {name: client, node: node1, image: busybox}
  - {name: db, node: node2, image: nginx, namespace: team, labels: {app: db}}
  - {name: monitor, node: node1, hostNetwork: true, image: nginx}
deployments:
  - {name: web, replicas: 2, image: nginx}
services:
  - {name: web, selector: {app: web}, ports: [{port: 80}]}
  - {name: db, namespace: team, selector: {app: db}, ports: [{port: 5432, targetPort: 80}]}
"""
LATER_POD = ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: later\nspec:\n  nodeName: node2\n"
             "  containers:\n  - {name: c, image: busybox}\n")
LATER_HOST_POD = ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: later-host\nspec:\n  nodeName: node2\n"
                  "  hostNetwork: true\n  containers:\n  - {name: c, image: busybox}\n")


@pytest.fixture(scope="module")
def lab(lab_from_yaml):
    return lab_from_yaml(DESIGN, prefix="kget")


def podlab(lab: api.Lab, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main([*argv, "--lab", lab.name], out, err)      # --lab last: names before it, as typed
    return code, out.getvalue(), err.getvalue()


def table(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines()]


def test_services_and_endpoints_list_one_namespace_without_a_namespace_column(lab):
    code, out, err = podlab(lab, "get", "services")
    rows = table(out)
    assert code == 0 and rows[0] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"], out
    assert sorted(r[0] for r in rows[1:]) == ["kubernetes", "web"], out       # not team's db, not kube-dns
    code, out, _ = podlab(lab, "get", "svc", "-n", "team", "-o", "wide")
    assert table(out)[0][-1] == "SELECTOR" and [r[0] for r in table(out)[1:]] == ["db"], out
    code, out, _ = podlab(lab, "get", "ep", "-n", "kube-system")
    assert table(out)[0] == ["NAME", "ENDPOINTS", "AGE"] and [r[0] for r in table(out)[1:]] == ["kube-dns"], out
    code, out, _ = podlab(lab, "get", "endpoints", "-A")
    rows = table(out)
    assert rows[0] == ["NAMESPACE", "NAME", "ENDPOINTS", "AGE"]
    assert sorted((r[0], r[1]) for r in rows[1:]) == [("default", "kubernetes"), ("default", "web"),
                                                      ("kube-system", "kube-dns"), ("team", "db")], out
    code, out, err = podlab(lab, "get", "services", "-n", "nosuch")
    assert code == 0 and out == "" and err == "No resources found in nosuch namespace.\n"


def test_names_pick_rows_and_a_missing_one_is_not_found_with_exit_1(lab):
    code, out, err = podlab(lab, "get", "services", "web", "nosuch", "kubernetes")
    assert code == 1 and [r[0] for r in table(out)[1:]] == ["web", "kubernetes"], out     # in the order asked
    assert err == 'Error from server (NotFound): services "nosuch" not found\n'
    code, out, err = podlab(lab, "get", "ep", "db")                   # db is in team, not in default
    assert code == 1 and out == "" and err == 'Error from server (NotFound): endpoints "db" not found\n'
    code, out, err = podlab(lab, "get", "endpoints", "-n", "team", "db", "-o", "json")
    rows = json.loads(out)
    assert code == 0 and [(r["namespace"], r["name"]) for r in rows] == [("team", "db")] and err == ""
    web = sorted(p.name for p in lab.topology.pods if p.deployment == "web")
    code, out, err = podlab(lab, "get", "pods", web[1], "gone", web[0], "-o", "wide")
    assert code == 1 and [r[0] for r in table(out)[1:]] == [web[1], web[0]], out
    assert table(out)[0][:2] == ["NAME", "READY"] and err == 'Error from server (NotFound): pods "gone" not found\n'
    code, out, err = podlab(lab, "get", "pods", "-n", "team", "db")
    assert code == 0 and [r[0] for r in table(out)[1:]] == ["db"]
    code, out, err = podlab(lab, "get", "nodes", "node2", "node9")
    assert code == 1 and [r[0] for r in table(out)[1:]] == ["node2"]
    assert err == 'Error from server (NotFound): nodes "node9" not found\n'
    code, out, err = podlab(lab, "get", "pods", "-A", "client")
    assert code == 1 and out == "" and "a resource cannot be retrieved by name across all namespaces" in err


def test_get_watch_of_named_services_prints_only_theirs(lab, tmp_path):
    seen: dict[str, tuple[int, str, str]] = {}

    def watch() -> None:
        seen["w"] = podlab(lab, "get", "endpoints", "web", "-w", "--watch-seconds", "3")
    t = threading.Thread(target=watch)
    t.start()
    time.sleep(0.8)
    (tmp_path / "p.yaml").write_text(LATER_POD.replace("name: later", "name: watched"))
    assert podlab(lab, "apply", "-f", str(tmp_path / "p.yaml"))[0] == 0       # no Service selects it
    code, _, err = podlab(lab, "scale", "deployment", "web", "--replicas", "3")
    assert code == 0, err
    t.join()
    code, out, _ = seen["w"]
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["NAME", "ENDPOINTS", "AGE"], out
    assert all(line.split()[0] == "web" for line in lines[1:]) and len(lines) >= 3, out   # the third endpoint
    assert len(lines[-1].split()[1].split(",")) == 3, out
    code, out, err = podlab(lab, "get", "endpoints", "nosuch", "-w", "--watch-seconds", "2")
    assert code == 1 and out == "" and "NotFound" in err        # kubectl does not watch what it cannot get


def test_a_pod_applied_later_is_younger_than_the_lab(lab, tmp_path):
    time.sleep(3)
    for name, text in (("later.yaml", LATER_POD), ("later-host.yaml", LATER_HOST_POD)):
        (tmp_path / name).write_text(text)
        code, _, err = podlab(lab, "apply", "-f", str(tmp_path / name))
        assert code == 0, err
    code, out, _ = podlab(lab, "get", "pods", "-o", "json")
    age = {r["name"]: r["age"] for r in json.loads(out)}
    lab_age = time.time() - api.Lab(lab.name).created
    # Made by `up`, before the lab was ready (lab.created is when it was): as old as the lab, or a little older.
    assert lab_age - 0.5 < age["client"] < lab_age + 10 and age["monitor"] == pytest.approx(lab_age, abs=0.5), age
    assert age["later"] < lab_age - 2.5 and age["later"] < 2, age          # its own sandbox's age
    assert age["later-host"] < lab_age - 2.5 and age["later-host"] < 2, age   # hostNetwork: the change's
    code, out, _ = podlab(lab, "get", "pods", "later")
    assert table(out)[1][-1] in ("0s", "1s", "2s"), out
    code, out, _ = podlab(lab, "get", "nodes", "-o", "json")
    assert all(lab_age - 0.5 < r["age"] < lab_age + 10 for r in json.loads(out)), out
