"""The help screen: every key, what the panels show, and where the data comes from."""
from __future__ import annotations

from collections.abc import Iterable

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

ABOUT = """\
The tree (left) is the cluster: the underlay (the VPC subnet or switch, with the VPC router in
gateway designs), each node with its pods, and outside hosts. Type / to filter by name or IP.

The tabs (right) show the selected namespace as the kernel has it, re-read every few seconds,
so a change made by hand in another terminal (ip route add ...) appears here:
  Links    interfaces: state, MTU, addresses, bridge, where a veth's other end lives (Enter: go there)
  Routes   every routing table      Neigh  the neighbour (ARP) table
  FDB      bridge and VXLAN forwarding entries (dst = the remote VTEP)
  nft      `nft list ruleset` inside the namespace
  Pod      containers, listening sockets, processes in the namespace
  Map      nodes, bridges, veth pairs and VXLAN tunnels, drawn from the kernel's records
  Run      ping / curl / trace from a source to a destination      Capture  live decoded packets

Mouse: click tree entries, tabs, buttons and rows. Ctrl+P opens the command palette: every
action, and every pod, node and host by name.
"""


def keys_text(keys: Iterable[tuple[str, str]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold cyan", no_wrap=True)
    grid.add_column()
    for key, what in keys:
        grid.add_row(Text(key), Text(what))
    return grid


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, keys: Iterable[tuple[str, str]], **kw: object) -> None:
        super().__init__(**kw)
        self.keys = list(keys)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(Text("podlab — keys", style="bold"))
            yield Static(keys_text(self.keys))
            yield Static(Text(ABOUT))
            yield Static(Text("Esc closes this help.", style="dim"))

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)
