"""A Deployment's own fields beyond its replicas: spec.strategy (RollingUpdate with maxSurge and
maxUnavailable, or Recreate), minReadySeconds, progressDeadlineSeconds, revisionHistoryLimit;
defaulted and checked as the API server does (apps/v1 defaults, ValidateDeploymentSpec)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lab import rolling
from lab.model import Strategy
from lab.topology.checker import Checker, YamlPath, choice
from lab.topology.schema import ROLLING_UPDATE_SCHEMA, STRATEGY_SCHEMA
from lab.topology.wording import show

DEFAULT_SHARE = "25%"


@dataclass(frozen=True)
class DeploymentSpec:
    strategy: Strategy = field(default_factory=Strategy)
    min_ready_seconds: int = 0
    progress_deadline_seconds: int = 600
    revision_history_limit: int = 10


def deployment_spec(checker: Checker, path: YamlPath, spec: dict[str, Any]) -> DeploymentSpec:
    strategy = _strategy(checker, path + ("strategy",), spec.get("strategy", {}))
    numbers = {}
    for key, default in (("minReadySeconds", 0), ("progressDeadlineSeconds", 600), ("revisionHistoryLimit", 10)):
        numbers[key] = spec.get(key, default)
        if numbers[key] < 0:
            checker.add(path + (key,), f"{key} {numbers[key]} must be greater than or equal to 0")
    if numbers["progressDeadlineSeconds"] <= numbers["minReadySeconds"]:
        checker.add(path + ("progressDeadlineSeconds",), f"progressDeadlineSeconds "
                    f"{numbers['progressDeadlineSeconds']} must be greater than minReadySeconds "
                    f"({numbers['minReadySeconds']}): a pod must have time to become available")
    return DeploymentSpec(strategy, numbers["minReadySeconds"], numbers["progressDeadlineSeconds"],
                          numbers["revisionHistoryLimit"])


def _strategy(checker: Checker, path: YamlPath, raw: Any) -> Strategy:
    given = checker.fields(path, raw, STRATEGY_SCHEMA, "strategy") or {}
    kind = choice(checker, path + ("type",), given.get("type", rolling.ROLLING), (rolling.ROLLING, rolling.RECREATE),
                  "strategy type") or rolling.ROLLING
    if kind == rolling.RECREATE:
        if "rollingUpdate" in given:
            checker.add(path + ("rollingUpdate",), "may not be specified when strategy `type` is 'Recreate'")
        return Strategy(rolling.RECREATE, 0, 0)
    at = path + ("rollingUpdate",)
    update = checker.fields(at, given.get("rollingUpdate", {}), ROLLING_UPDATE_SCHEMA, "rollingUpdate") or {}
    values = {}
    for key in ("maxSurge", "maxUnavailable"):
        value = update.get(key, DEFAULT_SHARE)
        try:
            share = rolling.scaled_value(value, 100, key == "maxSurge")
        except ValueError:
            checker.add(at + (key,), f"{show(value)}: value should be int(5) or percentage(5%)")
            values[key] = DEFAULT_SHARE
            continue
        if share < 0:
            checker.add(at + (key,), f"{value}: value should not be negative")
        elif key == "maxUnavailable" and isinstance(value, str) and share > 100:
            checker.add(at + (key,), f"{value}: should not be more than 100%")
        values[key] = value
    if all(rolling.scaled_value(values[k], 100, k == "maxSurge") == 0 for k in values):
        checker.add(at + ("maxUnavailable",), f"{values['maxUnavailable']}: may not be 0 when `maxSurge` is 0")
    return Strategy(rolling.ROLLING, values["maxSurge"], values["maxUnavailable"])

