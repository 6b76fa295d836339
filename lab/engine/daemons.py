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

import socket
import subprocess
import time
from functools import partial
from pathlib import Path

from lab import faults, state, workloads
from lab.engine import netns
from lab.engine.journal import Journal
from lab.errors import PodlabError
from lab.ops import AgentReady, AnswersDns, Op, StartDaemon, WriteFile

READY_TIMEOUT = 15.0


def write_files(lab: str, ops: list[Op] | tuple[Op, ...]) -> None:
    for op in ops:
        if isinstance(op, WriteFile):
            path = Path(state.expand(op.path, lab))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(op.content)


class Daemons:
    def __init__(self, lab: str, ops: list[Op] | tuple[Op, ...]):
        self.lab = lab
        self.daemons = [op for op in ops if isinstance(op, StartDaemon)]
        unknown = [d for d in self.daemons if d.kind not in ("agent", "container")]
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

    def network_ready(self) -> None:
        """The network is set up: the agent starts the containers; wait until every daemon is ready."""
        if self.agent is not None:
            workloads.network_ready(self.lab, self.proc)
        for d in self.daemons:
            if isinstance(d.ready, AnswersDns):
                _wait_dns(self.lab, d, d.ready)
            elif d.ready is not None and not isinstance(d.ready, AgentReady):
                raise PodlabError(f"plan error: no readiness check {type(d.ready).__name__}")
        faults.point("daemons ready")

    def discard(self) -> None:
        """`up` failed: an agent never handed over is ended (the teardown ends one that was)."""
        workloads.discard_agent(self.proc)


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
        time.sleep(0.1)
    raise PodlabError(f"{daemon.name} ({daemon.container or check.ns}) did not answer {check.name} at "
                      f"{check.server} within {timeout:g} s ({last}); its log:\n{_log_tail(lab, daemon)}")


def _log_tail(lab: str, daemon: StartDaemon, lines: int = 10) -> str:
    if daemon.container is None:
        return "(no log)"
    pod, container = daemon.container.split("/", 1)
    try:
        text = (state.lab_dir(lab) / "logs" / f"{pod}_{container}.log").read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
