"""The workload agent: one process that runs every pod of a lab.

    python -m lab.workloads.agent --lab LAB --spec PATH

Built-in containers (http, echo) are listening sockets, each made by a helper thread that
has joined the pod's network namespace (lab.engine.netns.run_in); a socket keeps its
namespace, so the main thread serves them all from one asyncio loop (HTTP: http_server.py)
and never changes namespace itself. `command` containers are real processes that join the
pod's network and UTS namespaces before exec, restarted with kubelet's back-off when they exit.
A pod's init containers run first (init.py: in order, each to completion, retried with back-off),
then its containers start; its volumes (volumes.py) are made when it starts and removed with it.

Status goes to agent.json (atomically, at most every STATUS_INTERVAL); SIGTERM/SIGINT stop
the command containers (SIGTERM, then SIGKILL after STOP_GRACE) and end the agent.

In a lab with Services the agent is kube-proxy too (lab.services.kube_proxy): the moment a pod
becomes ready or unready (a container starts, exits, waits to restart), or the lab changes
(SIGHUP), each node's kube-proxy table is brought to the ready endpoints, one transaction per
node that rewrites only the Services that changed.
"""
from __future__ import annotations

import argparse
import asyncio
import ctypes
import errno
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import partial

from lab import state
from lab.engine import mountns, netns, nsexec
from lab.workloads import (BACKOFF_RESET, HANDSHAKE, KUBE_PROXY_SPEC, NETWORK_READY, RUNNING, ContainerSpec,
                           KnownPods, PodSpec, Spec, agent_pid, backoff, init, load_spec, pod_ready, read_status, servers,
                           volumes, write_json_atomic)
from lab.workloads.http_server import HttpListener

STATUS_INTERVAL = 0.5
WATCH_INTERVAL = 1.0
STOP_GRACE = 2.0
BACKLOG = 1024          # many clients at once (probes, benchmarks) must not see refused connections
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)

Claim = tuple[str, int]  # (protocol, port)


def listeners(c: ContainerSpec) -> list[Claim]:
    """The ports a container listens on. A command's declared ports are its claim: we cannot see inside it."""
    if c.workload == "http":
        return [("tcp", p) for p in (c.ports or (80,))]
    if c.workload == "echo":  # agnhost netexec: --http-port 8080, --udp-port 8081
        return [("tcp", c.ports[0] if c.ports else 8080), ("udp", c.ports[1] if len(c.ports) > 1 else 8081)]
    if c.workload == "command":
        return [("tcp", p) for p in c.ports]
    return []


def _port(claim: Claim) -> str:
    return f"port {claim[1]}" if claim[0] == "tcp" else f"udp port {claim[1]}"


def _listen(claim: Claim) -> socket.socket:
    proto, port = claim
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    try:
        if proto == "tcp":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as nginx: restart despite TIME_WAIT
        s.bind(("0.0.0.0", port))
        if proto == "tcp":
            # Listen here, not later: two SO_REUSEADDR sockets may both bind a port until one listens.
            s.listen(BACKLOG)
        s.setblocking(False)
        return s
    except BaseException:
        s.close()
        raise


def bind_pod(pod: PodSpec) -> dict[str, list[tuple[Claim, socket.socket]] | str]:
    """Open every built-in container's sockets; run inside the pod's namespace.

    Containers claim ports in order; a later container wanting a claimed port fails with a
    message (the others keep running), as a second nginx in one pod would.
    """
    claimed: dict[Claim, str] = {}
    out: dict[str, list[tuple[Claim, socket.socket]] | str] = {}
    for c in pod.containers:
        wanted = listeners(c)
        clash = next((w for w in wanted if w in claimed), None)
        if clash:
            out[c.name] = f"{_port(clash)} already in use by container {claimed[clash]}"
            continue
        socks: list[tuple[Claim, socket.socket]] = []
        for w in wanted if c.workload != "command" else ():
            try:
                socks.append((w, _listen(w)))
            except OSError as e:  # something else in the namespace holds it, e.g. a `podlab exec` process
                for _, s in socks:
                    s.close()
                out[c.name] = (f"{_port(w)} already in use" if e.errno == errno.EADDRINUSE
                               else f"cannot listen on {_port(w)}: {e.strerror}")
                break
        else:
            claimed.update((w, c.name) for w in wanted)
            out[c.name] = socks
    return out


