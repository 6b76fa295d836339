"""`podlab get`'s kubectl habits without a lab: which rows a query shows and what it says of the rest
(lab.listing), names after options, each pod's age from its own making (lab.ages), and which
container `exec` runs in and the view of the files it gets (lab.container_view)."""
from __future__ import annotations

import io
import json
import os
import time
from types import SimpleNamespace

import pytest

import lab.state
from lab import ages, apply_cli, cli, container_view, listing, render
from lab.engine import mountns
from lab.engine import netns as engine_netns
from lab.engine.journal import Journal
from lab.errors import PodlabError
from lab.model import Container, Pod, VolumeMount

ROWS = [{"namespace": "default", "name": "web"}, {"namespace": "team", "name": "db"},
        {"namespace": "default", "name": "api"}, {"namespace": "kube-system", "name": "kube-dns"}]


# --- lab.listing ---------------------------------------------------------------------------------

def test_a_namespaced_kind_lists_one_namespace_without_a_namespace_column():
    q = listing.Query.of("svc")
    assert q.select(ROWS) == ([ROWS[0], ROWS[2]], []) and not q.namespace_column and q.key_cells == 1
    assert q.columns(["NAME", "AGE"], ["name", "age"]) == (["NAME", "AGE"], ["name", "age"])
    team = listing.Query.of("endpoints", namespace="team")
    assert team.select(ROWS) == ([ROWS[1]], [])


def test_all_namespaces_puts_namespace_first():
    q = listing.Query.of("pods", all_namespaces=True)
    assert q.select(ROWS) == (ROWS, []) and q.namespace_column and q.key_cells == 2
    assert q.columns(["NAME"], ["name"]) == (["NAMESPACE", "NAME"], ["namespace", "name"])
    assert q.nothing() == "No resources found"


def test_names_pick_rows_in_the_order_asked_and_the_missing_are_not_found():
    q = listing.Query.of("ep", ["api", "db", "web", "gone"])
    shown, missing = q.select(ROWS)
    assert shown == [ROWS[2], ROWS[0]] and missing == ["db", "gone"]     # db is team's, not default's
    err = io.StringIO()
    assert listing.report(q, shown, missing, err) == 1
    assert err.getvalue() == ('Error from server (NotFound): endpoints "db" not found\n'
                              'Error from server (NotFound): endpoints "gone" not found\n')


def test_nothing_to_show_is_said_on_stderr_but_not_for_names_or_json():
    q = listing.Query.of("services", namespace="nosuch")
    err = io.StringIO()
    assert listing.report(q, [], [], err) == 0 and err.getvalue() == "No resources found in nosuch namespace.\n"
    err = io.StringIO()
    assert listing.report(q, [], [], err, table=False) == 0 and err.getvalue() == ""


def test_nodes_are_cluster_scoped_and_names_across_all_namespaces_are_refused():
    q = listing.Query.of("no", ["node2"], namespace="team", all_namespaces=True)    # -n, -A: ignored
    assert q.select([{"name": "node1"}, {"name": "node2"}]) == ([{"name": "node2"}], [])
    assert not q.namespace_column and q.not_found("x") == 'Error from server (NotFound): nodes "x" not found'
    with pytest.raises(PodlabError, match="a resource cannot be retrieved by name across all namespaces"):
        listing.Query.of("po", ["web"], all_namespaces=True)


def test_get_takes_names_before_and_after_its_options(monkeypatch):
    seen = {}

    def handler(args, out, err):
        seen.update(vars(args))
        return 0
    monkeypatch.setitem(cli.COMMANDS, "get", handler)
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert cli.main(["get", "pods", "a", "--lab", "x", "b", "-n", "team", "c"], io.StringIO(), io.StringIO()) == 0
    assert (seen["what"], seen["names"], seen["lab"], seen["namespace"]) == ("pods", ["a", "b", "c"], "x", "team")
    err = io.StringIO()
    with pytest.raises(SystemExit):           # an unknown option is still argparse's error
        cli.main(["get", "pods", "a", "--bogus"], io.StringIO(), err)


