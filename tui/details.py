"""The selected namespace, as the kernel has it: interfaces, routes, neighbours, FDB, nftables, workload.

Each view takes the records a worker read (lab.inspect.Snapshot and friends) and fills itself;
tables keep their cursor across refreshes, so a view that refreshes every two seconds stays usable.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Static

from lab.inspect import Snapshot

from tui.messages import JumpTo
from tui.source import Peer, Workload

MULTICAST = ("33:33:", "01:00:5e:", "01:80:c2:")
TABLE_ORDER = {"main": 0, "local": 2, "default": 3}


def fill(table: DataTable, rows: Sequence[Sequence[Any]], keys: Sequence[str] | None = None) -> None:
    """Replace a table's rows, keeping the cursor on the same row key (or index) and the scroll position.

    When the rows are different ones (another namespace), the columns are re-made too, so their
    widths fit the new content instead of the widest ever shown.
    """
    old_keys = [r.value for r in table.rows]
    new_keys = list(keys) if keys else [str(i) for i in range(len(rows))]
    old_key = None
    if table.row_count and 0 <= table.cursor_row < table.row_count:
        old_key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
    old_row, scroll = table.cursor_row, table.scroll_y
    same = old_keys == new_keys
    if same:
        table.clear()
    else:
        labels = [c.label for c in table.ordered_columns]
        table.clear(columns=True)
        table.add_columns(*labels)
    for key, row in zip(new_keys, rows):
        # plain strings would be read as markup: a '[' in an alias or a command line must stay text
        table.add_row(*(Text(c) if isinstance(c, str) else c for c in row), key=key)
    if not rows:
        return
    target = new_keys.index(old_key) if old_key in new_keys else min(old_row, len(rows) - 1)
    table.move_cursor(row=target, animate=False, scroll=False)
    if same:
        table.scroll_y = scroll


def _table(columns: Iterable[str], **kw: Any) -> DataTable:
    t: DataTable = DataTable(cursor_type="row", zebra_stripes=True, **kw)
    t.add_columns(*columns)
    return t


def link_rows(snap: Snapshot, peers: dict[str, Peer]) -> list[list[Any]]:
    rows = []
    for l in snap.links:
        up = l.state.startswith("UP")
        state = Text(l.state.replace(",", " "), style="green" if up and "LOWER_UP" in l.state else "red")
        addrs = " ".join(a.address for a in snap.addresses if a.dev == l.name) or "-"
        if l.name in peers:
            p = peers[l.name]
            where = Text(f"→ {p.entity}:{p.iface}", style="underline cyan")
        elif l.peer_index:
            where = Text(f"if{l.peer_index}" + (f" netnsid {l.peer_netnsid}" if l.peer_netnsid is not None else ""),
                         style="dim")
        elif l.vxlan:
            v = l.vxlan
            where = Text(f"vni {v['id']} local {v['local']} dev {v['dev']} :{v['port']}"
                         + ("" if v["learning"] else " nolearning"), style="magenta")
        else:
            where = Text("-", style="dim")
        rows.append([l.name, l.kind or "-", state, str(l.mtu), addrs, l.master or "-", where, l.mac or "-"])
    return rows


def route_rows(snap: Snapshot) -> list[list[Any]]:
    routes = sorted(snap.routes, key=lambda r: (TABLE_ORDER.get(r.table, 1), r.table))
    rows = []
    for r in routes:
        flags = " ".join(x for x in [f"scope {r.scope}" if r.scope != "global" else "", "onlink" if r.onlink else "",
                                     f"src {r.src}" if r.src else "", _proto(r.proto)] if x)
        dst = Text(r.dst, style="bold" if r.table == "main" else "")
        rows.append([r.table, dst, r.gateway or "-", r.dev or "-", r.type if r.type != "unicast" else "-", flags])
    return rows


def _proto(proto: int) -> str:
    return {2: "kernel", 3: "boot", 4: "static"}.get(proto, f"proto {proto}" if proto else "")


def neighbour_rows(snap: Snapshot) -> list[list[Any]]:
    return [[n.address, n.dev, n.mac or "-", Text(n.state, style="green" if n.state in ("REACHABLE", "PERMANENT")
                                                   else "yellow")] for n in snap.neighbours]


def fdb_rows(snap: Snapshot, show_multicast: bool = False) -> tuple[list[list[Any]], int]:
    rows, hidden = [], 0
    for f in snap.fdb:
        if not f.dst and f.mac and f.mac.startswith(MULTICAST) and not show_multicast:
            hidden += 1
            continue
        flags = " ".join(x for x in ["self" if f.self else "", "permanent" if f.permanent else "learnt"] if x)
        rows.append([f.mac or "-", f.dev, Text(f.dst, style="magenta") if f.dst else "-", f.master or "-", flags])
    return rows, hidden


class LinksView(Vertical):
    """Interfaces; Enter (or a click) on a veth jumps to the namespace of its other end."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.peers: dict[str, Peer] = {}

    def compose(self) -> ComposeResult:
        yield _table(["NAME", "KIND", "STATE", "MTU", "ADDRESSES", "MASTER", "PEER / DETAIL", "MAC"], id="links-table")
        yield Static("Enter on a veth: go to its other end", classes="hint")

    def show(self, snap: Snapshot, peers: dict[str, Peer]) -> None:
        self.peers = peers
        fill(self.query_one(DataTable), link_rows(snap, peers), [l.name for l in snap.links])

    def select_iface(self, name: str) -> None:
        table = self.query_one(DataTable)
        try:
            table.move_cursor(row=table.get_row_index(name), animate=False)
        except Exception:  # the interface is gone: stay where we are
            pass

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        name = event.row_key.value
        if name in self.peers:
            p = self.peers[name]
            self.post_message(JumpTo(p.entity, p.iface))

    def action_jump(self) -> None:
        table = self.query_one(DataTable)
        if table.row_count:
            name = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
            if name in self.peers:
                self.post_message(JumpTo(self.peers[name].entity, self.peers[name].iface))


