"""A plan's files and daemons: written, started, journalled, and waited for until ready.

The workload agent (kind "agent") is spawned before the namespaces are made, so its
interpreter's start-up overlaps the build; it is handed over (journalled by PID and start time,
then told so) once the namespaces and its spec exist, opens every pod's sockets on the other
core while the links are set up, and starts the pods' containers — among them the "container"
daemons, such as the cluster DNS server — when it hears that the network is set up. A daemon
counts as started when it is on record, and `up` returns once every one passes its readiness
check.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from lab import faults, state, workloads
from lab.engine import netns, nsexec
from lab.engine.journal import Journal
from lab.errors import PodlabError
from lab.ops import AgentReady, AnswersDns, BgpEstablished, Op, StartDaemon, UpdateDaemon, WriteFile

READY_TIMEOUT = 15.0
BGP_TIMEOUT = 60.0


def write_files(lab: str, ops: list[Op] | tuple[Op, ...], atomic: bool = False) -> None:
    """`atomic`: each through a rename, so a crash never leaves half a file that a reader (the agent,
    dnsmasq, the change made again) would take for the whole. A running lab's change asks for it;
    `up` writes thousands of new files nobody reads yet, and a crash there leaves no lab to read them."""
    for op in ops:
        if isinstance(op, WriteFile):
            path = Path(state.expand(op.path, lab))
            path.parent.mkdir(parents=True, exist_ok=True)
            if atomic or op.live:
                # A dotfile beside it (dnsmasq's inotify ignores those), then renamed over it in one step.
                tmp = path.with_name(f".{path.name}.tmp")
                tmp.write_text(op.content)
                os.replace(tmp, path)
            else:
                path.write_text(op.content)


class Daemons:
    def __init__(self, lab: str, ops: list[Op] | tuple[Op, ...]):
        self.lab = lab
        self.daemons = [op for op in ops if isinstance(op, StartDaemon)]
        unknown = [d for d in self.daemons if d.kind not in ("agent", "container", "process")]
        if unknown:
            raise PodlabError(f"plan error: the engine cannot start a daemon of kind {unknown[0].kind!r}")
        self.agent = next((d for d in self.daemons if d.kind == "agent"), None)
        self.proc: subprocess.Popen | None = None

    def spawn_early(self) -> None:
        """Start the agent's interpreter now; it waits to be handed over (hand_over)."""
        if self.agent:
            self.proc = workloads.spawn_agent(self.lab, self._spec(), network_later=True)

    def _spec(self) -> Path:
        assert self.agent is not None
        return Path(state.expand(self.agent.config[0], self.lab))

    def hand_over(self) -> None:
        """Once the namespaces and the files exist: every daemon on record, the agent told so."""
        journal = Journal(self.lab)
        journal.record_many("daemon", [{"name": d.name, "kind": d.kind, "ns": d.ns, "argv": list(d.argv),
                                        "container": d.container} for d in self.daemons])
        if self.agent is None:
            return
        workloads.start_agent(self.lab, self._spec(), on_started=partial(_journal_agent, journal), proc=self.proc)
        faults.point("daemon handed over")

    def network_ready(self, say: Callable[[str], None] | None = None) -> None:
        """The network is set up: the engine starts its own daemons and the agent the containers;
        wait until every daemon is ready."""
        started = time.monotonic()
        processes = [d for d in self.daemons if d.kind == "process"]
        for d in processes:
            _start_process(self.lab, d)
        if self.agent is not None:
            workloads.network_ready(self.lab, self.proc)
        for d in self.daemons:
            if isinstance(d.ready, AnswersDns):
                _wait_dns(self.lab, d, d.ready)
            elif isinstance(d.ready, BgpEstablished):
                _wait_bgp(self.lab, d, d.ready)
            elif d.ready is not None and not isinstance(d.ready, AgentReady):
                raise PodlabError(f"plan error: no readiness check {type(d.ready).__name__}")
        bgp = [d.ready for d in self.daemons if isinstance(d.ready, BgpEstablished)]
        if bgp and say:
            say(f"  BGP: {sum(b.sessions for b in bgp)} sessions Established on {len(bgp)} nodes, "
                f"{sum(len(b.routes) for b in bgp)} routes learned; converged {time.monotonic() - started:.2f} s "
                "after BIRD started")
        faults.point("daemons ready")

    def discard(self) -> None:
        """`up` failed: an agent never handed over is ended (the teardown ends one that was)."""
        workloads.discard_agent(self.proc)