def _killpg(pgid: int, sig: int) -> None:
    """Signal a command container's process group. Only called while its leader is not yet
    reaped, so the group ID cannot have been recycled."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _exited(pid: int) -> bool:
    """True once `pid` has exited, without reaping it (so its PID and group stay ours)."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


@dataclass
class Container:
    spec: ContainerSpec
    state: str = "Waiting"       # Waiting | Running | Terminated (an init container's end) | Error
    restarts: int = 0
    message: str = ""
    reason: str = ""             # kubelet's: PodInitializing, CrashLoopBackOff; Completed, Error (Terminated)
    exit_code: int | None = None
    proc: subprocess.Popen | None = None
    closers: list = field(default_factory=list)  # HTTP listeners and UDP transports
    task: asyncio.Task | None = None
    started_at: float | None = None   # when it last started running (wall clock, as Kubernetes' startedAt)

    def close_sockets(self) -> None:
        """Its listening sockets: while one is open, it keeps the pod's namespace alive."""
        for closer in self.closers:
            closer.close()
        self.closers.clear()

    def status(self) -> dict:
        out = {"state": self.state, "restarts": self.restarts,
               "pid": self.proc.pid if self.proc else None, "message": self.message,
               "startedAt": self.started_at if self.state == RUNNING else None}
        if self.reason:
            out["reason"] = self.reason
        if self.exit_code is not None:
            out["exitCode"] = self.exit_code
        return out


@dataclass
class Pod:
    spec: PodSpec
    containers: dict[str, Container]
    ns_id: tuple[int, int] | None = None  # (st_dev, st_ino) of the namespace: a new one of the same name is not ours
    gone: bool = False
    init: dict[str, Container] = field(default_factory=dict)   # its init containers, in order
    task: asyncio.Task | None = None      # its initialization (init.initialize), while it runs

    @classmethod
    def of(cls, spec: PodSpec) -> "Pod":
        return cls(spec, {c.name: Container(c) for c in spec.containers},
                   init={c.name: Container(c) for c in spec.init_containers})

    def all_containers(self) -> list[Container]:
        return [*self.init.values(), *self.containers.values()]

    @property
    def has_dir(self) -> bool:
        """Whether it has a directory of its own (volumes.py): for its volumes and containers' mounts."""
        return bool(self.spec.volumes)


