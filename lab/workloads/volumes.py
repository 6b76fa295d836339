"""A pod's own directory in the lab's state directory: its emptyDir volumes, and where its
containers' mounts are staged. Made when the pod starts, removed with the pod, as the kubelet
keeps an emptyDir under /var/lib/kubelet/pods/<uid>/volumes/ for the pod's lifetime.

    pods/<pod>/volumes/<volume>/     an emptyDir, shared by the pod's containers
    pods/<pod>/mounts/<container>/   the overlays that make a container's mountPaths (lab.engine.mountns)

Owned by record, never by name: the journal says "pod-dir" before a pod's directory is made and
"pod-dir-removed" once it is gone, so `down` and `clean` remove exactly the directories the lab
made, after a crash of the agent too. Stdlib, lab.state, mountns and the journal: the agent imports it.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from lab import state
from lab.engine import mountns
from lab.engine.journal import Journal

PODS = "pods"
DOCUMENT_ROOT = "/usr/share/nginx/html"     # nginx's root: where the http workload finds its files


pod_dir = state.pod_dir      # the pod's directory: its files, volumes and staged mounts


def volume_dir(lab: str, pod: str, volume: str) -> Path:
    return pod_dir(lab, pod) / "volumes" / volume


def mounts_dir(lab: str, pod: str, container: str) -> Path:
    return pod_dir(lab, pod) / "mounts" / container


def stage(lab: str, pod: str, scratch: Path, files: Iterable[tuple[str, str]],
          mounts: Iterable[tuple[str, str, bool]]) -> mountns.Plan:
    """A container's view of the files, staged in `scratch` (its directories made): the kubelet's
    `files` (file, path in the pod) and the pod's volumes at their mountPaths (`mounts`: volume,
    path, read-only). mountns.MountError if the mounts cannot be made."""
    binds = [mountns.Bind(src, dst, directory=False) for src, dst in files]
    binds += [mountns.Bind(str(volume_dir(lab, pod, volume)), path, read_only) for volume, path, read_only in mounts]
    plan = mountns.plan(binds, str(scratch))
    for d in plan.dirs:
        os.makedirs(d, mode=0o700)
    return plan


def make(lab: str, pod: str, volumes: tuple[str, ...] | list[str]) -> Path:
    """The pod's directory with an empty directory per volume. One already there (the agent was
    restarted: a pod sandbox restart) keeps what its containers wrote, as an emptyDir outlives
    its containers' restarts."""
    d = pod_dir(lab, pod)
    Journal(lab).record("pod-dir", pod=pod, path=str(d))
    for volume in volumes:
        (d / "volumes" / volume).mkdir(mode=0o755, parents=True, exist_ok=True)
    (d / "mounts").mkdir(mode=0o700, parents=True, exist_ok=True)
    return d


def remove(lab: str, pod: str) -> None:
    """The pod is gone: its volumes and its containers' staging go with it."""
    d = pod_dir(lab, pod)
    shutil.rmtree(d, ignore_errors=True)
    if not d.exists():
        Journal(lab).record("pod-dir-removed", pod=pod, path=str(d))


def recorded(lab: str) -> list[Path]:
    """The pod directories the journal says this lab made and has not removed; a record naming
    any other place than the lab's own pods/ directory is not ours and is ignored."""
    parent = state.lab_dir(lab) / PODS
    live: dict[str, bool] = {}
    for entry in Journal(lab).entries():
        kind, path = entry.get("kind"), entry.get("path")
        if kind in ("pod-dir", "pod-dir-removed") and isinstance(path, str):
            live[path] = kind == "pod-dir"
    return [Path(p) for p, alive in live.items()
            if alive and Path(p).parent == parent and Path(p).name not in ("", ".", "..")]


def remove_recorded(lab: str) -> list[str]:
    """For `down` and `clean`: remove every pod directory of the record; the names of those left."""
    left = []
    for d in recorded(lab):
        shutil.rmtree(d, ignore_errors=True)
        if d.exists():
            left.append(d.name)
        else:
            Journal(lab).record("pod-dir-removed", pod=d.name, path=str(d))
    return left


def document_root(lab: str, pod: str, mounts: list[tuple[str, str]]) -> list[tuple[str, Path]] | None:
    """What nginx's document root shows in a container with these (volume, mountPath) mounts: each
    mount at or below the root, as (path below the root, its directory), deepest first; None if no
    volume is mounted at the root or above it (then the image's own files are there: the built-in page)."""
    covering = [(v, p) for v, p in mounts if DOCUMENT_ROOT == p or DOCUMENT_ROOT.startswith(p.rstrip("/") + "/")]
    if not covering:
        return None
    volume, path = max(covering, key=lambda m: len(m[1]))
    view = [("", volume_dir(lab, pod, volume) / DOCUMENT_ROOT[len(path):].lstrip("/"))]
    for v, p in mounts:
        if p.startswith(DOCUMENT_ROOT + "/"):
            view.append((p[len(DOCUMENT_ROOT) + 1:], volume_dir(lab, pod, v)))
    return sorted(view, key=lambda m: -len(m[0]))
