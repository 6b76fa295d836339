"""`podlab logs POD [-c CONTAINER] [-p] [-f] [--tail N]`, as kubectl logs: what a container wrote.

The workload agent sends a command container's stdout and stderr to its log (lab.state.container_log),
one file per instance as the kubelet keeps them: a restart moves the last one aside, which
`--previous` reads, and the pod's going removes both. An init container's output is there too.
podlab's built-in workloads (the nginx, echoserver and idle images) write none: logs says so. As
kubectl: with no -c, a pod of several containers gives its first ('Defaulted container "a" out of:
a, b'); `deployment/NAME` reads one of the Deployment's pods, a ready one first ("Found 3 pods, using
pod/..."); -f follows the instance until it ends, the pod goes, or Ctrl-C.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import TextIO

from lab.cliopts import lab_option
from lab.errors import PodlabError

NEEDS_ROOT = {"logs"}
FOLLOW_EVERY = 0.2          # seconds between two reads of a followed log


def register(sub: argparse._SubParsersAction) -> dict:
    sp = sub.add_parser("logs", help="print what a pod's container wrote, like kubectl logs",
                        description="The output (stdout and stderr) of a pod's container, as the workload agent "
                                    "keeps it: the container's command, or an init container's.")
    sp.add_argument("target", metavar="POD | deployment/NAME")
    sp.add_argument("-c", "--container", help="which container (default: the pod's first)")
    sp.add_argument("-f", "--follow", action="store_true",
                    help="keep printing what it writes, until it ends or the pod goes")
    sp.add_argument("-p", "--previous", action="store_true", help="the container's instance before this one")
    sp.add_argument("--tail", type=int, default=-1, metavar="N", help="only the last N lines (default: all)")
    lab_option(sp)
    return {"logs": cmd_logs}


def cmd_logs(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from lab import api, container_view, state
    if args.tail < -1:
        raise PodlabError("--tail must be greater than or equal to -1")
    lab = api.pick(args.lab)
    pod = _pod(lab, args.target, err)
    init = next((c for c in pod.init_containers if c.name == args.container), None)
    container = init or container_view.pick(pod, args.container, err)
    if container.workload != "command":
        print(f"podlab: container {container.name} of pod {pod.name} runs podlab's built-in {container.workload} "
              f"workload (image {container.image}), which writes no log; give it a command to have one", file=err)
        return 0
    path = state.container_log(lab.name, pod.name, container.name, args.previous)
    if not path.exists():
        raise PodlabError(f'previous terminated container "{container.name}" in pod "{pod.name}" not found'
                          if args.previous else f'container "{container.name}" in pod "{pod.name}" is waiting to '
                          "start: it has not written anything yet")
    with open(path, "rb") as f:
        _write(out, b"".join(f.readlines() if args.tail < 0 else deque(f, maxlen=args.tail)))
        while args.follow and not args.previous and _same_instance(f, path):
            time.sleep(FOLLOW_EVERY)
            _write(out, f.read())
        _write(out, f.read())          # what the instance wrote last, before it ended
    return 0


def _same_instance(f, path: Path) -> bool:
    """Whether the open log is still the container's current one: a restart moves it aside, and the
    pod's going removes it."""
    try:
        return os.stat(path).st_ino == os.fstat(f.fileno()).st_ino
    except OSError:
        return False


def _pod(lab, target: str, err: TextIO):
    """The pod `target` names: a pod, pod/NAME, or deployment/NAME (one of its pods, as kubectl picks)."""
    kind, _, name = target.rpartition("/")
    pods = lab.topology.pods
    if kind in ("deployment", "deploy", "deployments", "deployment.apps"):
        from lab import workloads
        up = workloads.ready_pods(workloads.read_status(lab.name))
        # kubectl's ByLogging: a ready pod first, then the oldest (podlab's ordinals count up)
        ready = sorted((p for p in pods if p.deployment == name), key=lambda p: (p.name not in up, p.ordinal or 0))
        if not ready:
            raise PodlabError(f'deployments.apps "{name}" not found in lab {lab.name}' if lab.topology.deployment(name)
                              is None else f"deployment {name} has no pods")
        if len(ready) > 1:
            print(f"Found {len(ready)} pods, using pod/{ready[0].name}", file=err)
        return ready[0]
    if kind not in ("", "pod", "pods", "po"):
        raise PodlabError(f"logs reads a pod (POD or pod/NAME) or deployment/NAME, not {kind}/")
    found = lab.target(name)          # a name's unique prefix too, with its hint when none matches
    if found.kind != "pod":
        raise PodlabError(f"{found.name} is a {found.kind}, not a pod: only pods' containers have logs")
    return next(p for p in pods if p.name == found.name)


def _write(out: TextIO, data: bytes) -> None:
    if not data:
        return
    if out is sys.stdout:
        out.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        out.write(data.decode(errors="replace"))