def test_delete_takes_names_before_and_after_its_options(monkeypatch):
    seen = {}

    def handler(args, out, err):
        seen.update(vars(args))
        return 0
    monkeypatch.setattr(apply_cli, "cmd_delete", handler)     # delete's module registers it on each parse
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert cli.main(["delete", "pod", "a", "-n", "team", "b", "--lab", "x", "c"], io.StringIO(), io.StringIO()) == 0
    assert (seen["kind"], seen["names"], seen["lab"], seen["namespace"]) == ("pod", ["a", "b", "c"], "x", "team")
    with pytest.raises(SystemExit):
        cli.main(["delete", "pod", "a", "--bogus"], io.StringIO(), io.StringIO())


# --- lab.ages ------------------------------------------------------------------------------------

def test_namespace_times_come_from_the_namespace_files_and_never_from_outside_them(tmp_path, monkeypatch):
    monkeypatch.setattr(ages, "NETNS_DIR", str(tmp_path))
    (tmp_path / "lab-a").write_text("")
    (tmp_path.parent / "outside").write_text("")
    made = ages.namespaces_made(["lab-a", "lab-missing", "../outside", "..", ""])
    assert list(made) == ["lab-a"] and abs(made["lab-a"] - os.stat(tmp_path / "lab-a").st_ctime) < 1e-6


def test_the_netns_directory_is_the_engines():
    assert ages.NETNS_DIR == engine_netns.NETNS_DIR


def _fake_lab(name: str, created: float) -> SimpleNamespace:
    pods = [Pod("a", "node1", (Container("c"),)), Pod("hn", "node1", (Container("c"),), host_network=True),
            Pod("b", "node1", (Container("c"),))]
    addrs = [SimpleNamespace(name="a", ip="10.0.0.2", netns=f"{name}-a", host_network=False),
             SimpleNamespace(name="hn", ip="192.168.0.1", netns=f"{name}-node1", host_network=True),
             SimpleNamespace(name="b", ip="10.0.0.3", netns=f"{name}-b", host_network=False)]
    return SimpleNamespace(name=name, created=created, topology=SimpleNamespace(pods=pods),
                           addresses=SimpleNamespace(pods=addrs, pending=()),
                           design=SimpleNamespace(attachment=SimpleNamespace(runs_plugins=False)))


def test_each_pods_age_is_its_own_namespaces_or_for_host_network_its_last_change(tmp_path, monkeypatch):
    monkeypatch.setattr(lab.state, "ROOT", tmp_path)
    now = time.time()
    fake = _fake_lab("agelab", now - 600)
    monkeypatch.setattr(ages, "namespaces_made", lambda names: {n: now - 60 for n in names if n.endswith("-a")}
                        | {"agelab-node1": now - 700})
    Journal("agelab").record("change", added=["other"], removed=[])
    rows = {r["name"]: r["age"] for r in render.pod_rows(fake, {}, True)}
    assert rows["a"] == pytest.approx(60, abs=1)          # its namespace's
    assert rows["b"] == pytest.approx(600, abs=1)         # no namespace found: the lab's
    assert rows["hn"] == pytest.approx(600, abs=1)        # hostNetwork, made by `up`: the lab's, not its node's
    Journal("agelab").record("change", added=["hn", "x"], removed=[])
    rows = {r["name"]: r["age"] for r in render.pod_rows(fake, {}, True)}
    assert rows["hn"] == pytest.approx(0, abs=1)          # the change that added it


def test_journal_of_kind_reads_only_that_kinds_records(tmp_path, monkeypatch):
    monkeypatch.setattr(lab.state, "ROOT", tmp_path)
    j = Journal("jlab")
    j.record_many("netns", [{"name": "n1"}, {"name": "n2"}])
    j.record("netns-made", name="n1", net=[1, 2, 3], uts=[1, 2, 4])
    j.record("change", added=["p"], removed=[])
    with open(j.path, "a") as f:
        f.write('{"kind": "change", "added": ["cut')                     # a record cut short by a crash
    assert [e["name"] for e in j.of_kind("netns")] == ["n1", "n2"]
    assert [e["added"] for e in j.of_kind("change")] == [["p"]] and j.of_kind("nothing") == []
    assert [json.loads(line)["kind"] for line in j.path.read_text().splitlines()[:4]] == [
        "netns", "netns", "netns-made", "change"]