def change_daemons(lab: str, ops: list[Op] | tuple[Op, ...]) -> None:
    """A running lab's change, once its network and files are in place: the engine's new daemons
    start (a joining node's BIRD), those that stay and whose configuration was rewritten are told to
    read it again in place (BIRD's `configure`: a session whose configuration did not change stays
    Established), and each is waited for until it is ready as the new plan says, exactly: no
    session or learned route for a node that left either."""
    starts = [op for op in ops if isinstance(op, StartDaemon) and op.kind == "process"]
    updates = [op for op in ops if isinstance(op, UpdateDaemon)]
    if starts:
        Journal(lab).record_many("daemon", [{"name": d.name, "kind": d.kind, "ns": d.ns, "argv": list(d.argv),
                                            "container": d.container} for d in starts])
    for d in starts:
        _start_process(lab, d)
    for u in updates:
        if u.reconfigure:
            _reconfigure(lab, u.daemon)
    for d in starts + [u.daemon for u in updates]:
        if isinstance(d.ready, BgpEstablished):
            _wait_bgp(lab, d, d.ready, exact=True)


def _reconfigure(lab: str, d: StartDaemon) -> None:
    """Send a running daemon its reconfigure command on its control socket (BIRD: `configure`, which
    reads the file again; nest/proto.c protos_commit keeps every protocol whose configuration is the
    same, starts the new ones and shuts down the ones gone)."""
    from lab.bgp import birdc
    if not (d.control and d.reconfigure):
        raise PodlabError(f"plan error: {d.name} in {d.ns} cannot be reconfigured in place")
    sock = state.expand(d.control, lab)
    try:
        birdc.command(sock, d.reconfigure)
    except birdc.BirdError as e:
        raise PodlabError(f"{d.name} in {d.ns} refused its new configuration ({e}); its log:\n"
                          + _tail(_log_path(lab, d))) from None
    faults.point("daemon reconfigured")


def _start_process(lab: str, d: StartDaemon) -> int:
    """Start a daemon of the engine's own in its namespace (through nsenter: no Python between fork
    and exec), in a session of its own so it outlives `up`; journalled by PID and start time. If
    `up` dies before the record, the daemon still lives in one of the lab's namespaces, where
    cleanup finds it (lab.clean.kill_inside)."""
    assert d.ns is not None
    argv = [state.expand(a, lab) for a in d.argv]
    log = _log_path(lab, d)
    log.parent.mkdir(exist_ok=True)
    try:
        with open(log, "ab") as out:
            proc = subprocess.Popen(nsexec.command(argv, d.ns, state.uts_path(lab, d.ns)), stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd="/")
    except FileNotFoundError:
        raise PodlabError(f"{argv[0]} is not installed: apt-get install {d.package}") from None
    Journal(lab).record("process", pid=proc.pid, start=workloads.process_start(proc.pid), what=f"{d.name} in {d.ns}")
    faults.point("process started")
    return proc.pid


