"""Workloads: what runs inside the pods, served by one agent process per lab.

Built-in workloads stand in for container images (http ~ nginx, echo ~ agnhost netexec,
idle ~ busybox/pause); a `command` container is a real process in the pod's network and
UTS namespaces. One agent serves every pod of a lab, because a socket keeps the namespace
it was created in: 1000 pods cost one interpreter, not 1000.

Files in the lab's state directory (lab.state):
  agent-spec.json  what the agent serves (write_spec)
  agent.pid        the agent's PID, while it runs
  agent.json       its status, rewritten atomically on every change
  agent.log        its own output; logs/<pod>_<container>.log the output of command containers
  kube-proxy.json  in a lab with Services: what the agent's kube-proxy keeps (lab.services.kube_proxy)

This module is imported by the agent too, so it stays light: stdlib, lab.state, lab.errors,
lab.engine.mountns (for pods with volumes).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from lab import state
from lab.errors import PodlabError

WORKLOADS = ("http", "echo", "idle", "command")
AGENT_MODULE = "lab.workloads.agent"
SPEC_FILE = "agent-spec.json"     # in the lab's state directory
KUBE_PROXY_SPEC = "kube-proxy.json"
_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$")
HANDSHAKE = b"recorded\n"
NETWORK_READY = b"network ready\n"   # after HANDSHAKE, to an agent started with --network-later

BACKOFF_CAP = 30
BACKOFF_RESET = 600.0   # kubelet forgets a crash loop once the container has run for 10 minutes


def backoff(failures: int) -> float:
    """Seconds before restart number failures+1: 1, 2, 4, ... capped at 30 (kubelet's CrashLoopBackOff,
    scaled down: 10 s doubling to 5 minutes there)."""
    return float(min(BACKOFF_CAP, 2 ** min(failures, 10)))


# Popen objects of agents this process started: kept so stop_agent can reap them
# (otherwise a stopped agent stays a zombie child of a long-lived caller such as the TUI).
_started: dict[int, subprocess.Popen] = {}


@dataclass(frozen=True)
class MountSpec:
    """One of the pod's volumes, seen by a container at `path`."""
    volume: str
    path: str
    read_only: bool = False


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    workload: str
    ports: tuple[int, ...] = ()
    command: tuple[str, ...] = ()
    volume_mounts: tuple[MountSpec, ...] = ()
    env: tuple[tuple[str, str], ...] = ()      # a command's environment variables, after the kubelet's own


@dataclass(frozen=True)
class PodSpec:
    pod: str
    netns: str
    uts: str | None
    containers: tuple[ContainerSpec, ...]
    mounts: tuple[tuple[str, str], ...] = ()   # (file, path in the pod): its resolv.conf and hosts
    init_containers: tuple[ContainerSpec, ...] = ()   # commands run in order, each to completion, first
    volumes: tuple[str, ...] = ()              # its emptyDir volumes, by name (lab.workloads.volumes)


@dataclass(frozen=True)
class Spec:
    lab: str
    pods: tuple[PodSpec, ...]


@dataclass
class KnownPods:
    """The pods of the spec read last: each one's entry as it was, and what it was read as."""
    lab: str | None = None
    pods: dict[str, tuple[dict, PodSpec]] = field(default_factory=dict)


