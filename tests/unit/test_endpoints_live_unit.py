"""Endpoints that follow readiness, without root: which pods are ready, the transactions kube-proxy
sends for one Service, the spec the plan writes for it, kubectl's delete of Deployments, Services
and namespaces, and the watch loop of `get -w`."""
from __future__ import annotations

import io
import json
from types import SimpleNamespace

import pytest
import yaml

from lab import apply_cli, cli, planner, topology, watch, workloads
from lab.services import endpoints, kube_proxy, nft
from lab.services.nft import PortRules

SERVICES = """
name: ep
design: kindnet
nodes: [node1, node2]
pods:
  - {name: a, node: node1, image: nginx, labels: {app: web}}
  - {name: b, node: node2, image: nginx, labels: {app: web}}
  - {name: c, node: node2, image: nginx, namespace: team, labels: {app: api}}
deployments:
  - {name: web, replicas: 2, image: nginx}
services:
  - {name: web, selector: {app: web}, ports: [{name: http, port: 80}]}
  - {name: api, namespace: team, type: NodePort, selector: {app: api}, ports: [{port: 80, nodePort: 30080}]}
"""


def test_a_pod_is_ready_when_every_container_runs():
    assert workloads.pod_ready(["Running", "Running"])
    assert not workloads.pod_ready(["Running", "Waiting"]) and not workloads.pod_ready([])
    status = {"pods": {"up": {"containers": {"c": {"state": "Running"}}},
                       "crashing": {"containers": {"c": {"state": "Waiting", "message": "CrashLoopBackOff: ..."}}},
                       "two": {"containers": {"x": {"state": "Running"}, "y": {"state": "Error"}}}}}
    assert workloads.ready_pods(status) == {"up"}
    assert workloads.ready_pods({}) == set() and workloads.ready_pods({"pods": []}) == set()


def test_a_running_labs_endpoints_are_its_ready_pods():
    topo = topology.loads(SERVICES)
    plan = planner.build(topo)
    every = endpoints.plan(topo, plan.addresses)
    web = every.find("default", "web")
    selected = ["a", "b"] + [p.name for p in topo.pods if p.deployment == "web"]   # the Deployment's: app=web too
    assert [b.pod for b in web.ports[0].backends] == selected and len(selected) == 4
    ready = endpoints.plan(topo, plan.addresses, ready={"b", "c"})
    assert [b.pod for b in ready.find("default", "web").ports[0].backends] == ["b"]
    assert list(ready.find("default", "web").pods) == selected      # what it selects is another matter
    assert [b.pod for b in ready.find("default", "kubernetes").ports[0].backends] == [None]   # the API server


def _rules(*endpoints: tuple[str, int], node_port: int | None = None) -> PortRules:
    return PortRules("default", "web", "http", "tcp", "10.96.0.2", 80, node_port, tuple(endpoints))


def test_one_endpoint_going_rewrites_only_its_services_chain_and_deletes_its_own():
    old = _rules(("10.244.0.3", 80), ("10.244.1.3", 80))
    new = old.with_endpoints([("10.244.1.3", 80)])
    lines = nft.update(old, new, "10.244.0.0/16")
    gone = old.endpoint_chain("10.244.0.3", 80)
    assert f"delete chain ip kube-proxy {gone}" == lines[-1]
    assert lines.index(f"flush chain ip kube-proxy {gone}") < lines.index(f"delete chain ip kube-proxy {gone}")
    assert not [line for line in lines if "element" in line]           # the map keeps its element
    vmap = next(line for line in lines if "numgen" in line)
    assert "mod 1 vmap" in vmap and new.endpoint_chain("10.244.1.3", 80) in vmap
    # every chain exists before a rule names it
    assert all(lines.index(f"add chain ip kube-proxy {c}") < lines.index(vmap) for c, _ in nft.chains(new, "x"))


def test_the_last_endpoint_going_sends_the_port_to_reject_and_back():
    old = _rules(("10.244.0.3", 80), node_port=30080)
    none = old.with_endpoints([])
    down = nft.update(old, none, "10.244.0.0/16")
    assert "delete element ip kube-proxy service-ips { 10.96.0.2 . tcp . 80 }" in down
    assert "delete element ip kube-proxy service-nodeports { tcp . 30080 }" in down
    assert 'add element ip kube-proxy no-endpoint-services { 10.96.0.2 . tcp . 80 comment "default/web:http" : ' \
           'goto reject-chain }' in down
    chains_gone = [line for line in down if line.startswith("delete chain")]
    assert len(chains_gone) == 3 and down[-3:] == chains_gone          # after the elements that named them
    up = nft.update(none, old, "10.244.0.0/16")
    assert "delete element ip kube-proxy no-endpoint-services { 10.96.0.2 . tcp . 80 }" in up
    assert f"add element ip kube-proxy service-ips {{ 10.96.0.2 . tcp . 80 : goto {old.service_chain} }}" in up
    assert nft.update(old, None, "x")[-1].startswith("delete chain") and not nft.update(None, None, "x")


