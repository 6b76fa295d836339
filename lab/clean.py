"""Cleanup by ownership records, never by names: the processes a lab left, and labs left orphaned.

What belongs to a lab is what its journal (lab.engine.journal) says it made:
  - namespaces, by identity: the (dev, inode, ctime) recorded when each was made, checked
    against what the name refers to now (a name taken since by another program is not ours);
  - pod directories (their emptyDir volumes): the ones the agent recorded making and not removing
    (lab.workloads.volumes), each inside the lab's own pods/ directory;
  - processes: the ones it started (the workload agent), by PID *and* start time, so a
    recycled PID is never signalled; and every process living in one of its namespaces
    (a command container's children, a shell left in a pod): /proc/PID/ns/net (or uts) is
    compared with the inode of the namespace file, while that file still pins it, and the
    process is signalled through a pidfd taken before the check, so it is that process.

An orphan is a lab whose state directory is here but which nobody is changing (its lock is
free) and which is not whole: its `up` died before writing lab.json, or every namespace it
made is gone. `podlab clean` removes orphans; a lab that is up, or being built, is left alone.
"""
from __future__ import annotations

import os
import select
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lab import state
from lab.engine import apply, netns
from lab.engine.journal import Journal, ns_id
from lab.errors import PodlabError

Say = Callable[[str], None]
STOP_GRACE = 1.0


def _quiet(_: str) -> None:
    pass


def _ns_inode(pid: int, kind: str) -> int | None:
    try:
        link = os.readlink(f"/proc/{pid}/ns/{kind}")   # "net:[4026532001]"
    except OSError:
        return None
    try:
        return int(link[link.index("[") + 1:-1])
    except ValueError:
        return None


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _owned_namespaces(lab: str, only: set[str] | None = None) -> tuple[list[int], dict[str, set[int]]]:
    """Open fds on the lab's namespaces that are still its own (the fds pin them while we look),
    and their inode numbers by kind ("net", "uts"); `only`: of these names alone."""
    journal = Journal(lab)
    uts_dir = str(state.lab_dir(lab) / "uts") + "/"
    uts_paths = {e["name"]: e.get("uts") for e in journal.of_kind("netns") if isinstance(e.get("name"), str)}
    fds: list[int] = []
    inodes: dict[str, set[int]] = {"net": set(), "uts": set()}
    for name, record in journal.made_namespaces().items():
        if only is not None and name not in only:
            continue
        uts = uts_paths.get(name)
        places = [("net", _netns_path(name), ns_id(record, "net"))]
        if isinstance(uts, str) and uts.startswith(uts_dir) and "/../" not in uts:
            places.append(("uts", uts, ns_id(record, "uts")))
        for kind, path, ident in places:
            if path is None or ident is None:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino, st.st_ctime_ns) == ident:
                fds.append(fd)
                inodes[kind].add(st.st_ino)
            else:
                os.close(fd)
    return fds, inodes


def _netns_path(name: str) -> str | None:
    try:
        return netns.netns_path(name)
    except ValueError:
        return None


def lab_processes(lab: str) -> list[int]:
    """PIDs of processes living in one of the lab's own namespaces (network or UTS)."""
    fds, inodes = _owned_namespaces(lab)
    try:
        return [pid for pid in _pids() if pid != os.getpid() and _inside(pid, inodes)]
    finally:
        for fd in fds:
            os.close(fd)


def _inside(pid: int, inodes: dict[str, set[int]]) -> bool:
    return any(_ns_inode(pid, kind) in found for kind, found in inodes.items() if found)


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def _signal_all(pidfds: dict[int, int], sig: int) -> None:
    for fd in pidfds.values():
        try:
            signal.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            pass


def _wait_gone(pidfds: dict[int, int], timeout: float) -> dict[int, int]:
    """Wait until the processes exit (a pidfd turns readable); return those still running."""
    left = dict(pidfds)
    deadline = time.monotonic() + timeout
    while left:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        ready, _, _ = select.select(list(left.values()), [], [], remaining)
        for fd in ready:
            left = {p: f for p, f in left.items() if f != fd}
    return left


SETTLE = 0.1   # processes already on their way out (their group was just killed) need no signal