def parse_spec(data: object, known: KnownPods | None = None) -> Spec:
    """Validate the agent's JSON spec; ValueError names the first bad field by its path. `known`:
    the pods of the spec read last, kept up to date here; an entry equal to the one read then is
    taken as read then (the agent reads its spec again on every change of the lab, and a change
    alters a few of a thousand pods, whose validation costs ~50 ms)."""
    def need(cond: bool, where: str, what: str) -> None:
        if not cond:
            raise ValueError(f"{where}: {what}")

    need(isinstance(data, dict), "spec", "must be an object")
    assert isinstance(data, dict)
    lab = data.get("lab")
    need(isinstance(lab, str) and bool(state.LAB_NAME.match(lab)), "lab", f"invalid lab name {lab!r}")

    def real(v: object) -> object:   # a plan names the lab's files as $LAB_DIR/... (lab.state.expand)
        return state.expand(v, lab) if isinstance(v, str) else v
    pods_in = data.get("pods", [])
    need(isinstance(pods_in, list), "pods", "must be a list")
    previous = known.pods if known is not None and known.lab == lab else {}
    read: dict[str, tuple[dict, PodSpec]] = {}
    pods: list[PodSpec] = []
    for i, p in enumerate(pods_in):
        at = f"pods[{i}]"
        need(isinstance(p, dict), at, "must be an object")
        name = p.get("pod")
        need(isinstance(name, str) and bool(_NAME.match(name)), f"{at}.pod", f"invalid pod name {name!r}")
        need(name not in read, f"{at}.pod", f"duplicate pod {name!r}")
        was = previous.get(name)
        pod = was[1] if was is not None and was[0] == p else _pod_spec(p, at, real, need)
        read[name] = (p, pod)
        pods.append(pod)
    if known is not None:
        known.lab, known.pods = lab, read
    return Spec(lab, tuple(pods))


def _pod_spec(p: dict, at: str, real: Callable[[object], object], need: Callable[[bool, str, str], None]) -> PodSpec:
    name, netns, uts = p["pod"], p.get("netns"), real(p.get("uts"))
    # netns is a name under /run/netns: no path separators, so it cannot point elsewhere.
    need(isinstance(netns, str) and bool(_NAME.match(netns)), f"{at}.netns", f"invalid namespace name {netns!r}")
    need(uts is None or (isinstance(uts, str) and uts.startswith("/")), f"{at}.uts", "must be an absolute path")
    volumes = p.get("volumes") or []
    need(isinstance(volumes, list) and all(isinstance(v, str) and bool(_NAME.match(v)) for v in volumes)
         and len(set(volumes)) == len(volumes), f"{at}.volumes", "must be a list of distinct volume names")
    seen: set[str] = set()
    init = [_container(c, f"{at}.initContainers[{j}]", seen, set(volumes), real, need, init=True)
            for j, c in enumerate(p.get("initContainers") or [])]
    containers = [_container(c, f"{at}.containers[{j}]", seen, set(volumes), real, need)
                  for j, c in enumerate(p.get("containers", []))]
    mounts = p.get("mounts") or []
    mounts = [[real(x) for x in m] if isinstance(m, list) else m for m in mounts] if isinstance(mounts, list) else mounts
    need(isinstance(mounts, list) and all(isinstance(m, list) and len(m) == 2 and all(
        isinstance(x, str) and x.startswith("/") for x in m) for m in mounts),
         f"{at}.mounts", "must be a list of [file, path] pairs of absolute paths")
    return PodSpec(name, netns, uts, tuple(containers), tuple((m[0], m[1]) for m in mounts),
                   tuple(init), tuple(volumes))


