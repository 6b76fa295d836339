"""Safe under change, without root: Pending pods when a node's pod CIDR is full, the record of a
change in progress, a change's undoing planned as the change the other way, requests made again,
and changes waiting their turn for the lab's lock."""
from __future__ import annotations

import threading
import time

import pytest

from lab import allocation, change, planner, record, state, topology
from lab.engine.apply import _again
from lab.errors import PodlabError
from lab.netlink import wire as nl
from lab.netlink.writer import Request

SMALL = """name: small
design: kindnet
network: {nodeCIDRMaskSize: 28}
nodes: [node1, node2]
deployments:
  - {name: web, replicas: REPLICAS, image: nginx}
"""


def _running(replicas: int) -> tuple[planner.Plan, topology.Scheduling]:
    topo = topology.loads(SMALL.replace("REPLICAS", str(replicas)))
    return planner.build(topo), topology.scheduling_of(topo.pods)


def test_a_running_lab_scaled_beyond_its_nodes_blocks_leaves_the_rest_pending_with_host_locals_words():
    plan, bound = _running(2)
    desired = topology.loads(SMALL.replace("REPLICAS", "30"), bound=bound)   # a running lab's: no capacity error
    ch = change.plan_change(plan, desired)
    a = ch.plan.addresses
    # 13 pod addresses a node (.2-.14): 26 of the 30 replicas and the cluster DNS pod have one
    assert len(a.pods) == 26 and len(a.pending) == 5 and {p.node for p in a.pending} == {"node1", "node2"}
    assert {p.name for p in ch.plan.topology.pods} == {p.name for p in a.pods}     # planned: those with an address
    reasons = {p.node: p.reason for p in a.pending}
    assert reasons["node1"] == ("failed to allocate for range 0: no IP addresses available in range set: "
                                "10.244.0.1-10.244.0.14 (node node1's pod CIDR 10.244.0.0/28 is full)")
    assert set(ch.added) == {p.name for p in a.pods} - {p.name for p in plan.addresses.pods}
    back = allocation.from_record(allocation.record(a))
    assert back.pending == a.pending
    with pytest.raises(PodlabError, match="node node2 gets 15 pods but its /28 block"):   # a new lab must fit
        topology.loads(SMALL.replace("REPLICAS", "30"))


def test_pending_pods_get_an_address_once_one_is_free():
    plan, bound = _running(2)     # 26 replicas and the cluster DNS pod: one more than 2 x 13 addresses
    full = change.plan_change(plan, topology.loads(SMALL.replace("REPLICAS", "26"), bound=bound)).plan
    assert len(full.addresses.pending) == 1
    waiting = full.addresses.pending[0]
    bound = topology.scheduling_of(topology.loads(SMALL.replace("REPLICAS", "26"), bound=bound).pods, bound)
    victim = next(p for p in full.topology.pods if p.node == waiting.node)
    fewer = topology.loads(SMALL.replace("REPLICAS", "26"), bound=topology.without(bound, {victim.name},
                                                                                    full.topology.pods))
    ch = change.plan_change(full, fewer)
    assert waiting.name in ch.added and victim.name in ch.removed
    # The replacement of the deleted pod is the newest: it waits now, on the node with the fewest pods.
    assert len(ch.plan.addresses.pending) == 1 and ch.plan.addresses.pending[0].name != waiting.name


def test_undoing_a_change_is_the_change_the_other_way_and_brings_the_pods_back_with_their_addresses():
    plan, bound = _running(3)
    victim = sorted(p.name for p in plan.topology.pods)[0]
    desired = topology.loads(SMALL.replace("REPLICAS", "3"), bound=topology.without(bound, {victim}, plan.topology.pods))
    forward = change.plan_change(plan, desired)
    back = change.diff(forward.plan, plan)
    assert back.added == forward.removed == (victim,) and back.removed == forward.added
    assert back.remove_namespaces == tuple(sorted(forward.plan.addresses.pod(n).netns for n in forward.added))
    assert back.plan.addresses.pod(victim) == plan.addresses.pod(victim)
    assert set(back.ops) <= set(plan.ops)


def test_a_change_in_progress_is_recorded_whole_and_readers_see_the_record_it_started_from(tmp_path):
    plan, bound = _running(2)
    before = record.of(plan.topology, plan.addresses, bound)
    after = record.of(plan.topology, plan.addresses, topology.Scheduling())
    record.write(tmp_path, before)
    assert record.committed(tmp_path) == before and not record.change_pending(tmp_path)
    record.write_change(tmp_path, record.PendingChange(before, after))
    record.write(tmp_path, after)                       # a commit cut short: the files are the new record ...
    pending = record.read_change(tmp_path)
    assert record.committed(tmp_path) == before         # ... but until change.json goes, the lab is the old one
    assert (pending.target, pending.other, pending.undo) == (after, before, False)
    undo = record.PendingChange(before, after, undo=True)
    assert (undo.target, undo.other) == (before, after)
    record.end_change(tmp_path)
    assert record.committed(tmp_path) == after and record.read_change(tmp_path) is None
    topo, addrs, _ = record.load(after, "small", "small.yaml", "small")
    assert addrs == plan.addresses and topo.pods == plan.topology.pods
    assert record.plan(after, "small", "small.yaml", "small").ops == plan.ops


def test_requests_made_again_replace_what_they_make_and_forgive_what_is_gone():
    neigh = Request(nl.RTM_NEWNEIGH, nl.CREATE, b"", "neigh")
    route = Request(nl.RTM_NEWROUTE, nl.CREATE, b"", "route")
    gone = Request(nl.RTM_DELNEIGH, 0, b"", "del", gone_ok=True)
    link = Request(nl.RTM_NEWLINK, nl.CREATE, b"", "link")
    for r in (neigh, route):
        assert _again(r).flags == nl.NLM_F_CREATE | nl.NLM_F_REPLACE
    assert _again(gone) is gone       # deletions take what is gone for done anyway
    assert _again(link) is link       # a link made again is a new pod's, in a namespace made again


def test_a_change_waits_its_turn_for_the_lab_and_says_busy_only_once_it_has_waited(tmp_path, monkeypatch):
    monkeypatch.setattr(state, "ROOT", tmp_path / "state")
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with state.locked("lab1"):
            held.set()
            release.wait(5)
    t = threading.Thread(target=holder)
    t.start()
    held.wait(5)
    with pytest.raises(state.LabBusy, match=r"waited 0.2 s"):
        with state.locked("lab1", wait=0.2):
            pass
    threading.Timer(0.3, release.set).start()
    started = time.monotonic()
    with state.locked("lab1", wait=5):
        assert time.monotonic() - started >= 0.25
    t.join()