def _stop(pidfds: dict[int, int], grace: float) -> list[int]:
    """SIGTERM, then SIGKILL whoever is still there after `grace` seconds. Returns the PIDs
    that had to be signalled."""
    try:
        running = _wait_gone(pidfds, SETTLE) if pidfds else {}
        _signal_all(running, signal.SIGTERM)
        left = _wait_gone(running, grace)
        _signal_all(left, signal.SIGKILL)
        _wait_gone(left, 2.0)
        return list(running)
    finally:
        for fd in pidfds.values():
            os.close(fd)


def kill_recorded(lab: str, grace: float = STOP_GRACE) -> list[int]:
    """Stop the processes the journal says the lab started, if they are still those processes."""
    from lab.workloads import process_start
    pidfds: dict[int, int] = {}
    for entry in Journal(lab).processes():
        pid, started = entry["pid"], entry.get("start")
        fd = _pidfd(pid)
        if fd is None:
            continue
        if started is None or process_start(pid) != started:   # checked after the pidfd pins the PID
            os.close(fd)
            continue
        pidfds[pid] = fd
    return _stop(pidfds, grace)


def kill_inside(lab: str, grace: float = STOP_GRACE, only: set[str] | None = None) -> list[int]:
    """Stop every process living in one of the lab's namespaces (`only`: in these); return their PIDs."""
    fds, inodes = _owned_namespaces(lab, only)
    pidfds: dict[int, int] = {}
    try:
        if not any(inodes.values()):
            return []
        for pid in _pids():
            if pid == os.getpid() or not _inside(pid, inodes):
                continue
            fd = _pidfd(pid)
            if fd is None:
                continue
            if _inside(pid, inodes):   # again, now that the pidfd holds the PID: the same process
                pidfds[pid] = fd
            else:
                os.close(fd)
    finally:
        for fd in fds:
            os.close(fd)
    return _stop(pidfds, grace)


def teardown(lab: str, say: Say = _quiet) -> list[str]:
    """Remove what the journal says the lab made: processes first (they keep namespaces
    alive), then namespaces and their mounts, then the state directory. Works from the
    journal alone, so a lab whose `up` was killed halfway goes too."""
    from lab import workloads
    from lab.workloads import volumes
    workloads.stop_agent(lab)
    started = kill_recorded(lab)
    stopped = kill_inside(lab)
    from lab.cni import runner
    runner.teardown(lab, say)      # DEL every pod while the namespaces are there; the nodes' mounts
    removed = apply.destroy(lab)
    d = state.lab_dir(lab)
    leftovers = apply.leftovers(lab)
    if leftovers:
        raise PodlabError(f"could not remove namespaces {', '.join(leftovers[:5])}: the journal is kept in {d}")
    pods_left = volumes.remove_recorded(lab)   # the pods' volumes, by the agent's records of them
    if pods_left:
        raise PodlabError(f"could not remove the volumes of pods {', '.join(pods_left[:5])}: "
                          f"the journal is kept in {d}")
    shutil.rmtree(d, ignore_errors=True)
    if d.exists():
        raise PodlabError(f"could not remove {d} (a mount inside it?); see 'findmnt -R {d}'")
    extra = (f"; {len(started)} daemons it started were stopped" if started else "") + \
        (f"; {len(stopped)} processes still running in it were stopped" if stopped else "")
    say(f"lab {lab} is down: {len(removed)} namespaces removed{extra}")
    return removed


def kill_container_leftovers(lab: str, grace: float = STOP_GRACE) -> list[int]:
    """After the agent died: stop what its command containers left running in the pods.

    A container runs in a session of its own (its leader's PID is the session ID, recorded in
    agent.json), so its children are the processes in the lab's namespaces with that session
    ID; a shell someone opened in a pod (another session) is left alone.
    """
    from lab.workloads import read_status
    sessions = {c.get("pid") for p in read_status(lab).get("pods", {}).values() if isinstance(p, dict)
                for key in ("initContainers", "containers")
                for c in (p.get(key) or {}).values() if isinstance(c, dict)} - {None}
    if not sessions:
        return []
    fds, inodes = _owned_namespaces(lab)
    pidfds: dict[int, int] = {}
    try:
        for pid in _pids():
            if pid == os.getpid() or not _inside(pid, inodes) or _sid(pid) not in sessions:
                continue
            fd = _pidfd(pid)
            if fd is not None and _inside(pid, inodes) and _sid(pid) in sessions:
                pidfds[pid] = fd
            elif fd is not None:
                os.close(fd)
    finally:
        for fd in fds:
            os.close(fd)
    return _stop(pidfds, grace)


