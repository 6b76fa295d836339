"""A mount namespace per node of a cni lab: the node's own /run and /var/lib, as a real node has.

The CNI plugins keep state in fixed places (host-local's /var/lib/cni/networks, the results cache
in /var/lib/cni/results, tuning's /run/cni/tuning, flannel's /run/flannel, kindnet's
/run/cni-ipam-state). Emulated nodes share one host, so those places would be shared between
nodes and outlive the lab; and the host's own /var/lib/cni must never be touched. Each node's
plugins therefore run in a mount namespace of the node's own where /var/lib and /run are the
node's directories in the lab's state (lab.cni.paths), with the host's /run/netns bound in (the
pods' namespaces, for CNI_NETNS) and any cniPath directory under /run or /var/lib too. Whatever
else the host keeps there (D-Bus's socket, so firewall never reaches a host firewalld) the
plugins do not see. The user's conflist is not edited.

The namespace is made in-process: a helper thread unshares its mount namespace, makes every
mount a slave of the host's (so pods' namespaces made later appear in it, and those deleted
go from it: a pod's namespace is never kept alive by a node), binds the node's directories,
and the calling thread binds /proc/self/task/TID/ns/mnt onto a file in the lab's state, which
keeps it alive with no process in it. That file must sit on a mount that does not propagate
(the kernel refuses to copy a mount namespace's file into other namespaces), so the directory
holding the files is bound onto itself and made private. Both kinds of mount are journalled
before they are made and removed by `down` and `clean` from the journal alone.
"""
from __future__ import annotations

import ctypes
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path

from lab.engine.journal import Journal
from lab.engine.netns import NETNS_DIR

CLONE_NEWNS = 0x00020000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MNT_DETACH = 2
PRIVATE = {"/run": "run", "/var/lib": "var-lib"}

_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source: str | None, target: str, flags: int, what: str) -> None:
    if _libc.mount(source.encode() if source else b"none", target.encode(), None, flags, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", target)


def _is_mount(path: Path) -> bool:
    """Whether `path` is a mount point in this mount namespace (a directory bound onto itself is one,
    which os.path.ismount cannot tell: the device and inode are the same)."""
    wanted = str(path)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = line.split(" ", 5)[4]
                if "\\" in point:
                    point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point)
                if point == wanted:
                    return True
    except (OSError, IndexError):
        return False
    return False


def _private_dir(mnt_dir: Path, journal: Journal) -> None:
    mnt_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if _is_mount(mnt_dir):
        return
    journal.record("cni-mnt-dir", path=str(mnt_dir))
    _mount(str(mnt_dir), str(mnt_dir), MS_BIND, "bind-mount")
    _mount(None, str(mnt_dir), MS_PRIVATE, "make-private")


def create(journal: Journal, mnt_dir: Path, nodes: dict[str, Path], keep: Iterable[str] = ()) -> dict[str, Path]:
    """A mount namespace for each node (name -> its directory with run/ and var-lib/), its file in
    `mnt_dir`; `keep`: host directories under /run or /var/lib the plugins must still see (cniPath)."""
    _private_dir(mnt_dir, journal)
    keep = [k for k in keep if os.path.isdir(k)]
    for root in nodes.values():
        for local in PRIVATE.values():
            (root / local).mkdir(mode=0o755, parents=True, exist_ok=True)
        (root / "run" / "netns").mkdir(exist_ok=True)
        for path in keep:
            (root / _local(path)).mkdir(mode=0o755, parents=True, exist_ok=True)
    ready = threading.Barrier(len(nodes) + 1)
    release = threading.Event()
    tids: dict[str, int] = {}
    failures: dict[str, BaseException] = {}

    def setup(name: str, root: Path) -> None:
        try:
            if _libc.unshare(CLONE_NEWNS) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"unshare(CLONE_NEWNS): {os.strerror(err)}")
            _mount(None, "/", MS_REC | MS_SLAVE, "make-rslave")
            _mount(NETNS_DIR, str(root / "run" / "netns"), MS_BIND | MS_REC, "bind-mount")
            for path in keep:
                _mount(path, str(root / _local(path)), MS_BIND | MS_REC, "bind-mount")
            # /var/lib first: the node's directories are under /run, which the next bind covers.
            _mount(str(root / "var-lib"), "/var/lib", MS_BIND | MS_REC, "bind-mount")
            _mount(str(root / "run"), "/run", MS_BIND | MS_REC, "bind-mount")
            tids[name] = threading.get_native_id()
        except BaseException as e:   # re-raised by the caller
            failures[name] = e
        try:
            ready.wait()
        except threading.BrokenBarrierError:
            pass
        release.wait()

    threads = [threading.Thread(target=setup, args=(name, root), name=f"podlab-mntns-{name}")
               for name, root in nodes.items()]
    for t in threads:
        t.start()
    made: dict[str, Path] = {}
    try:
        ready.wait()
        if failures:
            name, error = next(iter(failures.items()))
            raise OSError(getattr(error, "errno", None), f"node {name}'s mount namespace: {error}")
        for name in nodes:
            target = mnt_dir / name
            journal.record("cni-mntns", node=name, path=str(target))
            target.touch(mode=0o400)
            _mount(f"/proc/self/task/{tids[name]}/ns/mnt", str(target), MS_BIND, "bind-mount")
            made[name] = target
    finally:
        release.set()
        for t in threads:
            t.join()
    return made


def _local(path: str) -> str:
    for top, local in PRIVATE.items():
        if path == top or path.startswith(top + "/"):
            return local + path[len(top):]
    raise ValueError(path)


def remove(journal: Journal, mnt_dir: Path) -> list[str]:
    """Unmount what `create` journalled under `mnt_dir`: the namespaces' files, then the directory."""
    removed = []
    inside = str(mnt_dir) + "/"
    for entry in journal.of_kind("cni-mntns"):
        path = entry.get("path")
        if isinstance(path, str) and path.startswith(inside) and "/../" not in path and os.path.lexists(path):
            _libc.umount2(path.encode(), MNT_DETACH)
            try:
                os.unlink(path)
            except OSError:
                pass
            removed.append(entry.get("node", path))
    for entry in journal.of_kind("cni-mnt-dir"):
        if entry.get("path") == str(mnt_dir) and _is_mount(mnt_dir):
            _libc.umount2(str(mnt_dir).encode(), MNT_DETACH)
    return removed
