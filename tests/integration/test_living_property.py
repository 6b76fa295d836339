"""Generated sequences of changes to a running lab (pods applied and deleted, a Deployment scaled and
rolled) end in exactly the kernel objects the lab's final plan describes — the objects a build from
scratch of that cluster, with the names and addresses allocation chose, would make: no namespace,
link, address, route or permanent neighbour missing or left over — and `check` passes.

Examples: PODLAB_PROPERTY_EXAMPLES (default 12, so CI stays quick; 200 for a thorough run).
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from labcheck import kernel_objects as actual
from labcheck import planned_objects as expected

from lab import api, check, topology

EXAMPLES = int(os.environ.get("PODLAB_PROPERTY_EXAMPLES", "12"))
BARE = ["a", "b", "c", "d"]

steps = st.lists(st.one_of(
    st.tuples(st.just("add"), st.sampled_from(BARE), st.sampled_from([None, "node1", "node2"])),
    st.tuples(st.just("delete"), st.sampled_from(BARE), st.none()),
    st.tuples(st.just("scale"), st.integers(0, 4), st.none()),
    st.tuples(st.just("restart"), st.none(), st.none()),
    st.tuples(st.just("kill"), st.integers(0, 3), st.none()),   # delete the Deployment's k-th pod: it is replaced
), min_size=1, max_size=6)


def desired(lab: api.Lab, bare: dict[str, str | None], replicas: int, gone: set[str]) -> topology.Topology:
    pods = "".join(f"  - {{name: {n}, image: nginx{', node: ' + node if node else ''}}}\n" for n, node in bare.items())
    text = (f"name: liveprop\ndesign: {lab.design.name}\nnodes: [node1, node2]\n" + (f"pods:\n{pods}" if pods else "")
            + f"deployments:\n  - {{name: web, replicas: {replicas}, image: nginx}}\n")
    bound = topology.without(lab.scheduling, gone, lab.topology.pods)
    return topology.loads(text, default_name=lab.document_name, bound=bound)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(design=st.sampled_from(["kindnet", "flannel", "calico-vxlan"]), sequence=steps)
def test_any_sequence_of_changes_ends_in_the_kernel_objects_of_the_final_plan(design, sequence):
    name = "liveprop"
    api.up(topology.loads(f"name: {name}\ndesign: {design}\nnodes: [node1, node2]\ndeployments:\n"
                          "  - {name: web, replicas: 2, image: nginx}\n", default_name=name))
    try:
        bare: dict[str, str | None] = {}
        replicas = 2
        for verb, arg, node in sequence:
            lab = api.Lab(name)
            gone: set[str] = set()
            if verb == "add":
                bare[arg] = bare.get(arg, node) if arg in bare else node
            elif verb == "delete":
                bare.pop(arg, None)
            elif verb == "scale":
                replicas = arg
            elif verb == "restart":
                gone = {p.name for p in lab.topology.pods if p.deployment == "web"}
            else:
                web = sorted(p.name for p in lab.topology.pods if p.deployment == "web")
                gone = {web[arg]} if arg < len(web) else set()
            api.change(name, desired(lab, bare, replicas, gone), current=lab)
        lab = api.Lab(name)
        assert len([p for p in lab.topology.pods if p.deployment == "web"]) == replicas
        assert {p.name for p in lab.topology.pods if p.deployment is None} == set(bare)
        want = expected(lab)
        namespaces = {t.netns for t in lab.targets().values()} | set(want)
        assert actual(namespaces) == {ns: want.get(ns, set()) for ns in namespaces}
        assert all(r.passed for r in check.run(lab))
    finally:
        api.down(name)
