"""A Deployment's ReplicaSets, without root: the pod-template-hash from the template, a changed
template as a new ReplicaSet beside the old one, a rollout's steps as placements, a record from
before ReplicaSets were recorded, the strategy's checks, manifests' rollout fields and env."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from lab import manifests, naming, rollout, topology
from lab.errors import PodlabError
from lab.topology.placement import Scheduling

DOC = """\
design: kindnet
nodes: [node1, node2]
deployments:
  - name: web
    replicas: 3
    containers: [{name: web, image: nginx, env: [{name: GREETING, value: hello}]}]
"""


def web(topo) -> list[str]:
    return [p.name for p in topo.pods if p.deployment == "web"]


def hash_of(topo) -> str:
    return topo.deployment("web").template_hash


@pytest.mark.parametrize("change", [
    lambda d: d.replace("image: nginx", "image: nginx:1.25"),
    lambda d: d.replace("value: hello", "value: bonjour"),
    lambda d: d.replace("    containers:", "    labels: {app: web, tier: v2}\n    containers:"),
    lambda d: d.replace("    containers:", "    annotations: {kubectl.kubernetes.io/restartedAt: "
                                          "'2024-05-01T10:00:00Z'}\n    containers:"),
    lambda d: d.replace("    containers:", "    nodes: [node2]\n    containers:"),
])
def test_any_change_of_the_pod_template_is_another_hash(change):
    before, after = topology.loads(DOC, default_name="lab"), topology.loads(change(DOC), default_name="lab")
    assert hash_of(before) != hash_of(after)
    assert {n.split("-")[1] for n in web(after)} == {hash_of(after)}
    assert all(dict(p.labels)["pod-template-hash"] == hash_of(after) for p in after.pods if p.deployment == "web")


def test_what_is_not_the_template_keeps_the_hash():
    base = topology.loads(DOC, default_name="lab")
    for other in (DOC.replace("replicas: 3", "replicas: 5"),
                  DOC.replace("    replicas: 3", "    replicas: 3\n    strategy: {type: Recreate}"),
                  DOC.replace("    replicas: 3", "    replicas: 3\n    minReadySeconds: 5")):
        assert hash_of(topology.loads(other, default_name="lab")) == hash_of(base)
    # The same template written another way (the image: shorthand names its container after the image).
    short = "design: kindnet\nnodes: [node1, node2]\ndeployments:\n  - {name: web, image: nginx}\n"
    long = "design: kindnet\nnodes: [node1, node2]\ndeployments:\n  - {name: web, containers: [{name: nginx, image: nginx}]}\n"
    assert hash_of(topology.loads(short, default_name="lab")) == hash_of(topology.loads(long, default_name="lab"))
    assert hash_of(topology.loads(short, default_name="other")) != hash_of(topology.loads(short, default_name="lab"))


def running(doc: str) -> tuple:
    topo = topology.loads(doc, default_name="lab")
    return topo, topology.scheduling_of(topo.pods, None, None, topo.replicasets)


def again(doc: str, bound: Scheduling):
    topo = topology.loads(doc, default_name="lab", bound=bound)
    return topo, topology.scheduling_of(topo.pods, bound, None, topo.replicasets)


def test_a_changed_template_is_a_new_replicaset_beside_the_old_one_until_its_steps_move_the_pods():
    first, bound = running(DOC)
    changed = DOC.replace("image: nginx", "image: nginx:1.25")
    topo, bound = again(changed, bound)
    sets = {r.template_hash: r for r in topo.replicasets if r.deployment == "web"}
    old, new = sets[hash_of(first)], sets[hash_of(topo)]
    assert (old.replicas, old.revision, new.replicas, new.revision) == (3, 1, 0, 2)
    assert web(topo) == web(first)                     # nothing moved yet: the old pods, under their template
    assert all(c.image == "nginx" for p in topo.pods if p.deployment == "web" for c in p.containers)
    # A step: the new ReplicaSet scaled to 1 (as lab.rollout sets it): one pod of the new template.
    stepped = bound.copy(replicasets={**bound.replicasets, "web": [
        r if r.template_hash != new.template_hash else r.__class__(**{**r.__dict__, "replicas": 1})
        for r in bound.replicasets["web"]]}, stepped=frozenset({"web"}))
    topo, bound = again(changed, stepped)
    pods = [p for p in topo.pods if p.deployment == "web"]
    assert len(pods) == 4 and [p.containers[0].image for p in pods].count("nginx:1.25") == 1
    fresh = next(p for p in pods if p.template_hash == new.template_hash)
    assert fresh.ordinal == 3 and fresh.name not in web(first)
    # The record keeps both ReplicaSets, the old one's template with them: read back, the same pods.
    reread = Scheduling.from_record(bound.record())
    assert reread.replicasets == bound.replicasets
    assert web(topology.loads(changed, default_name="lab", bound=reread)) == [p.name for p in pods]


def test_a_template_changed_back_takes_its_old_replicaset_up_again_and_history_is_limited():
    _, bound = running(DOC.replace("replicas: 3", "replicas: 0"))
    hashes = []
    for image in ("nginx:1", "nginx:2", "nginx", "nginx:3"):    # no pods: each template's ReplicaSet at once
        topo, bound = again(DOC.replace("replicas: 3", "replicas: 0").replace("image: nginx", f"image: {image}"),
                            bound)
        hashes.append(hash_of(topo))
    sets = [r for r in topo.replicasets if r.deployment == "web"]
    assert [r.revision for r in sets] == [2, 3, 4, 5]
    assert hashes[2] == sets[2].template_hash            # nginx again: revision 1's ReplicaSet, now revision 4
    limited = DOC.replace("replicas: 3", "replicas: 0\n    revisionHistoryLimit: 1").replace("image: nginx",
                                                                                            "image: nginx:4")
    topo, _ = again(limited, bound)
    assert [r.revision for r in topo.replicasets if r.deployment == "web"] == [5, 6]


def test_a_record_from_before_replicasets_is_read_and_its_pods_keep_their_names():
    legacy_hash = naming.legacy_template_hash("lab", "web")
    names = naming.deployment_pod_names("lab", "web", legacy_hash, 3)
    first = topology.loads(DOC, default_name="lab")
    old = {"bindings": {**{n: "node1" for n in names}, **{p.name: p.node for p in first.pods if p.deployment != "web"}},
           "ordinals": {"web": [0, 1, 2], "kube-dns": [0]}, "next": {"web": 3, "kube-dns": 1}}
    old["bindings"].pop(next(p.name for p in first.pods if p.deployment == "kube-dns"))
    dns = naming.deployment_pod_names("lab", "kube-dns", naming.legacy_template_hash("lab", "kube-dns"), 1)[0]
    old["bindings"][dns] = "node1"
    bound = Scheduling.from_record(old)
    topo = topology.loads(DOC, default_name="lab", bound=bound)
    assert web(topo) == names and dns in {p.name for p in topo.pods}
    # Adopted: the ReplicaSet keeps its hash, and takes the template; a changed template then rolls.
    recorded = topology.scheduling_of(topo.pods, bound, None, topo.replicasets)
    topo = topology.loads(DOC, default_name="lab", bound=recorded)
    assert web(topo) == names
    rolled = topology.loads(DOC.replace("image: nginx", "image: nginx:1.25"), default_name="lab", bound=recorded)
    assert [(r.template_hash == legacy_hash, r.replicas) for r in rolled.replicasets if r.deployment == "web"] == \
        [(True, 3), (False, 0)]


@pytest.mark.parametrize(("strategy", "problem"), [
    ("{rollingUpdate: {maxSurge: 0, maxUnavailable: 0}}", "may not be 0 when `maxSurge` is 0"),
    ("{rollingUpdate: {maxSurge: '0%', maxUnavailable: 0}}", "may not be 0 when `maxSurge` is 0"),
    ("{rollingUpdate: {maxSurge: 20Percent}}", "value should be int(5) or percentage(5%)"),
    ("{rollingUpdate: {maxUnavailable: '110%'}}", "should not be more than 100%"),
    ("{rollingUpdate: {maxSurge: -1}}", "value should not be negative"),
    ("{type: Recreate, rollingUpdate: {maxSurge: 1}}", "may not be specified when strategy `type` is 'Recreate'"),
    ("{type: Rolling}", "unknown strategy type 'Rolling'"),
])
def test_a_strategy_the_api_server_refuses_is_an_error_with_its_path(strategy, problem):
    doc = DOC.replace("    replicas: 3", f"    replicas: 3\n    strategy: {strategy}")
    with pytest.raises(PodlabError) as e:
        topology.loads(doc, default_name="lab")
    assert problem in str(e.value) and "deployments[0].strategy" in str(e.value)


def test_progress_deadline_must_be_longer_than_min_ready():
    with pytest.raises(PodlabError, match="must be greater than minReadySeconds"):
        topology.loads(DOC.replace("    replicas: 3", "    replicas: 3\n    minReadySeconds: 10\n"
                                   "    progressDeadlineSeconds: 10"), default_name="lab")


def test_strategy_defaults_as_the_api_server_gives_them():
    d = topology.loads(DOC.replace("    replicas: 3", "    replicas: 3\n    strategy: {rollingUpdate: {maxSurge: 2}}"),
                       default_name="lab").deployment("web")
    assert (d.strategy.type, d.strategy.max_surge, d.strategy.max_unavailable) == ("RollingUpdate", 2, "25%")
    assert (d.min_ready_seconds, d.progress_deadline_seconds, d.revision_history_limit) == (0, 600, 10)


def test_a_deployment_manifests_rollout_fields_and_env_are_kept():
    text = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  minReadySeconds: 3
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}, annotations: {kubectl.kubernetes.io/restartedAt: "2024-05-01T10:00:00Z"}}
    spec:
      containers:
      - name: web
        image: nginx
        env:
        - {name: GREETING, value: hello}
        - name: POD_IP
          valueFrom: {fieldRef: {fieldPath: status.podIP}}
        - name: PASSWORD
          valueFrom: {secretKeyRef: {name: db, key: password}}
"""
    found = manifests.read(text, "web.yaml")
    entry = found.deployments[0]
    assert entry["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert entry["minReadySeconds"] == 3 and entry["annotations"] == {rollout.RESTARTED_AT: "2024-05-01T10:00:00Z"}
    assert entry["containers"][0]["env"] == [{"name": "GREETING", "value": "hello"},
                                             {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    assert found.not_emulated == ["spec.containers[0].env[2].valueFrom"]       # a Secret: not emulated


def test_bad_env_is_an_error_with_its_path():
    with pytest.raises(PodlabError, match=r"containers\[0\]\.env\[0\]\.name.*must not start with a digit"):
        topology.loads(DOC.replace("name: GREETING", "name: 1GREETING"), default_name="lab")


def test_restarted_at_is_rfc3339_as_go_formats_it():
    utc = datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=timezone.utc)
    text = rollout.restarted_at(utc)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert parsed == utc.replace(microsecond=0) and "." not in text
    assert text.endswith("Z") or text[-6] in "+-"
    plus2 = utc.astimezone(timezone(timedelta(hours=2)))
    assert datetime.fromisoformat(rollout.restarted_at(plus2).replace("Z", "+00:00")) == utc.replace(microsecond=0)


def test_a_scaled_down_replicaset_loses_its_pods_without_an_address_then_unavailable_then_doubled_up_then_newest():
    topo = topology.loads(DOC.replace("replicas: 3", "replicas: 4"), default_name="file-name")   # any lab name
    rs = next(r for r in topo.replicasets if r.deployment == "web")
    pods = sorted((p for p in topo.pods if p.deployment == "web"), key=lambda p: p.ordinal)
    # Ordinal 1 has no address (Pending: not among the lab's pods), ordinal 0 is not Ready.
    without_pending = topo.__class__(**{**topo.__dict__, "pods": tuple(p for p in topo.pods if p.ordinal != 1
                                                                         or p.deployment != "web")})
    available = {p.name for p in pods if p.ordinal in (2, 3)}
    assert rollout._scaled(without_pending, rs, 3, available).ordinals == (0, 2, 3)
    assert rollout._scaled(without_pending, rs, 2, available).ordinals == (2, 3)
    # Ordinals 0 and 2 are on node1, 3 on node2 (round-robin): node1 is doubled up, so 2 goes before
    # the newer 3 (ActivePodsWithRanks' rank: the Deployment's pods on the same node).
    assert {p.ordinal: p.node for p in pods} == {0: "node1", 1: "node2", 2: "node1", 3: "node2"}
    assert rollout._scaled(without_pending, rs, 1, available).ordinals == (3,)
    assert rollout._scaled(without_pending, rs, 5, available).replicas == 5


def test_the_deletion_order_is_the_replicaset_controllers():
    from lab.topology.replicasets import deletion_order
    node_of = {0: "a", 1: "a", 2: "a", 3: "b", 5: "b"}           # ordinal 4 is on no node (Pending)
    related = list(node_of.values()) + ["b", "b"]                 # two more of the Deployment's, other sets
    # Pending, then not available (1), then by the Deployment's pods on the node (b: 4, a: 3), newest first.
    assert deletion_order([0, 1, 2, 3, 4, 5], node_of, related, available={0, 2, 3, 5}) == [4, 1, 5, 3, 2, 0]
    assert deletion_order([0, 1, 2], {}, []) == [2, 1, 0]          # nothing placed yet: the newest first


def test_a_rolling_update_spreads_its_new_pods_over_the_nodes_as_the_scheduler_does():
    """maxSurge 1, maxUnavailable 0 over three nodes, one of them busy with two bare pods: each step
    makes one new pod and deletes one old. The new ReplicaSet's pods land on three nodes (the
    scheduler counts a ReplicaSet's own pods first) and the old pod that goes is the doubled-up one."""
    doc = ("design: kindnet\nnodes: [node1, node2, node3]\npods:\n  - {name: b1, node: node3, image: busybox}\n"
           "  - {name: b2, node: node3, image: busybox}\n" + DOC.split("nodes: [node1, node2]\n")[1])
    first, bound = running(doc)
    assert sorted(p.node for p in first.pods if p.deployment == "web") == ["node1", "node2", "node3"]
    changed = doc.replace("image: nginx", "image: nginx:1.25")
    topo, bound = again(changed, bound)
    old_hash, new_hash = hash_of(first), hash_of(topo)

    def stepped(sets: list) -> Scheduling:
        return bound.copy(replicasets={**bound.replicasets, "web": sets}, stepped=frozenset({"web"}))

    for k in (1, 2, 3):
        sets = [r if r.template_hash != new_hash else r.__class__(**{**r.__dict__, "replicas": k})
                for r in bound.replicasets["web"]]
        topo, bound = again(changed, stepped(sets))                       # a new pod, surging
        surged = {p.name: p.node for p in topo.pods if p.deployment == "web"}
        old = next(r for r in topo.replicasets if r.template_hash == old_hash)
        everyone = {p.name for p in topo.pods}
        sets = [rollout._scaled(topo, old, 3 - k, everyone) if r.template_hash == old_hash else r
                for r in bound.replicasets["web"]]
        topo, bound = again(changed, stepped(sets))                       # an old one gone
        gone = set(surged) - {p.name for p in topo.pods}
        # the old pod that went shared its node with the new one (the Deployment doubled up there)
        newest = [n for n in surged if n.split("-")[1] == new_hash]
        assert len(gone) == 1 and surged[gone.pop()] in {surged[n] for n in newest}
    new = [p for p in topo.pods if p.deployment == "web"]
    assert {p.template_hash for p in new} == {new_hash} and sorted(p.node for p in new) == ["node1", "node2", "node3"]