def _wait_bgp(lab: str, daemon: StartDaemon, check: BgpEstablished, timeout: float = BGP_TIMEOUT,
              exact: bool = False) -> None:
    """Until BIRD's sessions are all Established and the node's kernel holds every remote block by BGP.
    `exact` (after a change): and BIRD has no other session, the kernel no other route learned by BGP
    (a node that left: its session removed, its blocks withdrawn)."""
    from lab.bgp import birdc
    sock = state.expand(check.socket, lab)
    deadline = time.monotonic() + timeout
    last = "BIRD has not answered on its control socket yet"
    wanted = {str(r) for r in check.routes}
    while time.monotonic() < deadline:
        try:
            sessions = [p for p in birdc.protocols(sock) if p.proto == "BGP"]
            up = [p for p in sessions if p.bgp_state == "Established"]
            if len(up) >= check.sessions and not (exact and len(sessions) > check.sessions):
                learned = _bird_routes(check.ns)
                missing = wanted - learned
                extra = learned - wanted if exact else set()
                if not missing and not extra:
                    return
                last = (f"all {len(up)} sessions Established, {len(missing)} routes not in the kernel yet"
                        + (f", {len(extra)} routes of blocks withdrawn still there" if extra else ""))
            elif exact and len(sessions) > check.sessions:
                last = f"{len(sessions)} BGP sessions, {check.sessions} wanted: a removed one is still shutting down"
            else:
                down = [f"{p.name} {p.info}" for p in sessions if p.bgp_state != "Established"][:3]
                last = f"{len(up)}/{check.sessions} sessions Established ({'; '.join(down)})"
        except (OSError, birdc.BirdError) as e:
            last = f"BIRD's control socket {sock}: {e}"
        time.sleep(0.05)
    raise PodlabError(f"BGP on {check.ns} did not converge within {timeout:g} s: {last}; BIRD's log:\n"
                      + _tail(_log_path(lab, daemon)))


def _bird_routes(ns: str) -> set[str]:
    """The destinations the kernel of `ns` holds as learned by BIRD (proto bird, unicast: not the
    node's own blocks, which BIRD's static protocol writes as blackholes)."""
    from lab.netlink import dump, wire
    sock = netns.socket_in(ns, socket.AF_NETLINK, socket.SOCK_RAW, 0)
    try:
        sock.bind((0, 0))
        return {f"{r.dst}/{r.dst_len}" for r in dump.routes(sock)
                if r.proto == wire.RTPROT_BIRD and r.dst and r.type == wire.RTN_UNICAST}
    finally:
        sock.close()


def _log_path(lab: str, d: StartDaemon) -> Path:
    """Where a daemon's output goes: a container's is the agent's log of it, the engine's own its file."""
    if d.container is not None:
        pod, container = d.container.split("/", 1)
        return state.container_log(lab, pod, container)
    return state.lab_dir(lab) / "logs" / f"{d.name}-{d.ns}.log"


def _tail(path: Path, lines: int = 10) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _journal_agent(journal: Journal, pid: int) -> None:
    # PID and start time: cleanup signals this process only if both still match.
    journal.record("process", pid=pid, start=workloads.process_start(pid), what="workload agent")


def restart_agent(lab: str) -> int:
    """Start a lab's workload agent again, from the spec its plan wrote; its PID."""
    spec = state.lab_dir(lab) / workloads.SPEC_FILE
    if not spec.is_file():
        raise PodlabError(f"lab {lab} has no {workloads.SPEC_FILE}: 'sudo podlab down {lab}' and up again")
    return workloads.start_agent(lab, spec, on_started=partial(_journal_agent, Journal(lab)))


def _wait_dns(lab: str, daemon: StartDaemon, check: AnswersDns, timeout: float = READY_TIMEOUT) -> None:
    """Until the DNS server answers from inside its namespace (a readiness probe)."""
    from lab.services import dnsclient
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            sock = netns.socket_in(check.ns, socket.AF_INET, socket.SOCK_DGRAM)
            # Connected: a query sent before the server listens comes back at once as refused (the
            # port's ICMP unreachable), rather than as a lost datagram waited for.
            sock.connect((str(check.server), 53))
        except OSError as e:
            raise PodlabError(f"cannot reach {daemon.name} in {check.ns}: {e}") from None
        try:
            answer = dnsclient.ask(sock, str(check.server), check.name, timeout=0.5)
            if answer.ok:
                return
            last = f"answer {answer.rcode}"
        except (TimeoutError, OSError) as e:
            last = str(e)
        finally:
            sock.close()
        time.sleep(0.01)
    raise PodlabError(f"{daemon.name} ({daemon.container or check.ns}) did not answer {check.name} at "
                      f"{check.server} within {timeout:g} s ({last}); its log:\n{_tail(_log_path(lab, daemon))}")
