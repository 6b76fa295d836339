"""The podlab TUI: a Textual app over a Source (a running lab, or a plan preview).

    PodlabApp(LabSource(api.pick(None))).run()     # what `podlab tui` does
    PodlabApp(None).run()                          # no lab: the welcome screen

The data source is injected, so tests drive the same app over a real lab (Pilot) or over a
plan preview with stable data (snapshot tests).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from textual.app import App, SystemCommand
from textual.screen import Screen

from tui.commands import EntityProvider
from tui.labscreen import LabScreen
from tui.messages import LabReady
from tui.source import LabSource, Source
from tui.welcome import WelcomeScreen


def open_lab(name: str) -> Source:
    from lab import api
    return LabSource(api.Lab(name))


def bring_up(path: Path, say: Callable[[str], None]) -> Source:
    from lab import api
    topo = api.load_topology(str(path))
    if topo.name in api.running():
        say(f"lab {topo.name} is already up: opening it")
        return open_lab(topo.name)
    return LabSource(api.up(topo, say))


class PodlabApp(App[None]):
    CSS_PATH = "podlab.tcss"
    TITLE = "podlab"
    COMMANDS = App.COMMANDS | {EntityProvider}

    def __init__(self, source: Source | None = None, *, topologies: Path | None = None,
                 labs: list[str] | None = None, refresh_every: float = 2.0,
                 open_lab: Callable[[str], Source] = open_lab,
                 bring_up: Callable[[Path, Callable[[str], None]], Source] = bring_up, **kw: Any) -> None:
        super().__init__(**kw)
        self.source = source
        self.topologies = topologies
        self.labs = labs or []
        self.refresh_every = refresh_every
        self._open_lab = open_lab
        self._bring_up = bring_up

    def on_mount(self) -> None:
        if self.source is not None:
            self.push_screen(LabScreen(self.source, self.refresh_every))
        else:
            if self.topologies is None:
                from lab import api
                self.topologies = api.TOPOLOGIES
            self.push_screen(WelcomeScreen(self.topologies, self.labs, self._open_lab, self._bring_up))

    def on_lab_ready(self, message: LabReady) -> None:
        self.source = message.source
        self.switch_screen(LabScreen(message.source, self.refresh_every))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if isinstance(screen, LabScreen):
            yield from screen.system_commands()
