"""No lab to show: say how to bring one up, or pick one here.

Lists the labs that are up (when there are several) and the topologies in topologies/;
Enter on a topology brings it up in a worker (progress in the log), then opens it. The lab
stays up when the TUI quits, like after `sudo podlab up`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, OptionList, RichLog, Static
from textual.widgets.option_list import Option

from lab import designs as design_registry
from lab.errors import PodlabError

from tui.messages import LabReady, UpProgress

Say = Callable[[str], None]


@dataclass(frozen=True)
class Design:
    path: Path
    name: str
    summary: str            # "vxlan · 2 nodes, 4 pods — two nodes, flannel VXLAN ..." or the problem


def designs(directory: Path) -> list[Design]:
    from lab import api
    found = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            t = api.load_topology(str(path))
            mode = design_registry.of(t).name
            found.append(Design(path, t.name, f"{mode} · {_count(len(t.nodes), 'node')}, "
                                f"{_count(len(t.pods), 'pod')}" + (f" — {t.description}" if t.description else "")))
        except PodlabError as e:
            problems = getattr(e, "problems", None)
            found.append(Design(path, path.stem, f"cannot be used: {problems[0] if problems else e}"))
    return found


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


class WelcomeScreen(Screen[None]):
    BINDINGS = [Binding("q", "app.quit", "Quit"), Binding("escape", "app.quit", "Quit", show=False)]

    def __init__(self, topologies: Path, labs: list[str], open_lab: Callable[[str], Any],
                 bring_up: Callable[[Path, Say], Any], **kw: Any) -> None:
        super().__init__(**kw)
        self.topologies = topologies
        self.labs = labs
        self.open_lab = open_lab          # lab name -> Source
        self.bring_up = bring_up          # (topology path, say) -> Source of the new lab
        self.designs: list[Design] = []
        self.busy = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="welcome"):
            if self.labs:
                yield Static(Text(f"{len(self.labs)} labs are up: pick one (or start podlab tui --lab NAME)",
                                  style="bold"))
                yield OptionList(*[Option(name, id=f"lab:{name}") for name in self.labs], id="labs")
            else:
                yield Static(Text("No lab is up.", style="bold"))
            yield Static(Text("Bring one up from a shell with  sudo podlab up [TOPOLOGY]  and start podlab tui "
                              "again, or pick a design below and press Enter: podlab brings it up here. It stays "
                              "up after you quit; sudo podlab down NAME removes it."), id="welcome-help")
            yield OptionList(id="designs")
            log = RichLog(id="up-log", wrap=True, min_width=20)
            log.display = False
            yield log
        yield Footer()

    def on_mount(self) -> None:
        self.title = "podlab"
        self.sub_title = "no lab open"
        self.designs = designs(self.topologies)
        options = self.query_one("#designs", OptionList)
        for d in self.designs:
            label = Text.assemble((f"{d.name:<16}", "bold"), (d.summary, "dim"))
            options.add_option(Option(label, id=f"design:{d.path}", disabled=d.summary.startswith("cannot")))
        usable = [i for i, d in enumerate(self.designs) if not d.summary.startswith("cannot")]
        if usable:
            options.highlighted = usable[0]
        self.query_one("#labs" if self.labs else "#designs", OptionList).focus()

    def say(self, line: str, style: str = "") -> None:
        log = self.query_one("#up-log", RichLog)
        log.display = True
        log.write(Text(line, style=style))

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        what, _, value = (event.option.id or "").partition(":")
        if self.busy:
            return
        if what == "lab":
            self._open(value)
        elif what == "design":
            self.busy = True
            self.say(f"bringing up {Path(value).name} …", "bold")
            self._up(Path(value))

    @work(thread=True, exclusive=True, group="up")
    def _open(self, name: str) -> None:
        try:
            self.post_message(LabReady(self.open_lab(name)))      # reading and planning a big lab takes a while
        except Exception as e:
            self.post_message(UpProgress(f"error: {e}"))

    @work(thread=True, exclusive=True, group="up")
    def _up(self, path: Path) -> None:
        try:
            source = self.bring_up(path, lambda line: self.post_message(UpProgress(line)))
        except Exception as e:
            self.post_message(UpProgress(f"error: {e}"))
            self.busy = False
            return
        self.post_message(LabReady(source))

    def on_up_progress(self, message: UpProgress) -> None:
        self.say(message.line, "red" if message.line.startswith("error") else "")