def test_the_whole_table_is_the_same_rendered_from_the_plan_or_from_port_rules():
    topo = topology.loads(SERVICES)
    plan = planner.build(topo)
    splan = endpoints.plan(topo, plan.addresses)
    assert nft.kube_proxy(splan, topo.pod_cidr) == nft.table(nft.planned_ports(splan), topo.pod_cidr)
    text = nft.replace_table(nft.planned_ports(splan), topo.pod_cidr)
    assert text.startswith("table ip kube-proxy {}\ndelete table ip kube-proxy\ntable ip kube-proxy {")


def test_the_plan_writes_kube_proxys_spec_and_marks_its_table_kept():
    from lab.ops import ApplyNft, WriteFile
    plan = planner.build(topology.loads(SERVICES))
    spec_op = next(op for op in plan.ops if isinstance(op, WriteFile) and op.path.endswith(kube_proxy.SPEC_FILE))
    spec = kube_proxy.parse(json.loads(spec_op.content))
    assert spec.nodes == ("ep-node1", "ep-node2") and spec.pod_cidr == "10.244.0.0/16"
    assert all(op.kept for op in plan.ops if isinstance(op, ApplyNft) and op.table == "ip kube-proxy")
    # The spec's planned ports are the table the plan loads.
    table = next(op.ruleset for op in plan.ops if isinstance(op, ApplyNft) and op.table == "ip kube-proxy")
    assert nft.table(list(spec.desired(None).values()), spec.pod_cidr) == table
    web = spec.desired({"b"})[("default", "web", "tcp", "http")]
    b_ip = str(plan.addresses.pod("b").ip)
    assert web.endpoints == ((b_ip, 80),)
    api_port = spec.desired(set())[("team", "api", "tcp", "")]
    assert api_port.endpoints == () and api_port.node_port == 30080
    assert spec.desired(set())[("default", "kubernetes", "tcp", "https")].endpoints   # always there


def test_kube_proxy_sends_only_what_changed_and_the_whole_table_when_it_does_not_know():
    spec = kube_proxy.parse(json.loads(next(op.content for op in planner.build(topology.loads(SERVICES)).ops
                                            if getattr(op, "path", "").endswith(kube_proxy.SPEC_FILE))))
    planned, some = spec.desired(None), spec.desired({"a"})
    assert kube_proxy.transaction(planned, planned, spec.pod_cidr) is None
    text = kube_proxy.transaction(planned, some, spec.pod_cidr)
    assert "default/web/" in text and "team/api" in text and "kube-dns" in text       # its pod is not ready
    assert "default/kubernetes" not in text
    assert kube_proxy.transaction(None, some, spec.pod_cidr).startswith("table ip kube-proxy {}\ndelete table")
    gone = {k: v for k, v in some.items() if k[1] != "web"}
    deleted = kube_proxy.transaction(some, gone, spec.pod_cidr)
    assert deleted and all("default/web/" in line or "10.96.0" in line for line in deleted.splitlines())


class _Lab(SimpleNamespace):
    pass


def _lab(text: str = SERVICES) -> _Lab:
    topo = topology.loads(text)
    return _Lab(name="ep", topology=topo, scheduling=None)


def test_delete_takes_a_deployment_a_service_or_a_namespace_out_of_the_document():
    lab = _lab()
    document = yaml.safe_load(lab.topology.text)
    deleted, gone, errors = apply_cli._delete_objects(lab, document, [
        ("deployment", "default", "web"), ("service", "default", "web"), ("service", "default", "nope"),
        ("deployment", "default", "web")])
    assert deleted == [("deployment", "web"), ("service", "web")]
    assert gone == {p.name for p in lab.topology.pods if p.deployment == "web"} and gone
    assert errors == [("NotFound", 'services "nope" not found'), ("NotFound", 'deployments.apps "web" not found')]
    assert document["services"] == [s for s in yaml.safe_load(lab.topology.text)["services"] if s["name"] != "web"]
    assert document["deployments"] == []

    document = yaml.safe_load(lab.topology.text)
    deleted, gone, errors = apply_cli._delete_objects(lab, document, [
        ("namespace", "", "team"), ("namespace", "", "kube-system"), ("namespace", "", "elsewhere"),
        ("pod", "default", "c")])
    assert deleted == [("namespace", "team")] and gone == {"c"}
    assert errors == [("Forbidden", 'namespaces "kube-system" is forbidden: this namespace may not be deleted'),
                      ("NotFound", 'namespaces "elsewhere" not found'), ("NotFound", 'pods "c" not found')]
    assert [p["name"] for p in document["pods"]] == ["a", "b"] and [s["name"] for s in document["services"]] == ["web"]