def _container(c: object, cat: str, seen: set[str], volumes: set[str], real: Callable[[object], object],
               need: Callable[[bool, str, str], None], init: bool = False) -> ContainerSpec:
    """One container of a pod's spec; `seen`: the pod's container names so far (init ones too)."""
    need(isinstance(c, dict), cat, "must be an object")
    assert isinstance(c, dict)
    cname = c.get("name")
    need(isinstance(cname, str) and bool(_NAME.match(cname)), f"{cat}.name", f"invalid name {cname!r}")
    need(cname not in seen, f"{cat}.name", f"duplicate container {cname!r}")
    seen.add(cname)
    command = c.get("command") or []
    command = [real(x) for x in command] if isinstance(command, list) else command
    workload = c.get("workload") or ("command" if command else "idle")
    need(workload in WORKLOADS, f"{cat}.workload", f"unknown workload {workload!r} (known: {', '.join(WORKLOADS)})")
    need(not init or workload == "command", f"{cat}.workload", "an init container runs a command to completion")
    ports = c.get("ports") or []
    need(isinstance(ports, list) and all(type(x) is int and 0 < x < 65536 for x in ports),
         f"{cat}.ports", "must be a list of port numbers 1-65535")
    need(isinstance(command, list) and all(isinstance(x, str) for x in command),
         f"{cat}.command", "must be a list of strings (an argument list, not a shell string)")
    need(workload != "command" or bool(command), f"{cat}.command", "a command container needs a command")
    mounts = []
    for k, m in enumerate(c.get("volumeMounts") or []):
        mat = f"{cat}.volumeMounts[{k}]"
        need(isinstance(m, dict) and m.get("name") in volumes, f"{mat}.name", "must name one of the pod's volumes")
        path = m.get("mountPath")
        from lab.engine.mountns import mount_path_problem   # a pod with volumes only
        problem = mount_path_problem(path) if isinstance(path, str) else "must be a path"
        need(problem is None, f"{mat}.mountPath", problem or "")
        need(type(m.get("readOnly", False)) is bool, f"{mat}.readOnly", "must be true or false")
        mounts.append(MountSpec(m["name"], str(path), m.get("readOnly", False)))
    env = c.get("env") or []
    need(isinstance(env, list) and all(isinstance(e, list) and len(e) == 2 and all(
        isinstance(x, str) and "\0" not in x for x in e) and e[0] and "=" not in e[0] for e in env),
         f"{cat}.env", "must be a list of [name, value] pairs of strings")
    return ContainerSpec(str(cname), workload, tuple(ports), tuple(command), tuple(mounts),
                         tuple((e[0], e[1]) for e in env))


def load_spec(path: Path | str, known: KnownPods | None = None) -> Spec:
    with open(path) as f:
        return parse_spec(json.load(f), known)


def write_json_atomic(path: Path, data: object) -> None:
    """Readers never see half a file: write a temporary file, then rename it over."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")) + "\n")   # the C encoder: indent is 10x slower
    os.replace(tmp, path)


def write_spec(lab: str, pods: list[dict]) -> Path:
    """Validate and write the agent's spec for `lab`; return its path.

    Each pod: {"pod", "netns", "uts", "mounts", "containers": [{"name", "workload", "ports", "command",
    "volumeMounts": [{"name", "mountPath", "readOnly"}]}], and when it has them "initContainers" (as
    containers) and "volumes" (names of emptyDirs)}.
    """
    data = {"lab": lab, "pods": pods}
    try:
        parse_spec(data)
    except ValueError as e:
        raise PodlabError(f"workload spec for lab {lab!r}: {e}") from None
    path = state.ensure_lab_dir(lab) / SPEC_FILE
    write_json_atomic(path, data)
    return path


def _is_agent(pid: int, lab: str) -> bool:
    """True if `pid` runs our agent for `lab` (a recycled PID, or a zombie, is not)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    try:
        return AGENT_MODULE.encode() in args and args[args.index(b"--lab") + 1] == lab.encode()
    except (ValueError, IndexError):
        return False


