"""The deployment controller's arithmetic (lab.rolling), against Kubernetes' own examples: the
fenceposts (maxSurge rounds up, maxUnavailable down, never both 0), each sync's step, and the
sequences of steps ResolveFenceposts' comment in deployment_util.go lists."""
from __future__ import annotations

import pytest

from lab import rolling
from lab.model import Deployment, Strategy

NEW, OLD = "new", "old"


def deployment(replicas: int, surge: int | str = "25%", unavailable: int | str = "25%",
               kind: str = rolling.ROLLING) -> Deployment:
    return Deployment("web", "default", replicas, NEW, Strategy(kind, surge, unavailable))


@pytest.mark.parametrize(("value", "total", "up", "want"), [
    ("25%", 3, True, 1), ("25%", 3, False, 0), ("25%", 4, False, 1), ("25%", 10, True, 3), ("25%", 10, False, 2),
    ("100%", 7, False, 7), ("0%", 9, True, 0), (2, 10, False, 2), ("1%", 1, True, 1), ("1%", 1, False, 0)])
def test_percentages_round_up_for_surge_and_down_for_unavailable(value, total, up, want):
    assert rolling.scaled_value(value, total, up) == want


def test_a_string_that_is_not_a_percentage_is_refused():
    with pytest.raises(ValueError, match="not a percentage"):
        rolling.scaled_value("20Percent", 10, True)


def test_fenceposts_never_both_zero():
    assert rolling.fenceposts(Strategy(max_surge="25%", max_unavailable="25%"), 3) == (1, 0)
    assert rolling.fenceposts(Strategy(max_surge="0%", max_unavailable="1%"), 2) == (0, 1)   # 1% of 2 rounds to 0
    assert rolling.fenceposts(Strategy(max_surge=1, max_unavailable=0), 3) == (1, 0)
    assert rolling.max_unavailable(deployment(3, 0, 5)) == 3          # never more than the replicas
    assert rolling.max_unavailable(deployment(3, kind=rolling.RECREATE)) == 0


def simulate(d: Deployment, old: int, available_at_once: bool = True) -> list[tuple[int, int]]:
    """The (old, new) pod counts after each step of a rollout from `old` pods of the old template,
    new pods becoming available before the next sync (as they do in a lab: a built-in server is
    Ready as it starts)."""
    sets = {OLD: rolling.Pods(OLD, 1, old, old), NEW: rolling.Pods(NEW, 2, 0, 0)}
    seen = []
    for _ in range(100):
        counts = rolling.step(d, list(sets.values()))
        if not counts:
            break
        for h, n in counts.items():
            s = sets[h]
            available = min(n, s.available) if n < s.replicas else (n if available_at_once else s.available)
            sets[h] = rolling.Pods(h, s.revision, n, available)
        seen.append((sets[OLD].replicas, sets[NEW].replicas))
    return seen


# ResolveFenceposts' examples (pkg/controller/deployment/util/deployment_util.go), as (old, new) after each step.
@pytest.mark.parametrize(("replicas", "unavailable", "surge", "steps"), [
    (2, "1%", "0%", [(1, 0), (1, 1), (0, 1), (0, 2)]),     # old(-1), new(+1), old(-1), new(+1)
    (1, "1%", "0%", [(0, 0), (0, 1)]),                     # old(-1), new(+1)
    (2, "25%", "1%", [(2, 1), (1, 1), (1, 2), (0, 2)]),    # new(+1), old(-1), new(+1), old(-1)
    (1, "25%", "1%", [(1, 1), (0, 1)]),                    # new(+1), old(-1)
    (2, "0%", "1%", [(2, 1), (1, 1), (1, 2), (0, 2)]),
    (1, "0%", "1%", [(1, 1), (0, 1)]),
])
def test_the_steps_kubernetes_documents(replicas, unavailable, surge, steps):
    assert simulate(deployment(replicas, surge, unavailable), replicas) == steps


def test_the_defaults_for_three_replicas_surge_one_pod_at_a_time():
    # 25% of 3: maxSurge 1 (up), maxUnavailable 0 (down): never fewer than 3 available, never more than 4 pods.
    assert simulate(deployment(3), 3) == [(3, 1), (2, 1), (2, 2), (1, 2), (1, 3), (0, 3)]


def test_ten_replicas_with_the_defaults_move_in_threes_and_twos():
    steps = simulate(deployment(10), 10)
    assert steps[0] == (10, 3)                  # surge: 25% of 10 rounded up, 13 pods at most
    assert steps[1] == (5, 3)                   # 13 available, 8 must stay (10 - 2): 5 old go
    assert all(old + new <= 13 for old, new in steps) and steps[-1] == (0, 10)


def test_no_old_pod_goes_while_new_ones_are_not_available_with_max_unavailable_zero():
    d = deployment(3, 1, 0)
    sets = [rolling.Pods(OLD, 1, 3, 3), rolling.Pods(NEW, 2, 1, 0)]    # the new pod is not Ready yet
    assert rolling.step(d, sets) == {}
    sets[1] = rolling.Pods(NEW, 2, 1, 1)
    assert rolling.step(d, sets) == {OLD: 2}


def test_unavailable_old_pods_go_first_and_the_oldest_replicaset_first():
    d = deployment(4, 1, 1)
    # Two old generations; the older has 2 pods of which one is not Ready.
    sets = [rolling.Pods("a", 1, 2, 1), rolling.Pods("b", 2, 2, 2), rolling.Pods(NEW, 3, 1, 1)]
    # 5 pods, 4 - 1 = 3 must stay available, the new one is: 2 may go: a's unready one, then one more of a.
    assert rolling.step(d, sets) == {"a": 0}


def test_crash_looping_new_pods_do_not_let_old_ones_go():
    d = deployment(10, 3, 2)
    sets = [rolling.Pods(OLD, 1, 8, 8), rolling.Pods(NEW, 2, 5, 0)]   # deployment_util.go's case 1
    assert rolling.step(d, sets) == {}


def test_recreate_removes_every_old_pod_then_makes_the_new_ones():
    d = deployment(3, kind=rolling.RECREATE)
    assert simulate(d, 3) == [(0, 0), (0, 3)]


def test_a_scaled_down_deployment_scales_its_new_replicaset_down_at_once():
    d = deployment(2)
    assert rolling.step(d, [rolling.Pods(OLD, 1, 1, 1), rolling.Pods(NEW, 2, 3, 3)]) == {NEW: 2}


@pytest.mark.parametrize(("sets", "message", "done"), [
    ([rolling.Pods(OLD, 1, 3, 3), rolling.Pods(NEW, 2, 1, 0)],
     'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...', False),
    ([rolling.Pods(OLD, 1, 1, 1), rolling.Pods(NEW, 2, 3, 3)],
     'Waiting for deployment "web" rollout to finish: 1 old replicas are pending termination...', False),
    ([rolling.Pods(OLD, 1, 0, 0), rolling.Pods(NEW, 2, 3, 2)],
     'Waiting for deployment "web" rollout to finish: 2 of 3 updated replicas are available...', False),
    ([rolling.Pods(OLD, 1, 0, 0), rolling.Pods(NEW, 2, 3, 3)], 'deployment "web" successfully rolled out', True),
])
def test_status_says_what_kubectl_rollout_status_says(sets, message, done):
    assert rolling.status(deployment(3), sets) == (message, done)