def test_deleting_podlabs_own_services_is_refused_in_words():
    from lab.errors import PodlabError
    lab = _lab()
    with pytest.raises(PodlabError, match="kube-dns.*the cluster DNS's, which podlab makes itself"):
        apply_cli._delete_objects(lab, yaml.safe_load(lab.topology.text), [("service", "kube-system", "kube-dns")])


def test_services_that_stay_keep_their_cluster_ips_and_node_ports():
    lab = _lab(SERVICES.replace("  - {name: web, selector", "  - {name: first, selector: {app: x}, ports: [{port: 1}]}\n"
                                                           "  - {name: web, selector"))
    ips = {s.name: s.cluster_ip for s in lab.topology.services}
    document = yaml.safe_load(lab.topology.text)
    apply_cli._delete_objects(lab, document, [("service", "default", "first")])
    apply_cli._keep_cluster_ips(lab, document)
    after = {s.name: s for s in topology.loads(yaml.safe_dump(document)).services}
    assert "first" not in after and after["web"].cluster_ip == ips["web"]
    assert after["api"].cluster_ip == ips["api"] and after["api"].ports[0].node_port == 30080


def test_delete_parses_kubectls_kinds_and_namespace():
    args = cli.build_parser().parse_args(["delete", "deploy", "web", "-n", "team"])
    assert (apply_cli.KIND_OF[args.kind], args.names, args.namespace) == ("deployment", ["web"], "team")
    for kind in ("svc", "services", "ns", "namespace", "po", "pod"):
        assert cli.build_parser().parse_args(["delete", kind, "x"]).kind == kind


def test_the_watch_loop_prints_changed_rows_and_the_ones_that_went(monkeypatch):
    frames = iter([[["default", "web", "10.0.0.1:80", "5s"], ["default", "db", "<none>", "5s"]],
                   [["default", "web", "10.0.0.1:80", "6s"], ["default", "db", "<none>", "6s"]],   # only AGE moved
                   [["default", "web", "10.0.0.1:80,10.0.0.2:80", "7s"]]])                        # db went
    monkeypatch.setattr(watch, "INTERVAL", 0.0)
    monkeypatch.setattr(watch.api, "Lab", lambda name: name)
    cols = ["NAMESPACE", "NAME", "ENDPOINTS", "AGE"]
    first = [["default", "web", "10.0.0.1:80", "4s"], ["default", "db", "<none>", "4s"]]
    out = io.StringIO()

    def rows(_lab):
        try:
            return next(frames)
        except StopIteration:
            raise KeyboardInterrupt from None       # Ctrl-C ends a watch
    assert watch.watch("ep", cols, first, rows, 2, None, out) == 0
    assert out.getvalue().splitlines() == ["default     web    10.0.0.1:80,10.0.0.2:80   7s", "default   db   deleted"]


def test_a_node_that_joins_gets_its_table_made_whole_and_one_that_leaves_is_forgotten(tmp_path):
    plan = planner.build(topology.loads(SERVICES))
    content = next(op.content for op in plan.ops if getattr(op, "path", "").endswith(kube_proxy.SPEC_FILE))
    path = tmp_path / kube_proxy.SPEC_FILE
    path.write_text(content)
    proxy = kube_proxy.KubeProxy(path, lambda _: None, table_as_planned=True)
    assert set(proxy.kernel) == {"ep-node1", "ep-node2"} and all(v is not None for v in proxy.kernel.values())
    data = json.loads(content)
    data["nodes"] = ["ep-node2", "ep-node3"]
    path.write_text(json.dumps(data))
    proxy.reload()
    assert proxy.kernel["ep-node2"] is not None and proxy.kernel["ep-node3"] is None and "ep-node1" not in proxy.kernel
    again = kube_proxy.KubeProxy(path, lambda _: None, table_as_planned=False)   # an agent started again
    assert all(v is None for v in again.kernel.values())