def agent_pid(lab: str) -> int | None:
    """The PID of the running agent of `lab`, verified against /proc; None if there is none."""
    try:
        pid = int((state.lab_dir(lab) / "agent.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _is_agent(pid, lab) else None


def agent_alive(lab: str) -> bool:
    """True if the workload agent of `lab` is running."""
    return agent_pid(lab) is not None


def read_status(lab: str) -> dict:
    """The agent's last status (see agent.py), or {} if it has written none."""
    try:
        return json.loads((state.lab_dir(lab) / "agent.json").read_text())
    except (OSError, ValueError):
        return {}


RUNNING = "Running"


def pod_ready(states: Collection[str]) -> bool:
    """Whether a pod is Ready, from its containers' states: it has containers and every one is
    running. podlab has no readiness probes, and Kubernetes counts a container without one ready
    as soon as it has started; one that exited, waits to restart or has not started is not."""
    return bool(states) and all(s == RUNNING for s in states)


def ready_pods(status: dict) -> set[str]:
    """The pods the agent's status (read_status) reports Ready: the endpoints Services may use."""
    pods = status.get("pods") if isinstance(status, dict) else None
    if not isinstance(pods, dict):
        return set()
    return {name for name, pod in pods.items() if isinstance(pod, dict) and isinstance(pod.get("containers"), dict)
            and pod_ready([c.get("state") for c in pod["containers"].values() if isinstance(c, dict)])}


def _log_tail(lab: str, lines: int = 20) -> str:
    try:
        text = (state.lab_dir(lab) / "agent.log").read_text(errors="replace")
    except OSError:
        return "(no agent.log)"
    return "\n".join(text.splitlines()[-lines:])


def process_start(pid: int) -> int | None:
    """A process's start time (clock ticks since boot): with its PID, it names one process for good."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    try:
        return int(stat[stat.rindex(b")") + 2:].split()[19])
    except (ValueError, IndexError):
        return None


def spawn_agent(lab: str, spec_path: Path, network_later: bool = False) -> subprocess.Popen:
    """Start the agent's process, parked: it loads Python and its modules, then waits for
    start_agent's handshake before it reads `spec_path` (which need not exist yet). `up`
    spawns it before building the lab, so the ~0.2-0.5 s of interpreter start-up overlaps
    the build. Tied to this thread until the handshake (it dies with it); discard_agent()
    ends it if it is never handed over.

    `network_later`: the agent opens the pods' sockets and serves as soon as it is handed
    over, but starts command containers only after network_ready(), as a kubelet starts
    containers once the CNI has set up the pod's network. `up` hands it over as soon as
    the namespaces exist, so opening a thousand pods' sockets overlaps the link set-up."""
    if (old := agent_pid(lab)) is not None:
        raise PodlabError(f"the workload agent of lab {lab!r} is already running (pid {old}); stop it first")
    d = state.ensure_lab_dir(lab)
    env = dict(os.environ)
    # The agent must find the same state directory and the same code as its caller,
    # even if the caller changed lab.state.ROOT in-process or runs from a source tree.
    env["PODLAB_STATE_DIR"] = str(state.ROOT)
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    from lab.engine.nsexec import DIE_WITH_PARENT
    fd = os.open(d / "agent.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with open(fd, "ab") as log:
        # It dies if `up` dies before journalling its PID (the agent clears the signal once told
        # the record is written, and exits at once if `up` was gone before the signal was set).
        proc = subprocess.Popen(
            [*DIE_WITH_PARENT, sys.executable, "-m", AGENT_MODULE, "--lab", lab, "--spec", str(spec_path),
             "--handshake", "--parent", str(os.getpid()), *(["--network-later"] if network_later else [])],
            stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env=env, cwd="/")
    proc.network_later = network_later   # type: ignore[attr-defined]
    _started[proc.pid] = proc
    return proc


def discard_agent(proc: subprocess.Popen | None) -> None:
    """End an agent from spawn_agent that was never handed over (`up` failed before). One handed
    over early, still waiting to hear that the network is set up, hears its stdin end instead:
    it starts no command container, and the teardown's SIGTERM ends it at once."""
    if proc is None:
        return
    if getattr(proc, "handed_over", False):
        if proc.stdin and not proc.stdin.closed:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
        return
    if proc.poll() is None:
        proc.kill()   # our own unreaped child: its PID cannot have been recycled
    proc.wait()
    _started.pop(proc.pid, None)


def start_agent(lab: str, spec_path: Path, timeout: float = 30.0,
                on_started: Callable[[int], None] | None = None, proc: subprocess.Popen | None = None) -> int:
    """Start the lab's agent detached (or hand over `proc`, from spawn_agent) and, unless it was
    spawned with `network_later`, wait until all its sockets listen; return its PID.

    `on_started(pid)` runs as soon as the process exists, to journal it. Until it returns the
    agent stays tied to this process (it dies if this one does), so a crash at any point
    leaves no agent that the journal does not name. Raises PodlabError (with the end of
    agent.log) if it dies or is not ready in time. An agent spawned with `network_later` is
    only handed over here: network_ready() lets it finish and waits.
    """
    if proc is None:
        proc = spawn_agent(lab, spec_path)
    assert proc.stdin is not None
    try:
        if on_started:
            on_started(proc.pid)
    except BaseException:
        proc.kill()
        proc.wait()
        _started.pop(proc.pid, None)
        raise
    proc.handed_over = True           # type: ignore[attr-defined]  (discard_agent leaves it alone)
    if getattr(proc, "network_later", False):
        _tell(proc, HANDSHAKE, close=False)
        return proc.pid
    _tell(proc, HANDSHAKE)            # "you are on record": the agent may now outlive us
    return _wait_ready(lab, proc, timeout)


def network_ready(lab: str, proc: subprocess.Popen, timeout: float = 30.0) -> int:
    """Tell an agent handed over early (spawn_agent's `network_later`) that the pods' network
    is set up, so it starts their command containers; wait until it is ready; its PID."""
    _tell(proc, NETWORK_READY)
    return _wait_ready(lab, proc, timeout)


def _tell(proc: subprocess.Popen, line: bytes, close: bool = True) -> None:
    assert proc.stdin is not None
    try:
        proc.stdin.write(line)
        proc.stdin.flush()
    except BrokenPipeError:
        close = True                  # it died already: the wait that follows reports why
    if close:
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass


def _wait_ready(lab: str, proc: subprocess.Popen, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    pause = 0.005   # a small lab's agent is ready within ~0.1 s: look often at first, then less
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _started.pop(proc.pid, None)
            raise PodlabError(f"the workload agent of lab {lab!r} exited with code {proc.returncode}:\n{_log_tail(lab)}")
        status = read_status(lab)
        if status.get("pid") == proc.pid and status.get("ready"):
            return proc.pid
        time.sleep(pause)
        pause = min(0.05, pause * 1.5)
    # Our own child, not yet reaped: its PID is safe to signal even if it never wrote agent.pid.
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    _started.pop(proc.pid, None)
    raise PodlabError(f"the workload agent of lab {lab!r} was not ready after {timeout:.0f} s:\n{_log_tail(lab)}")


def _gone(pid: int, lab: str) -> bool:
    proc = _started.get(pid)
    if proc is not None:
        if proc.poll() is None:
            return False
        _started.pop(pid, None)
        return True
    return not _is_agent(pid, lab)


def reload_agent(lab: str, pods: set[str], timeout: float = 30.0) -> None:
    """Have the lab's agent read its spec again (SIGHUP) and wait until it has: it serves exactly
    `pods`, and its kube-proxy has brought the Services' rules to the pods that are ready (the
    agent counts its reloads in its status, and writes it once each is done)."""
    pid = agent_pid(lab)
    if pid is None:
        raise PodlabError(f"the workload agent of lab {lab!r} is not running: 'sudo podlab restart-agent --lab {lab}'")
    before = read_status(lab)
    done = before.get("reloads", 0) if before.get("pid") == pid else 0
    os.kill(pid, signal.SIGHUP)
    path = state.lab_dir(lab) / "agent.json"
    seen: tuple[int, int] | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Read again only once it is another file (the agent replaces it whole): a thousand pods'
        # status is ~0.1 MB of JSON, and parsing it every few milliseconds takes the agent's CPU.
        try:
            st = os.stat(path)
            now: tuple[int, int] | None = (st.st_ino, st.st_mtime_ns)
        except OSError:
            now = None
        if now != seen:
            seen = now
            status = read_status(lab)
            if status.get("pid") == pid and status.get("reloads", 0) > done and set(status.get("pods", {})) == pods:
                return
        time.sleep(0.002)
    raise PodlabError(f"the workload agent of lab {lab!r} did not take up its new spec within {timeout:g} s:\n"
                      f"{_log_tail(lab)}")


def stop_agent(lab: str, timeout: float = 5.0) -> None:
    """Stop the lab's agent (it stops its command containers first); no-op if none runs."""
    pid = agent_pid(lab)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _gone(pid, lab):
            return
        time.sleep(0.05)
    if _is_agent(pid, lab):  # checked again right before the kill: never a recycled PID
        os.kill(pid, signal.SIGKILL)
    proc = _started.pop(pid, None)
    if proc is not None:
        proc.wait(timeout=5)
    (state.lab_dir(lab) / "agent.pid").unlink(missing_ok=True)
