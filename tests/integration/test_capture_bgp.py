"""`podlab capture` on a Calico lab's underlay decodes the BGP that its real BIRDs speak.

A session that is up says little (a KEEPALIVE each 30 s per side) and the capture can only open once
`up` has made the underlay, after the sessions came up. So the test makes the BGP it then reads:
it stops henry002's BIRD by the PID the journal holds (SIGTERM: BIRD sends each peer a
NOTIFICATION Cease / Administrative Shutdown and closes), then starts it again as the engine did
(the same argv, in the node's namespace): the sessions open again with OPEN, henry002's UPDATE
carries its block, an End-of-RIB and KEEPALIVEs follow. A full iBGP mesh sends no withdrawal when a
node goes: each peer learnt the node's routes from the node itself and drops them on its own.
All of it is seen on the underlay's port of henry002.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

from lab import api, state
from lab.engine import nsexec
from lab.engine.journal import Journal
from lab.packets.capture import PacketLine, stream

pytestmark = pytest.mark.skipif(not shutil.which("bird") and not os.path.exists("/usr/sbin/bird"),
                                reason="BIRD is not installed")

LAB = "bgpcap"
NODE = "henry002"
PEERS = {"henry001", "henry003"}


class Collector:
    """The decoded lines of a capture, gathered by a thread; `wait_for` blocks until a test on them holds."""

    def __init__(self, lines):
        self.lines, self.got = lines, []
        self._changed = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="bgp-capture")
        self.thread.start()

    def _run(self) -> None:
        for line in self.lines:
            with self._changed:
                self.got.append(line)
                self._changed.notify_all()

    def wait_for(self, holds, timeout: float) -> list[PacketLine]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not holds(self.got):
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"not seen within {timeout}s; captured:\n" + "\n".join(
                        f"{g.direction} {g.text}" for g in self.got))
                self._changed.wait(left)
            return list(self.got)


def _messages(line: PacketLine) -> list[str]:
    """The BGP messages a segment carries: 'TCP ... DF: BGP UPDATE end-of-rib; NOTIFICATION Cease / ...'
    holds two (a segment can carry several; the decoder names them after one 'BGP')."""
    _, sep, bgp = line.text.partition(": BGP ")
    return bgp.split("; ") if sep else []


def _from(lines: list[PacketLine], ip: str, kind: str) -> list[PacketLine]:
    """The segments from `ip` that carry a message beginning with `kind` ('NOTIFICATION', 'OPEN', ...)."""
    return [g for g in lines if g.text.startswith(f"{ip}:") and any(m.startswith(kind) for m in _messages(g))]


def _of(lines: list[PacketLine], kind: str) -> list[str]:
    """The messages beginning with `kind` in `lines`."""
    return [m for g in lines for m in _messages(g) if m.startswith(kind)]


def test_capture_names_the_bgp_messages_of_a_bird_stopped_and_started_again():
    lab = api.up(api.load_topology("calico", name=LAB))
    restarted: subprocess.Popen | None = None
    stop = threading.Event()
    collector = None
    try:
        me = lab.target(NODE)
        ip = str(me.ip)
        blocks = {str(b) for b in next(n for n in lab.addresses.nodes if n.name == NODE).blocks}
        peer_ips = {str(lab.target(p).ip) for p in PEERS}
        bird = next(p for p in Journal(lab.name).processes() if p["what"] == f"bird in {me.netns}")
        with open(f"/proc/{bird['pid']}/cmdline", "rb") as f:
            argv = f.read().rstrip(b"\0").decode().split("\0")
        collector = Collector(stream(lab, f"underlay:{NODE}", bpf="tcp port 179", stop=stop))

        os.kill(bird["pid"], signal.SIGTERM)
        # a NOTIFICATION can share its segment with an End-of-RIB still on its way when the capture opened
        got = collector.wait_for(lambda g: len(_from(g, ip, "NOTIFICATION")) >= 2, 10)
        notes = _from(got, ip, "NOTIFICATION")
        assert {n.text.split(" > ")[1].split(":")[0] for n in notes} == peer_ips
        assert set(_of(notes, "NOTIFICATION")) == {"NOTIFICATION Cease / Administrative Shutdown"}
        assert all(n.direction == "in" for n in notes)     # into the underlay's bridge from henry002

        restarted = subprocess.Popen(nsexec.command(argv, me.netns, state.uts_path(lab.name, me.netns)),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        updates = lambda g: {b for u in _of(_from(g, ip, "UPDATE"), "UPDATE") for b in blocks if f"nlri {b}" in u}
        got = collector.wait_for(lambda g: updates(g) == blocks and len(_from(g, ip, "KEEPALIVE")) >= 2
                                 and _from(g, ip, "UPDATE end-of-rib"), 30)   # its own segment, or after an UPDATE in one
        opens = _from(got, ip, "OPEN")
        assert opens and set(_of(opens, "OPEN")) == {f"OPEN AS 64512 hold 240 id {ip}"}, [o.text for o in opens]
        assert {o.text.split(" > ")[1].split(":")[0] for o in opens} == peer_ips
        assert {f"OPEN AS 64512 hold 240 id {p}" for p in peer_ips} <= set(_of(got, "OPEN"))
        for u in _of(_from(got, ip, "UPDATE nlri"), "UPDATE nlri"):
            assert f"next-hop {ip}" in u, u
    finally:
        stop.set()
        if collector is not None:
            collector.thread.join(5)
        if restarted is not None:
            restarted.terminate()
            restarted.wait(10)
        api.down(LAB)
