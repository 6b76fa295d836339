"""A running lab's changes without root: Kubernetes manifests read as pods, and what a change means."""
from __future__ import annotations

import pytest

from lab import change, manifests, planner, topology
from lab.errors import PodlabError
from lab.ops import CreateNamespace, CreateVeth

NGINX_POD = """apiVersion: v1
kind: Pod
metadata:
  name: nginx-pod
  labels:
    app: nginx
spec:
  containers:
  - name: nginx-container
    image: nginx
    ports:
    - containerPort: 80
"""


def test_seed_004s_pod_manifest_reads_as_a_pod_entry():
    found = manifests.read(NGINX_POD, "nginx_pod.yaml")
    assert found.pods == [{"name": "nginx-pod", "labels": {"app": "nginx"}, "containers": [
        {"name": "nginx-container", "image": "nginx", "ports": [{"containerPort": 80}]}]}]
    assert manifests.is_manifest(NGINX_POD) and not manifests.is_manifest("nodes: [node1]\n")


@pytest.mark.parametrize("text, words", [
    ("apiVersion: v1\nkind: Secret\nmetadata: {name: x}\n", "document 1, kind (line 2): v1/Secret is not a kind"),
    (NGINX_POD.replace("  labels:", "  owner: me\n  labels:"), "document 1, metadata.owner (line 5): unknown field"),
    ("---\n" + NGINX_POD + "---\napiVersion: v1\nkind: Pod\nmetadata: {name: b}\nspec: {}\n",
     "document 2, spec.containers"),
])
def test_bad_manifests_name_document_path_and_line(text, words):
    with pytest.raises(PodlabError) as e:
        manifests.read(text, "f.yaml")
    assert words in str(e.value) and "nothing was changed" in str(e.value)


def test_fields_not_emulated_are_listed():
    text = NGINX_POD.replace("  containers:", "  restartPolicy: Always\n  containers:").replace(
        "    image: nginx", "    image: nginx\n    resources: {limits: {cpu: 1}}")
    assert manifests.read(text, "f").not_emulated == ["spec.restartPolicy", "spec.containers[0].resources"]


def _topo(pods: str, header: str = "design: kindnet\n") -> topology.Topology:
    return topology.loads(f"{header}nodes: [node1, node2]\npods:\n{pods}", default_name="lab")


def test_a_change_makes_only_the_new_pods_objects_and_removes_the_gone_pods_namespace():
    a, b = "  - {name: a, node: node1, image: nginx}\n", "  - {name: b, node: node2, image: nginx}\n"
    current = planner.build(_topo(a + b))
    ch = change.plan_change(current, _topo(a + "  - {name: c, node: node2, image: nginx}\n"))
    assert ch.added == ("c",) and ch.removed == ("b",) and ch.remove_namespaces == ("lab-b",)
    assert [op.ns for op in ch.ops if isinstance(op, CreateNamespace)] == ["lab-c"]
    assert {op.peer_ns for op in ch.ops if isinstance(op, CreateVeth)} == {"lab-c"}
    c = next(p for p in ch.plan.addresses.pods if p.name == "c")
    b_ip = next(p for p in current.addresses.pods if p.name == "b").ip
    assert c.ip == b_ip + 1          # the next after the last handed out, not b's


def test_a_pod_moved_to_another_node_is_made_again_under_its_name():
    current = planner.build(_topo("  - {name: a, node: node1, image: nginx}\n"))
    ch = change.plan_change(current, _topo("  - {name: a, node: node2, image: nginx}\n"))
    assert ch.added == ch.removed == ("a",) and ch.remove_namespaces == ("lab-a",)
    assert [op.ns for op in ch.ops if isinstance(op, CreateNamespace)] == ["lab-a"]


def test_changes_a_running_lab_cannot_take_are_refused_with_the_reason():
    a = "  - {name: a, node: node1, image: nginx}\n"
    current = planner.build(_topo(a))
    with pytest.raises(PodlabError, match="touches the design"):
        change.plan_change(current, _topo(a, "design: flannel\n"))
    with pytest.raises(PodlabError, match=r"touches the cluster DNS \(dns: true -> false\)"):
        change.plan_change(current, _topo(a, "design: kindnet\ndns: false\n"))
    bare = planner.build(_topo(a, "design: kindnet\ndns: false\n"))      # no Services at all: no kube-proxy
    with pytest.raises(PodlabError, match="whether the lab runs kube-proxy .it was made with dns: false and no "
                                          "services: key"):
        change.plan_change(bare, _topo(a, "design: kindnet\ndns: false\nservices: []\n"))


def test_a_lab_without_a_services_key_takes_its_first_service_in_place():
    """Every lab has the kube-dns Service, so a Service applied to a lab made without services: is
    one more for the agent's kube-proxy (kube-proxy.json), made in place: no table loaded whole."""
    import json

    from lab.ops import ApplyNft, WriteFile
    a = "  - {name: a, node: node1, image: nginx, labels: {app: web}}\n"
    current = planner.build(_topo(a))
    svc = "design: kindnet\nservices:\n  - {name: web, selector: {app: web}, ports: [{port: 80}]}\n"
    ch = change.plan_change(current, _topo(a, svc))
    assert not [op for op in ch.ops if isinstance(op, ApplyNft)]
    spec = next(json.loads(op.content) for op in ch.ops if isinstance(op, WriteFile) and op.path.endswith("kube-proxy.json"))
    assert "web" in {p["service"] for p in spec["ports"]}
    assert not ch.added and not ch.removed and ch.restarted == ()


