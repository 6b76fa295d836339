"""The deployment controller's arithmetic, pure: how far a Deployment may go in one step from the
ReplicaSets it has to the one its template asks for, and what `kubectl rollout status` says of it.

Taken from Kubernetes (pkg/controller/deployment: rolling.go, recreate.go, util/deployment_util.go;
kubectl's pkg/polymorphichelpers/rollout_status.go). RollingUpdate: the new ReplicaSet is scaled up
while all pods stay within replicas + maxSurge (maxSurge rounded up from a percentage); old ones are
scaled down while the available pods stay at least replicas - maxUnavailable (rounded down; if both
come to 0, maxUnavailable is 1), the unavailable pods of old ReplicaSets first and the oldest
ReplicaSet first, never counting on new pods that are not available yet. One step either scales up
or scales down, as one sync of the controller does. Recreate: every old pod goes, then the new ones
come. lab.rollout carries the steps out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from lab.model import Deployment, Strategy

ROLLING, RECREATE = "RollingUpdate", "Recreate"


def scaled_value(value: int | str, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent: a number as it is, "N%" of `total` rounded up or down;
    ValueError for a string that is not a percentage."""
    if isinstance(value, int):
        return value
    if not value.endswith("%") or not value[:-1].isdigit():
        raise ValueError(f"invalid value for IntOrString: invalid type: string is not a percentage: {value!r}")
    share = int(value[:-1]) * total / 100
    return math.ceil(share) if round_up else math.floor(share)


def fenceposts(strategy: Strategy, replicas: int) -> tuple[int, int]:
    """ResolveFenceposts: (maxSurge, maxUnavailable) in pods for this many replicas."""
    surge = scaled_value(strategy.max_surge, replicas, True)
    unavailable = scaled_value(strategy.max_unavailable, replicas, False)
    if surge == 0 and unavailable == 0:
        # Validation refuses both 0, but a percentage may round down to 0: then one pod at a time may be
        # unavailable, "on the theory that surge might not work due to quota".
        unavailable = 1
    return surge, unavailable


def max_unavailable(d: Deployment) -> int:
    if d.strategy.type != ROLLING or d.replicas == 0:
        return 0
    return min(fenceposts(d.strategy, d.replicas)[1], d.replicas)


def max_surge(d: Deployment) -> int:
    return fenceposts(d.strategy, d.replicas)[0] if d.strategy.type == ROLLING else 0


@dataclass(frozen=True)
class Pods:
    """A ReplicaSet as the controller sees it: its spec.replicas and its status.availableReplicas."""
    template_hash: str
    revision: int
    replicas: int
    available: int = 0


def step(d: Deployment, sets: list[Pods]) -> dict[str, int]:
    """The ReplicaSets' replica counts after the controller's next sync of `d` (by template hash),
    only those that change; {} when there is nothing to do now (done, or waiting for pods to become
    available). `sets`: every ReplicaSet of the Deployment, the new one (d.template_hash) among them."""
    new = next(s for s in sets if s.template_hash == d.template_hash)
    old = sorted((s for s in sets if s is not new), key=lambda s: s.revision)   # the oldest first
    if d.strategy.type == RECREATE:
        # recreate.go: scale every old ReplicaSet down to 0; once their pods are gone (at once here:
        # a change removes them), scale the new one up.
        if any(s.replicas for s in old):
            return {s.template_hash: 0 for s in old if s.replicas}
        return {new.template_hash: d.replicas} if new.replicas != d.replicas else {}
    up = _scale_up(d, sets, new)
    if up is not None:
        return {new.template_hash: up}
    return _scale_down(d, sets, new, old)


def _scale_up(d: Deployment, sets: list[Pods], new: Pods) -> int | None:
    """reconcileNewReplicaSet with NewRSNewReplicas: the new ReplicaSet's count, if it changes."""
    if new.replicas == d.replicas:
        return None
    if new.replicas > d.replicas:
        return d.replicas
    most = d.replicas + scaled_value(d.strategy.max_surge, d.replicas, True)
    current = sum(s.replicas for s in sets)
    if current >= most:
        return None
    return new.replicas + min(most - current, d.replicas - new.replicas)


def _scale_down(d: Deployment, sets: list[Pods], new: Pods, old: list[Pods]) -> dict[str, int]:
    """reconcileOldReplicaSets: cleanupUnhealthyReplicas, then scaleDownOldReplicaSetsForRollingUpdate."""
    if not any(s.replicas for s in old):
        return {}
    min_available = d.replicas - max_unavailable(d)
    # Not counting on the new pods that are not available yet: they may never be (a crash loop).
    most = sum(s.replicas for s in sets) - min_available - (new.replicas - new.available)
    if most <= 0:
        return {}
    counts: dict[str, int] = {}
    done = 0
    for s in old:                      # old pods that are not available go first: that costs nothing
        if done >= most:
            break
        if s.replicas == 0 or s.replicas == s.available:
            continue
        down = min(most - done, s.replicas - s.available)
        counts[s.template_hash] = s.replicas - down
        done += down
    available = sum(s.available for s in sets)
    if available > min_available:      # then available ones, while enough stay available
        want, done = available - min_available, 0
        for s in old:
            if done >= want:
                break
            have = counts.get(s.template_hash, s.replicas)
            if have == 0:
                continue
            down = min(have, want - done)
            counts[s.template_hash] = have - down
            done += down
    return counts


def status(d: Deployment, sets: list[Pods]) -> tuple[str, bool]:
    """What `kubectl rollout status` prints of the Deployment, and whether it is done."""
    new = next((s for s in sets if s.template_hash == d.template_hash), None)
    updated = new.replicas if new else 0
    total = sum(s.replicas for s in sets)
    available = sum(s.available for s in sets)
    waiting = f'Waiting for deployment "{d.name}" rollout to finish: '
    if updated < d.replicas:
        return waiting + f"{updated} out of {d.replicas} new replicas have been updated...", False
    if total > updated:
        return waiting + f"{total - updated} old replicas are pending termination...", False
    if available < updated:
        return waiting + f"{available} of {updated} updated replicas are available...", False
    return f'deployment "{d.name}" successfully rolled out', True