class RoutesView(Vertical):
    def compose(self) -> ComposeResult:
        yield _table(["TABLE", "DESTINATION", "VIA", "DEV", "TYPE", "FLAGS"], id="routes-table")

    def show(self, snap: Snapshot) -> None:
        rows = route_rows(snap)
        fill(self.query_one(DataTable), rows, [f"{i}:{r[0]}:{r[1]}" for i, r in enumerate(rows)])


class NeighboursView(Vertical):
    def compose(self) -> ComposeResult:
        yield _table(["ADDRESS", "DEV", "LLADDR", "STATE"], id="neigh-table")
        yield Static("", classes="hint", id="neigh-hint")

    def show(self, snap: Snapshot) -> None:
        fill(self.query_one(DataTable), neighbour_rows(snap))
        self.query_one("#neigh-hint", Static).update("" if snap.neighbours else "no neighbour entries")


class FdbView(Vertical):
    def compose(self) -> ComposeResult:
        yield _table(["MAC", "DEV", "DST (VTEP)", "MASTER", "FLAGS"], id="fdb-table")
        yield Static("", classes="hint", id="fdb-hint")

    def show(self, snap: Snapshot) -> None:
        rows, hidden = fdb_rows(snap)
        fill(self.query_one(DataTable), rows)
        self.query_one("#fdb-hint", Static).update(f"{hidden} multicast entries not shown" if hidden else "")


class NftView(VerticalScroll):
    def compose(self) -> ComposeResult:
        yield Static("", id="nft-text")

    def show(self, text: str) -> None:
        body = text.strip() or "no nftables ruleset in this namespace (`nft list ruleset` printed nothing)"
        self.query_one("#nft-text", Static).update(Text(body))


class WorkloadView(VerticalScroll):
    """A pod's containers (declared, with the agent's view of them), the sockets listening in the
    namespace and the processes inside it (both read from the kernel)."""

    def compose(self) -> ComposeResult:
        yield _table(["CONTAINER", "IMAGE", "RUNS AS", "STATE", "RESTARTS", "PID", "PORTS"], id="containers-table")
        yield Static("", id="workload-text")

    def show(self, w: Workload | None, error: str | None = None) -> None:
        table = self.query_one(DataTable)
        rows = [[c.name, c.image, c.workload, Text(c.state, style="green" if c.state == "Running" else "yellow"),
                 str(c.restarts), str(c.pid or "-"), c.ports] for c in (w.containers if w else [])]
        fill(table, rows)
        table.display = bool(rows)
        text = Text()
        if error:
            text.append(error + "\n", style="red")
        if w is not None:
            if w.note:
                text.append(w.note + "\n", style="dim")
            text.append("listening sockets: ", style="bold")
            text.append((", ".join(w.listening) or "none") + "\n")
            text.append("processes in this network namespace: ", style="bold")
            text.append(("\n  " + "\n  ".join(w.processes)) if w.processes else "none")
        self.query_one("#workload-text", Static).update(text)
