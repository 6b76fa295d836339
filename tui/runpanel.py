"""Send traffic: pick a source and a destination (from the tree or typed), run ping, curl or trace.

ping and curl are the real tools run inside the source's namespace; their output streams into
the log line by line. A trace (lab.packets.trace) shows as its hop list: where the packet was
seen, the route / neighbour / FDB entry that sent it on, and the verdict.
"""
from __future__ import annotations

import subprocess
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.suggester import SuggestFromList
from textual.widgets import Button, Input, Label, RichLog

from lab.errors import PodlabError

from tui.messages import Output, TraceDone
from tui.source import Entity, Source

KINDS = ("ping", "curl", "trace")


def _hop_lines(i: int, hop: Any) -> list[Text]:
    where = getattr(hop, "target", None) or getattr(hop, "netns", "?")
    head = Text(f"{i:>2} ", style="bold")
    head.append(str(where), style="bold cyan")
    head.append(f" {getattr(hop, 'iface', '?')} {getattr(hop, 'direction', '')}")
    ttl = getattr(hop, "ttl", None)
    if ttl is not None:
        head.append(f" ttl {ttl}", style="dim")
    lines = [head, Text("   " + str(getattr(hop, "summary", "")))]
    decision = getattr(hop, "decision", None)
    if decision:
        lines.append(Text("   ↳ " + str(decision), style="yellow"))
    return lines


def trace_lines(trace: Any) -> list[Text]:
    """A Trace (lab.packets.trace) as lines for the log: hops, deciding entries, verdict."""
    port = getattr(trace, "port", None)
    src_ip, dst_ip = getattr(trace, "src_ip", None), getattr(trace, "dst_ip", None)
    src = f"{trace.src} ({src_ip})" if src_ip and src_ip != trace.src else trace.src
    dst = f"{trace.dst} ({dst_ip})" if dst_ip and dst_ip != trace.dst else trace.dst
    lines = [Text(f"trace {trace.proto} {src} → {dst}" + (f":{port}" if port else ""), style="bold")]
    for i, hop in enumerate(trace.hops, 1):
        lines += _hop_lines(i, hop)
    reply = list(getattr(trace, "reply_hops", []) or [])
    if reply:
        lines.append(Text("reply:", style="bold"))
        for i, hop in enumerate(reply, 1):
            lines += _hop_lines(i, hop)
    for note in getattr(trace, "notes", None) or []:
        lines.append(Text(f"note: {note}", style="dim"))
    if hasattr(trace, "verdict_text"):
        lines.append(Text(trace.verdict_text(), style="bold green" if trace.verdict == "delivered" and
                          not getattr(trace, "reason", None) else "bold red"))
    elif trace.verdict == "delivered":
        lines.append(Text(f"verdict: delivered ({len(trace.hops)} hops"
                          + (f", reply {len(reply)} hops)" if reply else ")"), style="bold green"))
    else:
        where = f" at {trace.where}" if getattr(trace, "where", None) else ""
        reason = f": {trace.reason}" if getattr(trace, "reason", None) else ""
        lines.append(Text(f"verdict: {trace.verdict}{where}{reason}", style="bold red"))
    return lines


class RunPanel(Vertical):
    def __init__(self, source: Source, **kw: Any) -> None:
        super().__init__(**kw)
        self.source = source
        self.history: list[str] = []          # plain text of everything logged (tests and copy-paste read it)
        self._proc: subprocess.Popen | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="run-bar"):
            yield Label("from ", classes="field-label")
            yield Input(placeholder="source (s)", id="run-src", compact=True)
            yield Label("to ", classes="field-label")
            yield Input(placeholder="dest[:port][/path] (d)", id="run-dst", compact=True)
        with Horizontal(id="run-buttons"):
            yield Button("Ping", id="run-ping", compact=True)
            yield Button("Curl", id="run-curl", compact=True)
            yield Button("Trace", id="run-trace", compact=True)
            yield Button("Stop", id="run-stop", compact=True, variant="error")
        yield RichLog(id="run-log", wrap=True, max_lines=5000, min_width=20)

    def set_names(self, names: list[str]) -> None:
        """Names the inputs complete (→ or End accepts the suggestion)."""
        suggester = SuggestFromList(names, case_sensitive=False)
        self.query_one("#run-src", Input).suggester = suggester
        self.query_one("#run-dst", Input).suggester = suggester

    def set_source(self, name: str) -> None:
        self.query_one("#run-src", Input).value = name

    def set_destination(self, name: str) -> None:
        self.query_one("#run-dst", Input).value = name

    def log_lines(self, lines: list[Any]) -> None:
        log = self.query_one(RichLog)
        for line in lines:
            log.write(line)
            self.history.append(line.plain if isinstance(line, Text) else str(line))

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        kind = (event.button.id or "").removeprefix("run-")
        if kind == "stop":
            self.stop()
        elif kind in KINDS:
            self.start(kind)

    @on(Input.Submitted, "#run-dst")
    def _submitted(self) -> None:
        self.start("ping")

    def start(self, kind: str, default_source: Entity | None = None) -> bool:
        src_text = self.query_one("#run-src", Input).value.strip()
        dst = self.query_one("#run-dst", Input).value.strip()
        if not src_text and default_source is not None:
            src_text = default_source.name
            self.set_source(src_text)
        if not src_text or not dst:
            missing = "a source" if not src_text else "a destination"
            self.log_lines([Text(f"{kind}: needs {missing}: press s / d on a tree entry, or type a name or "
                                 f"address", style="yellow")])
            self.query_one("#run-src" if not src_text else "#run-dst", Input).focus()
            return False
        try:
            src = self.source.entity(src_text)
            if kind == "trace":
                self.log_lines([Text(f"tracing {src.name} → {dst} …", style="dim")])
                self._trace(src, dst)
            else:
                argv = self.source.command(kind, src, dst)
                self.stop()
                self.log_lines([Text(f"[{src.name}]$ {' '.join(argv)}", style="bold")])
                self._run(src, argv)
        except PodlabError as e:
            self.log_lines([Text(f"{kind}: {e}", style="red")])
            return False
        return True

    def _started(self, proc: subprocess.Popen) -> None:
        self._proc = proc

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()          # our own child, by its Popen handle

    @work(thread=True, exclusive=True, group="run")
    def _run(self, src: Entity, argv: list[str]) -> None:
        try:
            for line in self.source.run(src, argv, started=self._started):
                self.post_message(Output([line]))
        except Exception as e:  # a worker must report, never die silently
            self.post_message(Output([Text(f"{argv[0]}: {e}", style="red")]))

    @work(thread=True, exclusive=True, group="trace")
    def _trace(self, src: Entity, dst: str) -> None:
        try:
            self.post_message(TraceDone(self.source.trace(src, dst)))
        except Exception as e:
            self.post_message(TraceDone(None, str(e)))

    def on_unmount(self) -> None:
        self.stop()

    def on_output(self, message: Output) -> None:
        self.log_lines(message.lines)

    def on_trace_done(self, message: TraceDone) -> None:
        if message.error or message.trace is None:
            self.log_lines([Text(f"trace: {message.error}", style="red")])
        else:
            self.log_lines(trace_lines(message.trace))