# --- lab.container_view --------------------------------------------------------------------------

HTML = VolumeMount("html", "/usr/share/podlab-unit/html")
NGINX = Container("nginx", "nginx", volume_mounts=(HTML,))
INIT = Container("init", "busybox", command=("true",), volume_mounts=(HTML,))
WEB = Pod("web", "node1", (NGINX, Container("sidecar", "busybox")), init_containers=(INIT,))


def test_exec_defaults_to_the_first_container_with_kubectls_notice():
    err = io.StringIO()
    assert container_view.pick(WEB, None, err) is NGINX
    assert err.getvalue() == 'Defaulted container "nginx" out of: nginx, sidecar, init (init)\n'
    alone = Pod("one", "node1", (Container("only"),))
    err = io.StringIO()
    assert container_view.pick(alone, None, err).name == "only" and err.getvalue() == ""   # no choice: no notice
    assert container_view.pick(WEB, "sidecar", err).name == "sidecar"


def test_exec_refuses_a_container_the_pod_lacks_or_one_that_ran_to_completion():
    with pytest.raises(PodlabError, match=r"container nope is not valid for pod web out of: nginx, sidecar, init \(init\)"):
        container_view.pick(WEB, "nope", io.StringIO())
    with pytest.raises(PodlabError, match="init container"):
        container_view.pick(WEB, "init", io.StringIO())


def test_the_exec_view_mounts_the_volumes_and_files_and_its_staging_goes_after(tmp_path, monkeypatch):
    monkeypatch.setattr(lab.state, "ROOT", tmp_path)
    from lab.workloads import volumes
    with pytest.raises(PodlabError, match="not made yet"):        # the agent has not started the pod
        with container_view.view("vlab", WEB, NGINX, []):
            pass
    volumes.make("vlab", "web", ["html"])
    (tmp_path / "resolv.conf").write_text("nameserver 10.96.0.10\n")
    files = [(str(tmp_path / "resolv.conf"), "/etc/resolv.conf")]
    with container_view.view("vlab", WEB, NGINX, files) as plan:
        assert isinstance(plan, mountns.Plan) and not plan.empty
        steps = plan.steps
        binds = [steps[i + 1] for i, step in enumerate(steps) if step == "bind"]
        assert str(volumes.volume_dir("vlab", "web", "html")) in binds     # the emptyDir at its mountPath
        assert str(tmp_path / "resolv.conf") in binds                    # and the kubelet's files
        assert "move" in steps and "/usr/share" in steps                  # made in an overlay of its own
        staged = list(plan.dirs)
        assert staged and all(os.path.isdir(d) and ".exec-" in d for d in staged)   # /usr/share/podlab-unit: made
    assert not any(os.path.exists(d) for d in staged)
    assert not os.path.exists("/usr/share/podlab-unit")
    with container_view.view("vlab", WEB, Container("sidecar"), files) as plan:
        assert plan is None                                          # no volumes: the files alone, as before


def test_a_services_age_counts_from_the_change_that_last_added_it(tmp_path, monkeypatch):
    from lab import converge, topology
    monkeypatch.setattr(lab.state, "ROOT", tmp_path)
    doc = ("mode: l2\nnodes: 1\npods: [{name: a, image: nginx, labels: {app: a}}]\n"
           "services: [{name: old, selector: {app: a}, ports: [{port: 80}]}%s]\n")
    before = topology.loads(doc % "")
    after = topology.loads(doc % ", {name: new, namespace: team, selector: {app: a}, ports: [{port: 80}]}")
    assert converge._services_added(before, after) == ["team/new"]
    assert converge._services_added(after, before) == [] == converge._services_added(after, after)
    assert ages.services_added("svclab") == {}                      # no journal yet: every Service is up's
    Journal("svclab").record("change", added=[], removed=[], services_added=["team/new"])
    first = ages.services_added("svclab")["team/new"]
    assert first == pytest.approx(time.time(), abs=2) and "default/old" not in ages.services_added("svclab")
    time.sleep(0.01)
    Journal("svclab").record("change", added=[], removed=[], services_added=["team/new"])    # deleted, made again
    assert ages.services_added("svclab")["team/new"] > first
