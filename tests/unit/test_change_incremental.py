"""A running lab's change planned in part (lab.planner.part: the pods of the nodes it touches, and
the whole lab's ops that follow from its pods) is exactly the change that comparing every op of
the two whole plans gives (change.full_diff), object for object, in every design, for generated
sequences of changes: pods added, deleted, moved and edited (labels, hostNetwork, a command, a
hostPort), a Deployment scaled and its pods replaced, Services added and deleted, nodes joining
and leaving, static neighbour entries written or not."""
from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab import allocation, change, designs, planner, topology
from lab.errors import PodlabError

BARE = ["a", "b", "c", "d", "e"]
NODES = ["node1", "node2", "node3"]

pod_spec = st.fixed_dictionaries({
    "node": st.sampled_from([None, *NODES]),
    "app": st.sampled_from(["web", "db"]),
    "kind": st.sampled_from(["nginx", "nginx", "busybox", "command", "host", "hostport"]),
})
steps = st.lists(st.one_of(
    st.tuples(st.just("add"), st.sampled_from(BARE), pod_spec),          # new, or replacing one's spec
    st.tuples(st.just("delete"), st.sampled_from(BARE), st.none()),
    st.tuples(st.just("scale"), st.integers(0, 6), st.none()),
    st.tuples(st.just("kill"), st.integers(0, 5), st.none()),             # a Deployment's k-th pod: replaced
    st.tuples(st.just("service"), st.sampled_from(["web", "db"]), st.booleans()),   # added (True) or deleted
    st.tuples(st.just("nodes"), st.integers(2, 3), st.none()),            # nodes join or leave
), min_size=1, max_size=6)


def _pod(name: str, spec: dict) -> str:
    node = f", node: {spec['node']}" if spec["node"] and spec["node"] != "node3" else ""
    labels = f"labels: {{app: {spec['app']}}}"
    kind = spec["kind"]
    if kind == "command":
        return f"  - {{name: {name}, image: busybox, command: [sleep, '3600'], {labels}{node}}}\n"
    if kind == "host":
        return f"  - {{name: {name}, image: nginx, hostNetwork: true, {labels}{node}}}\n"
    if kind == "hostport":
        return (f"  - {{name: {name}, {labels}{node}, containers: [{{name: web, image: nginx, "
                f"ports: [{{containerPort: 80, hostPort: 8080}}]}}]}}\n")
    return f"  - {{name: {name}, image: {kind}, {labels}{node}}}\n"


# The cni attachment (the user's list, run by the real plugins: planned here, never run).
CONFLIST = ('{"cniVersion": "1.0.0", "name": "cbr0", "plugins": [{"type": "bridge", "isGateway": true, "ipam": '
            '{"type": "host-local", "ranges": [[{"subnet": "{{.PodCIDR}}"}]]}}, {"type": "portmap", '
            '"capabilities": {"portMappings": true}}]}')
CNI = f"{{attach: cni, backend: host-gw}}\ncni:\n  conflist: {json.dumps(CONFLIST)}"
DESIGNS = [*sorted(designs.PRESETS), CNI]


def _document(design: str, nodes: int, bare: dict[str, dict], replicas: int, services: set[str]) -> str:
    pods = "".join(_pod(n, s) for n, s in bare.items())
    svc = "".join(f"  - {{name: {s}, selector: {{app: {s}}}, ports: [{{name: http, port: 80}}]}}\n"
                  for s in sorted(services))
    return (f"design: {design}\nnodes: [{', '.join(NODES[:nodes])}]\n" + (f"pods:\n{pods}" if pods else "")
            + f"deployments:\n  - {{name: web, replicas: {replicas}, image: nginx, labels: {{app: web}}}}\n"
            + (f"services:\n{svc}" if svc else "services: []\n"))


def _is_subsequence(part: tuple, whole: tuple) -> bool:
    it = iter(whole)
    return all(any(op == other for other in it) for op in part)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(design=st.sampled_from(DESIGNS), static=st.booleans(), sequence=steps)
def test_a_change_planned_in_part_is_the_change_of_the_whole_plans(design, static, sequence):
    nodes, bare, replicas, services = 2, {"a": {"node": "node1", "app": "web", "kind": "nginx"}}, 2, {"web"}
    topo = topology.loads(_document(design, nodes, bare, replicas, services), default_name="lab")
    current = planner.build(topo)
    # Static entries (pod <-> pod within a node too) as a lab too large for the shared ARP table has them.
    current = planner.Plan(topo, replace(current.addresses, static_neighbours=static, static_pod_pairs=static))
    bound = topology.scheduling_of(topo.pods)
    for verb, arg, spec in sequence:
        gone: set[str] = set()
        before = (dict(bare), replicas, services, nodes)
        if verb == "add":
            bare[arg] = spec
        elif verb == "delete":
            bare.pop(arg, None)
        elif verb == "scale":
            replicas = arg
        elif verb == "kill":
            web = sorted(p.name for p in current.topology.pods if p.deployment == "web")
            gone = {web[arg]} if arg < len(web) else set()
        elif verb == "service":
            services = services | {arg} if spec else services - {arg}
        else:
            nodes = arg
        placed = topology.without(bound, gone, current.topology.pods)
        try:
            desired = topology.loads(_document(design, nodes, bare, replicas, services), default_name="lab",
                                     bound=placed)
        except PodlabError:                # a document no cluster takes (two pods on one hostPort of a node)
            bare, replicas, services, nodes = before
            continue
        addrs = allocation.allocate(desired, previous=current.addresses)
        new = planner.build(allocation.without_pending(desired, addrs), addrs)
        try:
            ch = change.diff(current, new)
        except PodlabError as refused:     # a change podlab cannot make in place is refused alike
            with pytest.raises(PodlabError, match=re.escape(str(refused))):
                change.full_diff(current, new)
            continue
        assert ch == change.full_diff(current, new) == change.plan_change(current, desired)
        # What was planned in part is the whole plans' own ops, in their order.
        pods = {p.name for p in (*current.addresses.pods, *ch.plan.addresses.pods)}
        some = set(sorted(pods)[::2])
        for plan in (current, ch.plan):
            assert _is_subsequence(planner.part(plan, pods), plan.ops)
            assert _is_subsequence(planner.part(plan, some), plan.ops)
        current, bound = ch.plan, topology.scheduling_of(desired.pods, placed, NODES[:nodes])


