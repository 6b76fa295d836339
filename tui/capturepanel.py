"""A live capture on one interface of the selected namespace (lab.packets.capture), decoded
lines streaming into a log: for VXLAN the outer (underlay) and the inner (pod) packet.

The worker thread blocks in the capture; packets go into a queue that a timer drains ten
times a second, so a flood of packets costs one screen update per tick, not one per packet.
"""
from __future__ import annotations

import threading
from collections import deque
from datetime import datetime
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, RichLog, Select

from lab.inspect import Snapshot

from tui.messages import CaptureEnded
from tui.source import Entity, Source

DRAIN_EVERY = 0.1
ALL = "(all)"


def packet_text(p: Any) -> Text:
    """A PacketLine (time, netns, iface, direction, text, raw) as one log entry."""
    t = getattr(p, "time", None)
    if isinstance(t, (int, float)):
        stamp = datetime.fromtimestamp(t).strftime("%H:%M:%S.%f")[:-3]
    else:
        stamp = str(t or "")
    line = Text(f"{stamp} ", style="dim")
    line.append(f"{getattr(p, 'iface', '?')} ", style="cyan")
    direction = getattr(p, "direction", "")
    if direction:
        line.append(f"{direction} ", style="green" if direction == "in" else "yellow")
    line.append(str(getattr(p, "text", p)))
    return line


class CapturePanel(Vertical):
    def __init__(self, source: Source, **kw: Any) -> None:
        super().__init__(**kw)
        self.source = source
        self.entity: Entity | None = None
        self.capturing: Entity | None = None
        self.history: list[str] = []
        self._stop: threading.Event | None = None
        self._queue: deque[Any] = deque()
        self._names: list[str] = []

    def compose(self) -> ComposeResult:
        with Horizontal(id="cap-bar"):
            yield Select([(ALL, ALL)], value=ALL, allow_blank=False, id="cap-iface", compact=True)
            yield Input(placeholder="bpf filter, e.g. icmp", id="cap-bpf", compact=True)
            yield Button("Start", id="cap-toggle", compact=True, variant="success")
        yield RichLog(id="cap-log", wrap=True, max_lines=5000, min_width=20)

    def on_mount(self) -> None:
        self.set_interval(DRAIN_EVERY, self._drain)

    def show(self, entity: Entity, snap: Snapshot) -> None:
        """The selected namespace's interfaces become the choices (while not capturing)."""
        if self.capturing is not None:
            return
        select = self.query_one("#cap-iface", Select)
        names = [l.name for l in snap.links]
        if names != self._names:
            keep = select.value if select.value in names else ALL
            select.set_options([(ALL, ALL)] + [(n, n) for n in names])
            select.value = keep
            self._names = names
        self.entity = entity

    def choose(self, iface: str) -> None:
        self.query_one("#cap-iface", Select).value = iface

    @property
    def iface(self) -> str | None:
        value = self.query_one("#cap-iface", Select).value
        return None if value in (ALL, Select.BLANK) else str(value)

    def log_lines(self, lines: list[Any]) -> None:
        log = self.query_one(RichLog)
        for line in lines:
            log.write(line)
            self.history.append(line.plain if isinstance(line, Text) else str(line))

    @on(Button.Pressed, "#cap-toggle")
    def toggle(self) -> None:
        if self.capturing is not None:
            self.stop()
        else:
            self.start()

    @on(Input.Submitted, "#cap-bpf")
    def _submitted(self) -> None:
        self.stop()
        self.start()

    def start(self) -> bool:
        if self.entity is None:
            self.log_lines([Text("capture: select a namespace in the tree first", style="yellow")])
            return False
        self.stop()
        bpf = self.query_one("#cap-bpf", Input).value.strip() or None
        self.capturing = self.entity
        self._stop = threading.Event()
        self.query_one("#cap-toggle", Button).label = "Stop"
        self.log_lines([Text(f"capturing in {self.entity.label} on {self.iface or 'every interface'}"
                             + (f" ({bpf})" if bpf else "") + " …", style="bold")])
        self._capture(self.entity, self.iface, bpf, self._stop)
        return True

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()      # the worker ends at the next packet or timeout; CaptureEnded follows

    @work(thread=True, exclusive=True, group="capture")
    def _capture(self, entity: Entity, iface: str | None, bpf: str | None, stop: threading.Event) -> None:
        try:
            for packet in self.source.capture(entity, iface, bpf, stop):
                self._queue.append(packet)
                if stop.is_set():
                    break
        except Exception as e:
            self.post_message(CaptureEnded(str(e), id(stop)))
            return
        self.post_message(CaptureEnded(None, id(stop)))

    def _drain(self) -> None:
        batch = []
        while self._queue:
            batch.append(packet_text(self._queue.popleft()))
        if batch:
            self.log_lines(batch)

    def on_capture_ended(self, message: CaptureEnded) -> None:
        self._drain()
        if self._stop is not None and message.token != id(self._stop):   # an earlier capture, replaced
            if message.error:
                self.log_lines([Text(f"capture: {message.error}", style="red")])
            return
        self._stop = None
        self.capturing = None
        self.query_one("#cap-toggle", Button).label = "Start"
        if message.error:
            self.log_lines([Text(f"capture: {message.error}", style="red")])
        else:
            self.log_lines([Text("capture stopped", style="dim")])

    def on_unmount(self) -> None:
        self.stop()
