"""The manifests the README's tour applies are read as Kubernetes manifests, each object what its
file says (so the tour's commands work from a fresh checkout)."""
from __future__ import annotations

from pathlib import Path

from lab import manifests

DIR = Path(__file__).resolve().parents[2] / "manifests"


def test_the_tours_manifests_are_read_with_nothing_refused():
    found = {f.name: manifests.read(f.read_text(), str(f)) for f in sorted(DIR.glob("*.yaml"))}
    assert set(found) == {"nginx-deployment.yaml", "nginx-service.yaml", "nginx_pod.yaml", "busybox_pod.yaml"}
    deployment = found["nginx-deployment.yaml"].deployments[0]
    assert deployment["name"] == "nginx" and deployment["replicas"] == 3
    assert [c["name"] for c in deployment["initContainers"]] == ["init"]
    assert found["nginx-service.yaml"].services[0]["name"] == "nginx"
    assert {p["name"] for f in ("nginx_pod.yaml", "busybox_pod.yaml") for p in found[f].pods} == {"nginx-pod", "busybox"}