def test_a_cni_lab_follows_the_addresses_its_plugins_gave_in_part_as_in_whole():
    """A cni lab's plan is podlab's prediction, its addresses what host-local gave (lab.api.Lab.plan,
    _follow_plugins): the change to the plan over the observed addresses is found in part too."""
    topo = topology.loads(_document(CNI, 2, {"a": {"node": "node1", "app": "web", "kind": "nginx"},
                                             "b": {"node": "node2", "app": "web", "kind": "nginx"}}, 2, {"web"}),
                          default_name="lab")
    predicted = planner.build(topo).addresses
    first = next(p for p in predicted.pods if p.name == "a")
    observed = replace(predicted, pods=tuple(replace(p, ip=p.ip + 7) if p is first else p for p in predicted.pods))
    current = planner.Plan(topo, observed, planned_over=predicted)
    ch = change.diff(current, planner.build(topo, observed))
    assert ch.ops and not ch.added and not ch.removed       # the DNS records and endpoints follow
    assert ch == change.full_diff(current, planner.build(topo, observed))


def test_pods_and_deployments_changed_plan_in_part():
    """Changes of pods, Deployments (scaled, a new template: a ReplicaSet that lab.rollout then
    fills) and Services keep the machines (planner.same_machines): each is planned in part, and
    neither whole plan is made."""
    doc = "design: flannel\nnodes: 3\ndeployments:\n  - {name: web, replicas: REPLICAS, image: IMAGE}\n"
    svc = "services:\n  - {name: web, selector: {app: web}, ports: [{port: 80}]}\n"
    topo = topology.loads(doc.replace("REPLICAS", "4").replace("IMAGE", "nginx") + svc, default_name="lab")
    bound = topology.scheduling_of(topo.pods)
    for replicas, image, extra in ((9, "nginx", svc), (4, "nginx:perl", svc),
                                   (4, "nginx", svc + "pods:\n  - {name: x, image: busybox}\n"), (4, "nginx", "")):
        current = planner.build(topo)
        text = doc.replace("REPLICAS", str(replicas)).replace("IMAGE", image) + extra
        ch = change.plan_change(current, topology.loads(text, default_name="lab", bound=bound))
        assert current.made is None and ch.plan.made is None, text
        assert ch == change.full_diff(current, ch.plan)


def test_one_pod_into_a_large_lab_plans_only_its_nodes_pods():
    """The part a change plans: the new pod's ops, the entries the pods of its node hold for it, and
    the lab-wide ones, not the 40,000 ops of a 1000-pod lab."""
    text = ("design: flannel\nnodes: 50\ndeployments:\n  - {name: web, replicas: 1000, image: nginx}\n")
    topo = topology.loads(text, default_name="big")
    current, bound = planner.build(topo), topology.scheduling_of(topo.pods)
    desired = topology.loads(text + "pods:\n  - {name: extra, image: nginx, node: node2}\n", default_name="big",
                             bound=bound)
    ch = change.plan_change(current, desired)
    assert current.made is None and ch.plan.made is None     # neither whole plan was made
    assert ch.added == ("extra",) and not ch.removed
    part = planner.part(ch.plan, {"extra"})
    assert len(part) < 300 and len(ch.plan.ops) > 30_000
    assert ch == change.full_diff(current, ch.plan)


def test_every_design_states_whether_it_gives_nodes_a_default_route():
    """Services add a node's default route unless the design gives one (Design.node_default_route):
    what each design states is what its ops do."""
    from lab.ops import AddRoute
    for name in designs.PRESETS:
        topo = topology.loads(f"design: {name}\nnodes: [node1, node2]\nservices: []\n", default_name="lab")
        plan = planner.build(topo)
        design_ops = designs.plan(topo, plan.addresses)
        nodes = {n.netns for n in plan.addresses.nodes}
        defaults = {op.ns for op in design_ops if isinstance(op, AddRoute) and op.dst.prefixlen == 0 and op.ns in nodes}
        assert (defaults == nodes) == designs.of(topo).node_default_route, name
        assert defaults in (set(), nodes), name