def _sid(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


@dataclass
class Orphan:
    lab: str
    reason: str
    namespaces: list[str] = field(default_factory=list)   # what is still there to remove


def diagnose(lab: str) -> str | None:
    """Why `lab` is an orphan, or None if it is whole. The caller holds the lab's lock."""
    d = state.lab_dir(lab)
    if not (d / "lab.json").exists():
        pid = next((e.get("pid") for e in Journal(lab).of_kind("lab")), None)
        return f"left half-built: its 'podlab up'{f' (pid {pid})' if pid else ''} died before finishing"
    made = Journal(lab).made_namespaces()
    if made and not apply.leftovers(lab):
        return f"all {len(made)} of its namespaces are gone (deleted by hand, or by another tool)"
    return None


def lock_held(lab: str) -> bool:
    """True if some process holds the lab's lock (an `up`, `down` or `clean` of it is running).

    Read from /proc/locks rather than by trying the lock, so asking never makes a concurrent
    `up` fail as busy.
    """
    try:
        st = os.stat(state.lock_path(lab))
        locks = open("/proc/locks").read().splitlines()
    except OSError:
        return False
    me = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    return any(len(f := line.split()) > 5 and f[1] == "FLOCK" and f[5] == me for line in locks)


def unfinished() -> list[tuple[str, str]]:
    """Labs with a state directory but no lab.json, and what they are doing: for `status`."""
    out = []
    for lab in state.labs():
        if (state.lab_dir(lab) / "lab.json").exists():
            continue
        if lock_held(lab):
            out.append((lab, "being built or removed by another podlab right now"))
        else:
            out.append((lab, f"left half-built by a 'podlab up' that died: 'sudo podlab down {lab}' or "
                             "'sudo podlab clean' removes what it made"))
    return out


def stale_locks() -> list[str]:
    """Lock files of labs that have no state directory (left by older versions, or a crash)."""
    if not state.ROOT.is_dir():
        return []
    out = []
    for p in state.ROOT.iterdir():
        name = p.name[1:-5] if p.name.startswith(".") and p.name.endswith(".lock") else ""
        if name and state.LAB_NAME.fullmatch(name) and not (state.ROOT / name).exists():
            out.append(name)
    return sorted(out)


@dataclass
class Report:
    orphans: list[Orphan] = field(default_factory=list)   # found (and removed, unless a dry run)
    busy: list[str] = field(default_factory=list)         # being changed by another podlab: skipped
    healthy: list[str] = field(default_factory=list)      # up and whole: left alone
    locks: list[str] = field(default_factory=list)        # stale lock files (removed unless a dry run)
    failed: list[tuple[str, str]] = field(default_factory=list)   # orphans that could not be removed, and why


def clean(dry_run: bool = False, say: Say = _quiet) -> Report:
    """Remove every orphaned lab (its processes, namespaces, mounts and state) and stale lock
    files; leave alone labs that are up or being changed, and everything podlab did not make."""
    report = Report()
    for lab in state.labs():
        try:
            with state.locked(lab):
                reason = diagnose(lab)
                if not reason:
                    report.healthy.append(lab)
                    continue
                orphan = Orphan(lab, reason, apply.leftovers(lab))
                report.orphans.append(orphan)
                left = f"; {len(orphan.namespaces)} namespaces left" if orphan.namespaces else ""
                say(f"lab {lab}: {reason}{left}" + (" (dry run: nothing removed)" if dry_run else ""))
                if not dry_run:
                    teardown(lab, say)
        except state.LabBusy:
            report.busy.append(lab)
            say(f"lab {lab}: skipped, an 'up', 'down' or 'clean' of it is running")
        except PodlabError as e:   # one lab that cannot be removed does not stop the others
            report.failed.append((lab, str(e)))
            say(f"lab {lab}: {e}")
    report.locks = stale_locks()
    for lab in report.locks if not dry_run else ():
        try:
            with state.locked(lab):   # removes the lock file on the way out, as the lab has no directory
                pass
        except state.LabBusy:
            pass
    return report
