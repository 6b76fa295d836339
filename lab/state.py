"""Where a lab keeps its records: /run/podlab/<lab>/ (root only).

/run is a tmpfs, like the namespaces' own mounts, so a reboot clears both together.
  journal.jsonl   ownership records, appended before each object is made (lab.engine.journal)
  lab.json        the lab's design and address plan, written when `up` completes
  uts/<netns>     the UTS namespace mount of each pod and node
  agent.pid       the workload agent's PID; agent.json its status; agent.log its output
"""
from __future__ import annotations

import fcntl
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from lab.errors import PodlabError

ROOT = Path(os.environ.get("PODLAB_STATE_DIR", "/run/podlab"))

LAB_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,22}[a-z0-9])?$")


class InvalidLabName(PodlabError, ValueError):
    """A lab name that could not name a directory and a namespace prefix safely."""

    def __init__(self, lab: object):
        shown = repr(lab) if len(repr(lab)) <= 40 else repr(lab)[:37] + "..."
        super().__init__(f"invalid lab name {shown}: a lab name is 1-24 lowercase letters, digits or '-', "
                         f"starting and ending with a letter or digit (see 'podlab status')")


def lab_dir(lab: str) -> Path:
    if not isinstance(lab, str) or not LAB_NAME.fullmatch(lab):
        # Names reach paths and namespace names: never let one escape the state directory.
        raise InvalidLabName(lab)
    return ROOT / lab


def lock_path(lab: str) -> Path:
    """The lab's lock: held by `up`, `down` and `clean` while they change the lab."""
    lab_dir(lab)
    return ROOT / f".{lab}.lock"


def uts_path(lab: str, netns: str) -> str:
    return str(lab_dir(lab) / "uts" / netns)


def container_log(lab: str, pod: str, container: str, previous: bool = False) -> Path:
    """Where a container's output goes, as the workload agent (or the engine, for a daemon that is a
    pod's container) writes it; `podlab logs` reads it. `previous`: the log of the instance before
    the current one, which the agent moves aside when it starts the container again."""
    return lab_dir(lab) / "logs" / f"{pod}_{container}.log{'.previous' if previous else ''}"


def pod_dir(lab: str, pod: str) -> Path:
    """A pod's files (what the kubelet gives its containers: resolv.conf, hosts); they go with the pod."""
    if not pod or "/" in pod or pod in (".", ".."):
        raise ValueError(f"invalid pod name {pod!r}")
    return lab_dir(lab) / "pods" / pod


def remove_pod_dirs(lab: str, pods: Iterable[str]) -> None:
    """The pods went (or are replaced under their names): their files go with them."""
    for pod in pods:
        shutil.rmtree(pod_dir(lab, pod), ignore_errors=True)


# Plans name the lab's files by this prefix rather than by the state directory's real place, so a
# plan (and its golden file) is the same wherever PODLAB_STATE_DIR points.
LAB_DIR = "$LAB_DIR"


def in_lab_dir(relative: str) -> str:
    """A path in plan terms: "$LAB_DIR/<relative>"."""
    return f"{LAB_DIR}/{relative}"


def expand(text: str, lab: str) -> str:
    """A plan's path or argument with "$LAB_DIR/" made the lab's real state directory."""
    return text.replace(LAB_DIR + "/", f"{lab_dir(lab)}/")


def ensure_root() -> Path:
    """The state root, root's only (0700) even if something made it with a wider mode."""
    ROOT.mkdir(mode=0o700, parents=True, exist_ok=True)
    if ROOT.stat().st_mode & 0o077:
        ROOT.chmod(0o700)
    return ROOT


@contextmanager
def private_files() -> Iterator[None]:
    """Files made meanwhile (and by processes started meanwhile) are root's only: 0600, dirs 0700."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def ensure_lab_dir(lab: str) -> Path:
    ensure_root()
    d = lab_dir(lab)
    d.mkdir(mode=0o700, exist_ok=True)
    return d


def labs() -> list[str]:
    """Names of labs with a state directory (up, or left behind by a crash)."""
    if not ROOT.is_dir():
        return []
    return sorted(p.name for p in ROOT.iterdir() if p.is_dir() and LAB_NAME.fullmatch(p.name))


class LabBusy(PodlabError):
    """Another `up`, `down` or `clean` holds the lab's lock."""


@contextmanager
def locked(lab: str, wait: float = 0.0) -> Iterator[None]:
    """One `up`, `down`, `clean` or change of a lab at a time; a second one is told so at once,
    or (`wait`, in seconds: changes queue up behind each other, as requests to one API server do)
    once it has waited that long.

    The lock file goes when the lab does: it is unlinked while still held, and a process
    that then gets the lock on the unlinked file sees that the path no longer leads to it
    and takes the path's current file instead.
    """
    ensure_root()
    path = lock_path(lab)
    deadline = time.monotonic() + wait
    pause = 0.005
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() < deadline:
                time.sleep(pause)
                pause = min(0.1, pause * 2)
                continue
            raise LabBusy(f"lab {lab} is busy: another 'podlab up', 'down', 'clean' or change of it is running"
                          f"{f' (waited {wait:g} s)' if wait else ''}; wait for it, then try again") from None
        try:
            st = os.stat(path)
            current = (st.st_dev, st.st_ino) == (os.fstat(fd).st_dev, os.fstat(fd).st_ino)
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    try:
        yield
    finally:
        if not lab_dir(lab).exists():
            path.unlink(missing_ok=True)
        os.close(fd)