def test_a_new_pod_reloads_kube_proxy_and_the_dns_records_without_restarting_the_dns():
    import json

    from lab.ops import ApplyNft, WriteFile
    svc = "design: kindnet\nservices:\n  - {name: web, selector: {app: web}, ports: [{name: http, port: 80}]}\n"
    a = "  - {name: a, node: node1, image: nginx, labels: {app: web}}\n"
    current = planner.build(_topo(a, svc))
    ch = change.plan_change(current, _topo(a + "  - {name: b, node: node2, image: nginx, labels: {app: web}}\n", svc))
    assert not [op for op in ch.ops if isinstance(op, ApplyNft)]     # the agent's kube-proxy rewrites the one Service
    spec = next(json.loads(op.content) for op in ch.ops if isinstance(op, WriteFile) and op.path.endswith("kube-proxy.json"))
    web = next(p for p in spec["ports"] if p["service"] == "web")
    assert [pod for pod, _ip, _port in web["endpoints"]] == ["a", "b"]
    b = next(p for p in ch.plan.addresses.pods if p.name == "b")
    written = [op for op in ch.ops if isinstance(op, WriteFile) and op.path.startswith("$LAB_DIR/dns/")]
    assert [op.path for op in written] == ["$LAB_DIR/dns/records/cluster"] and written[0].live   # not dnsmasq.conf
    assert f"{b.ip} {str(b.ip).replace('.', '-')}.default.pod.cluster.local\n" in written[0].content
    assert ch.restarted == ()          # dnsmasq reads its records again by itself


@pytest.mark.parametrize("design", ["kindnet", "flannel", "calico", "calico-vxlan", "flannel-host-gw", "bridge-l2"])
def test_every_design_can_lose_a_pod_in_place(design):
    a, b = "  - {name: a, node: node1, image: nginx}\n", "  - {name: b, node: node2, image: nginx}\n"
    current = planner.build(_topo(a + b, f"design: {design}\n"))
    ch = change.plan_change(current, _topo(a, f"design: {design}\n"))
    assert ch.removed == ("b",) and not [op for op in ch.ops if getattr(op, "ns", None) == "lab-b"]


def test_a_large_lab_forgets_a_gone_pods_static_neighbours():
    from lab.ops import DelNeighbour
    pods = "".join(f"  - {{name: p{i}, node: node{1 + i % 2}, image: nginx}}\n" for i in range(400))
    current = planner.build(_topo(pods, "design: flannel\n"))
    assert current.addresses.static_neighbours
    ch = change.plan_change(current, _topo(pods.replace("  - {name: p7, node: node2, image: nginx}\n", ""),
                                           "design: flannel\n"))
    gone = next(p for p in current.addresses.pods if p.name == "p7")
    dels = [op for op in ch.ops if isinstance(op, DelNeighbour)]
    assert dels and all(op.address == gone.ip for op in dels) and ch.removed == ("p7",)


def test_a_deployment_keeps_its_pods_and_replaces_a_deleted_one_under_a_new_name():
    doc = "design: kindnet\nnodes: [node1, node2]\ndeployments:\n  - {name: web, replicas: 3, image: nginx}\n"
    first = topology.loads(doc, default_name="lab")
    bound = topology.scheduling_of(first.pods)
    names = [p.name for p in first.pods if p.deployment == "web"]
    victim = first.pods[1]
    again = topology.loads(doc, default_name="lab", bound=topology.without(bound, {victim.name}, first.pods))
    now = {p.name: p.node for p in again.pods if p.deployment == "web"}
    assert victim.name not in now and len(now) == 3
    assert all(now[p.name] == p.node for p in first.pods[:3] if p != victim)    # the others stay put
    new = next(p for p in again.pods if p.name not in names)
    assert new.ordinal == 3 and new.name.startswith(names[0].rsplit("-", 1)[0])         # same ReplicaSet, new suffix
    # The new pod went where the ReplicaSet had none left: one node has two, the other one.
    assert now[new.name] == victim.node and sorted(now.values()) == ["node1", "node1", "node2"]
    # Scaled down to 2: a pod of the doubled-up node goes (the newer of its two), not the newest of all;
    # up to 4: one more of a new ordinal, on the node with the fewest pods.
    b2 = topology.scheduling_of(again.pods, bound)
    down = topology.loads(doc.replace("replicas: 3", "replicas: 2"), default_name="lab", bound=b2)
    doubled = sorted((p for p in again.pods if p.deployment == "web" and now[p.name] == "node1"),
                     key=lambda p: p.ordinal)
    assert {p.name for p in down.pods if p.deployment == "web"} == {n for n in now if n != doubled[-1].name}
    assert {p.node for p in down.pods if p.deployment == "web"} == {"node1", "node2"}
    up = topology.loads(doc.replace("replicas: 3", "replicas: 4"), default_name="lab", bound=b2)
    web = [p for p in up.pods if p.deployment == "web"]
    assert len(web) == 4 and {p.ordinal for p in web} == {0, 2, 3, 4}
    assert sorted(list({p.node for p in web})) == ["node1", "node2"]