class Agent:
    def __init__(self, spec: Spec, network_later: bool = False, spec_path: str | None = None,
                 known: KnownPods | None = None):
        self.lab = spec.lab
        self.spec_path = spec_path
        self.known = known if known is not None else KnownPods()    # the spec as read last: a reload reads the changes
        # Command containers start once the pods' network is set up: at once, or (network_later)
        # when the starter says so on stdin, having handed us over while it builds the links.
        self.network_later = network_later
        self.network = asyncio.Event()
        self.dir = state.ensure_lab_dir(spec.lab)
        (self.dir / "logs").mkdir(exist_ok=True)
        self.pods = [Pod.of(p) for p in spec.pods]
        self.ready = False
        self.dirty = True
        self.agent_restarts = 0
        self._carry_over(read_status(spec.lab))
        self.reloads = 0
        self.kube_proxy = self._kube_proxy()
        self.endpoints_live = False      # kube-proxy follows readiness once the network is set up
        self._sync_wanted = False
        self._sync_task: asyncio.Task | None = None
        self._sync_lock = asyncio.Lock()

    def _kube_proxy(self):
        """The lab's kube-proxy, if it has Services (the plan wrote kube-proxy.json)."""
        path = self.dir / KUBE_PROXY_SPEC
        if not path.exists():
            return None
        from lab.services import kube_proxy
        try:
            # A first agent finds the table `up` loaded; one started again assumes nothing.
            return kube_proxy.KubeProxy(path, log, table_as_planned=self.agent_restarts == 0)
        except (OSError, ValueError, KeyError, TypeError) as e:
            log(f"kube-proxy: {path}: {e}; Services will not follow the pods' readiness")
            return None

    def ready_pods(self) -> set[str]:
        return {p.spec.pod for p in self.pods
                if not p.gone and pod_ready([c.state for c in p.containers.values()])}

    def readiness_changed(self) -> None:
        """A pod may have become (un)ready: kube-proxy catches up at the loop's next turn (one sync
        for everything that changed meanwhile, and one more if more changes while it runs)."""
        if self.kube_proxy is None or not self.endpoints_live:
            return
        self._sync_wanted = True
        if self._sync_task is None or self._sync_task.done():
            self._sync_task = asyncio.get_running_loop().create_task(self._follow_readiness())

    async def _follow_readiness(self) -> None:
        while self._sync_wanted:
            self._sync_wanted = False
            await self.sync_endpoints()

    async def sync_endpoints(self) -> None:
        """Each node's Services brought to the pods ready now; the status written after, so that
        agent.json's readiness is what the rules hold."""
        if self.kube_proxy is None:
            return
        async with self._sync_lock:
            try:
                sent = await self.kube_proxy.sync(self.ready_pods())
            except Exception as e:   # noqa: BLE001  (kube-proxy failing must not stop the pods' serving)
                log(f"kube-proxy: sync failed: {e!r}")
                return
            if sent:
                self.write_status()

    def _carry_over(self, previous: dict) -> None:
        """A new agent for a lab that had one (it died, `podlab restart-agent` started this one):
        every container starts again, like after a pod sandbox restart, and RESTARTS counts it."""
        if not isinstance(previous, dict) or previous.get("lab") != self.lab or previous.get("pid") == os.getpid():
            return
        try:
            self.agent_restarts = int(previous.get("agentRestarts", 0)) + 1
            old_pods = previous.get("pods", {})
            for pod in self.pods:
                for key, mine in (("containers", pod.containers), ("initContainers", pod.init)):
                    old = old_pods.get(pod.spec.pod, {}).get(key, {})
                    for name, c in mine.items():
                        if isinstance(old.get(name), dict):
                            c.restarts = int(old[name].get("restarts", 0)) + 1
        except (AttributeError, TypeError, ValueError):
            log("previous agent.json unreadable: restart counts start again at 0")

    def set(self, pod: Pod, c: Container, state_: str, message: str = "", reason: str = "") -> None:
        if (c.state, c.message) != (state_, message) and state_ != RUNNING:
            log(f"{pod.spec.pod}/{c.spec.name}: {state_} {reason + ': ' if reason else ''}{message}")
        was = c.state
        c.state, c.message, c.reason = state_, message, reason
        if state_ == RUNNING and was != RUNNING:
            c.started_at = time.time()
        self.dirty = True
        if (was == RUNNING) != (state_ == RUNNING):
            self.readiness_changed()

    def status(self) -> dict:
        out = {"pid": os.getpid(), "lab": self.lab, "ready": self.ready, "agentRestarts": self.agent_restarts,
               "reloads": self.reloads, "pods": {p.spec.pod: self._pod_status(p) for p in self.pods}}
        if self.kube_proxy is not None:
            out["kubeProxy"] = self.kube_proxy.status()
        return out

    @staticmethod
    def _pod_status(p: Pod) -> dict:
        out = {"containers": {n: c.status() for n, c in p.containers.items()}}
        if p.init:
            out["initContainers"] = {n: c.status() for n, c in p.init.items()}
        return out

    def write_status(self) -> None:
        self.dirty = False
        write_json_atomic(self.dir / "agent.json", self.status())

    def bind_all(self) -> list[dict | OSError | None]:
        """Every pod's sockets, opened by one helper thread that visits each pod's namespace in
        turn (a thread per pod would cost ~1 ms each: a second for 1000 pods). Not those of pods
        with init containers: nothing may listen before they have run (None: opened then)."""
        def job(pod: Pod) -> dict:
            st = os.stat(netns.netns_path(pod.spec.netns))
            pod.ns_id = (st.st_dev, st.st_ino)
            return bind_pod(pod.spec)
        plain = [p for p in self.pods if not p.init]
        bound = dict(zip(map(id, plain), netns.run_in_each([(p.spec.netns, partial(job, p)) for p in plain])))
        return [bound.get(id(p)) for p in self.pods]

    async def start_pod(self, pod: Pod, bound: dict | OSError | None = None) -> None:
        """Start a pod: its directory (volumes), then its init containers, or else its containers at
        once; `bound` is what bind_all opened for it (None: open it when its containers start)."""
        if pod.has_dir:
            try:
                volumes.make(self.lab, pod.spec.pod, pod.spec.volumes)
            except OSError as e:
                for c in pod.all_containers():
                    self.set(pod, c, "Error", f"cannot make its volumes: {e.strerror or e}")
                return
        if pod.init:
            try:        # which namespace is the pod's, for watch_namespaces (bind_all says it for the others)
                st = os.stat(netns.netns_path(pod.spec.netns))
            except OSError as e:
                pod.gone = True
                for c in pod.all_containers():
                    self.set(pod, c, "Error", f"network namespace {pod.spec.netns}: {e.strerror}")
                return
            pod.ns_id = (st.st_dev, st.st_ino)
            for c in pod.containers.values():
                self.set(pod, c, "Waiting", reason="PodInitializing")
            pod.task = asyncio.create_task(init.initialize(self, pod))
            return
        await self.serve(pod, bound)

    async def serve(self, pod: Pod, bound: dict | OSError | None = None) -> None:
        """Serve a pod's containers: built-in ones listen, command ones are supervised."""
        ns = pod.spec.netns
        try:
            if isinstance(bound, OSError):
                raise bound
            if bound is None:
                st = os.stat(netns.netns_path(ns))
                pod.ns_id = (st.st_dev, st.st_ino)
                bound = netns.run_in(ns, partial(bind_pod, pod.spec))
        except OSError as e:
            pod.gone = True
            for c in pod.containers.values():
                self.set(pod, c, "Error", f"network namespace {ns}: {e.strerror}")
            return
        loop = asyncio.get_running_loop()
        for c in pod.containers.values():
            result = bound[c.spec.name]
            if isinstance(result, str):
                self.set(pod, c, "Error", result)
                continue
            files = volumes.document_root(self.lab, pod.spec.pod, [(m.volume, m.path) for m in c.spec.volume_mounts]) \
                if c.spec.workload == "http" else None
            for (proto, _port_), sock in result:
                if proto == "tcp":
                    c.closers.append(HttpListener(sock, pod.spec.pod, c.spec.workload, ns, files))
                else:
                    transport, _ = await loop.create_datagram_endpoint(
                        partial(servers.UdpEcho, pod.spec.pod), sock=sock)
                    c.closers.append(transport)
            if c.spec.workload == "command":
                c.task = asyncio.create_task(self.supervise(pod, c))
            else:
                self.set(pod, c, RUNNING)

    def spawn(self, pod: Pod, c: Container) -> subprocess.Popen:
        """Start a command container; mountns.MountError if its mounts cannot be made."""
        env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "HOSTNAME": pod.spec.pod,
               "HOME": "/root", **dict(c.spec.env)}   # the container's env: over the kubelet's, as in a pod
        # In the pod (its resolv.conf and hosts too, and its volumes), and dying with the agent even if
        # it is SIGKILLed.
        argv = nsexec.command(c.spec.command, pod.spec.netns, pod.spec.uts, mounts=pod.spec.mounts,
                              view=self.view(pod, c), die_with_parent=True, path=env["PATH"])
        output = state.container_log(self.lab, pod.spec.pod, c.spec.name)
        if output.exists():  # the instance before this one: what `logs --previous` reads, as the kubelet keeps it
            os.replace(output, state.container_log(self.lab, pod.spec.pod, c.spec.name, previous=True))
        with open(output, "wb") as out:
            return subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd="/", env=env, start_new_session=True)  # own process group: stop reaches its children too

    def view(self, pod: Pod, c: Container) -> mountns.Plan | None:
        """A container's mounts: its pod's files and volumes (None: only the files, planned by nsexec).
        Its staging is made afresh for each run, as a container restarted gets a new writable layer."""
        if not c.spec.volume_mounts:
            return None
        scratch = volumes.mounts_dir(self.lab, pod.spec.pod, c.spec.name)
        shutil.rmtree(scratch, ignore_errors=True)
        return volumes.stage(self.lab, pod.spec.pod, scratch, pod.spec.mounts,
                             [(m.volume, m.path, m.read_only) for m in c.spec.volume_mounts])

    async def wait_exit(self, c: Container) -> int:
        """Wait (without a thread or polling) until the container's process exits; then reap it."""
        assert c.proc is not None
        loop = asyncio.get_running_loop()
        fd = os.pidfd_open(c.proc.pid)
        try:
            done = loop.create_future()
            loop.add_reader(fd, lambda: done.done() or done.set_result(None))
            try:
                await done
            finally:
                loop.remove_reader(fd)
        finally:
            os.close(fd)
        return self.reap(c)

    def reap(self, c: Container) -> int:
        assert c.proc is not None
        _killpg(c.proc.pid, signal.SIGKILL)  # what the main process left behind dies with it, as in a container
        code = c.proc.wait()
        c.proc = None
        self.dirty = True
        return code

    async def run_once(self, pod: Pod, c: Container) -> tuple[int | None, str]:
        """Run a command container until it exits: its exit code (None: it could not start), and why it ended."""
        try:
            c.proc = self.spawn(pod, c)
        except (OSError, subprocess.SubprocessError, mountns.MountError) as e:
            return None, f"cannot start {c.spec.command[0]}: {getattr(e, 'strerror', None) or e}"
        self.set(pod, c, RUNNING)
        code = await self.wait_exit(c)
        return code, f"exited with code {code}" if code >= 0 else f"killed by signal {-code}"

    async def supervise(self, pod: Pod, c: Container) -> None:
        """Run a command container forever (restartPolicy Always), backing off while it keeps failing."""
        await self.network.wait()
        failures = 0
        while not pod.gone:
            started = time.monotonic()
            _code, reason = await self.run_once(pod, c)
            if pod.gone:
                return
            if time.monotonic() - started >= BACKOFF_RESET:
                failures = 0
            delay = backoff(failures)
            failures += 1
            self.set(pod, c, "Waiting", f"CrashLoopBackOff: {reason}; restarting in {delay:g} s", "CrashLoopBackOff")
            await asyncio.sleep(delay)
            if pod.gone:
                return
            c.restarts += 1

    def pod_gone(self, pod: Pod) -> None:
        """The pod's namespace was deleted (or replaced): stop serving it, so nothing keeps it alive."""
        pod.gone = True
        message = f"network namespace {pod.spec.netns} is gone"
        loop = asyncio.get_running_loop()
        for c in pod.all_containers():
            c.close_sockets()
            if c.proc is not None:
                _killpg(c.proc.pid, signal.SIGTERM)
                loop.call_later(STOP_GRACE, self._kill_if_running, c, c.proc)
            self.set(pod, c, "Error", message)

    async def reload(self) -> None:
        """SIGHUP: the lab changed (podlab apply/delete). Read the spec again; stop the pods it no
        longer has (their sockets closed, so their namespaces can go) and serve the new ones. A pod
        kept is left alone: its containers keep running, their restart counts stay."""
        try:
            spec = load_spec(self.spec_path, self.known) if self.spec_path else None
        except (OSError, ValueError) as e:
            log(f"reload: {self.spec_path}: {e}; nothing changed")
            return
        if spec is None or spec.lab != self.lab:
            return
        wanted = {p.pod: p for p in spec.pods}
        keep, gone = [], []
        for pod in self.pods:
            (keep if wanted.get(pod.spec.pod) == pod.spec else gone).append(pod)
        if gone and self.kube_proxy is not None:
            # The pods that go leave the Services' endpoints before they stop listening, as a terminating
            # pod leaves its EndpointSlices: a connection to a ClusterIP never meets a closed port.
            for pod in gone:
                pod.gone = True
            await self.sync_endpoints()
        for pod in gone:
            await self.stop_pod(pod)
            if pod.has_dir:
                volumes.remove(self.lab, pod.spec.pod)    # a pod made again under its name gets new volumes
            for c in pod.all_containers():                # and no log of the pod that went
                for previous in (False, True):
                    state.container_log(self.lab, pod.spec.pod, c.spec.name, previous).unlink(missing_ok=True)
        have = {p.spec.pod for p in keep}
        added = [Pod.of(p) for p in spec.pods if p.pod not in have]
        self.pods = keep + added
        for pod in added:
            await self.start_pod(pod)
        if self.kube_proxy is not None:
            # The pods that went are endpoints no more before their namespaces go (the caller waits
            # for this reload); the new ones are once they run (their command's first start: one turn).
            await asyncio.sleep(0)
            self.kube_proxy.reload()
            await self.sync_endpoints()
        self.reloads += 1
        self.write_status()
        log(f"reload: {len(gone)} pods stopped, {len(added)} started, {len(self.pods)} served")

    async def stop_pod(self, pod: Pod) -> None:
        """A pod the lab no longer has: its supervisors cancelled, sockets closed, processes ended."""
        pod.gone = True
        tasks = [t for t in (pod.task, *(c.task for c in pod.containers.values())) if t]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for c in pod.all_containers():
            c.close_sockets()
            if c.proc is not None:
                _killpg(c.proc.pid, signal.SIGTERM)
                deadline = time.monotonic() + STOP_GRACE
                while time.monotonic() < deadline and not _exited(c.proc.pid):
                    await asyncio.sleep(0.02)
                self.reap(c)

    async def _reload_serially(self, lock: asyncio.Lock) -> None:
        async with lock:       # one reload at a time, in the order the signals came
            await self.reload()

    def _kill_if_running(self, c: Container, proc: subprocess.Popen) -> None:
        if c.proc is proc:  # not reaped yet, so its group ID is still ours
            _killpg(proc.pid, signal.SIGKILL)

    async def watch_namespaces(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            if self.kube_proxy is not None:
                self.kube_proxy.release_gone()      # its nft contexts must not keep a removed node alive
            for pod in self.pods:
                if pod.gone:
                    continue
                try:
                    st = os.stat(netns.netns_path(pod.spec.netns))
                    same = (st.st_dev, st.st_ino) == pod.ns_id
                except OSError:
                    same = False
                if not same:
                    self.pod_gone(pod)

    async def flush_status(self) -> None:
        while True:
            await asyncio.sleep(STATUS_INTERVAL)
            if self.dirty:
                self.write_status()

    async def stop_commands(self) -> None:
        tasks = [t for p in self.pods for t in (p.task, *(c.task for c in p.containers.values())) if t]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        running = [c for p in self.pods for c in p.all_containers() if c.proc is not None]
        for c in running:
            _killpg(c.proc.pid, signal.SIGTERM)  # type: ignore[union-attr]
        deadline = time.monotonic() + STOP_GRACE
        while time.monotonic() < deadline and not all(_exited(c.proc.pid) for c in running):  # type: ignore[union-attr]
            await asyncio.sleep(0.05)
        for c in running:
            self.reap(c)  # SIGKILLs the group first: leftovers and anyone who ignored SIGTERM

    async def network_set_up(self, stop: asyncio.Event) -> bool:
        """Let command containers start: now, or once the starter says the network is set up.
        False if it never does: its stdin ends first (it failed or died), or we are stopped."""
        if self.network_later:
            loop = asyncio.get_running_loop()
            said: asyncio.Future[bytes] = loop.create_future()

            def read() -> None:   # a daemon thread: a read that never returns must not hold up exit
                line = sys.stdin.buffer.readline()
                try:
                    loop.call_soon_threadsafe(lambda: said.done() or said.set_result(line))
                except RuntimeError:
                    pass          # the loop is closed: we are exiting anyway

            threading.Thread(target=read, name="podlab-network-ready", daemon=True).start()
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({said, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not said.done() or said.result() != NETWORK_READY:
                log("the starter ended before the pods' network was set up: command containers not started")
                return False
        self.network.set()
        return True

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        reload_lock = asyncio.Lock()
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self._reload_serially(reload_lock)))
        pid_file = self.dir / "agent.pid"
        pid_file.write_text(f"{os.getpid()}\n")
        try:
            for pod, bound in zip(self.pods, self.bind_all()):
                await self.start_pod(pod, bound)
            if await self.network_set_up(stop):
                # The command containers' supervisors start their first process in their first
                # step: let them take it, so that "ready" means every container has been started.
                await asyncio.sleep(0)
                self.ready = True
                self.write_status()
                log(f"agent for lab {self.lab}: {len(self.pods)} pods ready")
                # kube-proxy's tables are loaded by now (the network is set up): follow readiness.
                self.endpoints_live = True
                await self.sync_endpoints()
            background = [asyncio.create_task(self.flush_status()), asyncio.create_task(self.watch_namespaces())]
            await stop.wait()
            for t in background:
                t.cancel()
            log("stopping")
        finally:
            await self.stop_commands()
            self.ready = False
            self.write_status()
            pid_file.unlink(missing_ok=True)
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.workloads.agent", description=__doc__.split("\n")[0])
    parser.add_argument("--lab", required=True)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--handshake", action="store_true",
                        help="wait for the starter to journal our PID (a line on stdin) before living on our own")
    parser.add_argument("--parent", type=int,
                        help="the starter's PID: exit at once if it is no longer our parent (it died "
                             "before our parent-death signal was set, so nobody would ever record us)")
    parser.add_argument("--network-later", action="store_true",
                        help="serve at once, but start command containers only when a second line on stdin "
                             "says the pods' network is set up")
    args = parser.parse_args(argv)
    if args.parent is not None and os.getppid() != args.parent:
        return 1
    os.umask(0o077)  # state files are root's only
    if args.handshake:
        # Started with PR_SET_PDEATHSIG: we die with the starter until it has recorded us.
        if sys.stdin.buffer.readline() != HANDSHAKE:
            return 1  # the starter gave up (or died) before recording us
        _libc.prctl(PR_SET_PDEATHSIG, 0)
    known = KnownPods()
    try:
        spec = load_spec(args.spec, known)
    except (OSError, ValueError) as e:
        print(f"podlab agent: {args.spec}: {e}", file=sys.stderr)
        return 2
    if spec.lab != args.lab:
        print(f"podlab agent: {args.spec} is for lab {spec.lab!r}, not {args.lab!r}", file=sys.stderr)
        return 2
    if (other := agent_pid(spec.lab)) not in (None, os.getpid()):
        print(f"podlab agent: lab {spec.lab!r} already has an agent (pid {other})", file=sys.stderr)
        return 1
    # Every listening socket is a file descriptor: 1000 pods need several thousand.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return asyncio.run(Agent(spec, network_later=args.network_later and args.handshake, spec_path=args.spec,
                             known=known).run())


if __name__ == "__main__":
    sys.exit(main())
