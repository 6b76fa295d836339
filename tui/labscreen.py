"""The main screen: the cluster tree on the left, the selected namespace's tabs on the right.

Nothing here blocks: every read (netlink, /proc, nft) and every command runs in a thread
worker that posts a message back. A timer re-reads the selected namespace every few seconds,
so what another terminal changes by hand appears without a restart.
"""
from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SuspendNotSupported, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static, TabbedContent, TabPane
from textual.worker import get_current_worker

from lab.errors import PodlabError
from lab.inspect import Snapshot

from tui import picture
from tui.bgpview import BgpView
from tui.capturepanel import CapturePanel
from tui.details import FdbView, LinksView, NeighboursView, NftView, RoutesView, WorkloadView
from tui.help import HelpScreen
from tui.messages import (BgpRead, ClusterRead, EntityChosen, Inspected, JumpTo, NftRead, PictureDrawn,
                           WorkloadRead)
from tui.runpanel import RunPanel
from tui.source import Cluster, Entity, Source
from tui.tree import ClusterTree

TABS = ("links", "routes", "neigh", "fdb", "nft", "pod", "map", "run", "capture")
SLOW_EVERY = 3             # ticks between two reads of the pods' states, or of the whole map
KEYS = [
    ("?", "this help"),
    ("/", "filter the tree by name or IP (Enter: back to the tree)"),
    ("arrows", "move in the tree; Enter or → opens a node's pods"),
    ("s / d", "use the selected entry as the source / destination (Run tab)"),
    ("p u t", "ping, curl (dest[:port][/path]), trace from the source to the destination"),
    ("c", "start / stop a live capture (on the interface selected in Links, or all)"),
    ("x", "open a shell in the selected namespace; 'exit' comes back here"),
    ("g", "go to the other end of the veth selected in Links (or Enter on it)"),
    ("r", "re-read now (the selected namespace is re-read every few seconds anyway)"),
    ("1-9", "tabs: " + " ".join(f"{i + 1}={t}" for i, t in enumerate(TABS))),
    ("b", "the BGP tab of a node running BIRD (calico): sessions, routes imported / exported"),
    ("m", "the map"),
    ("Esc", "back to the tree"),
    ("Ctrl+P", "command palette: every action, every pod, node and host"),
    ("q", "quit (the lab stays up)"),
]


class LabScreen(Screen[None]):
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]

    BINDINGS = [
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("s", "set_source", "Src"),
        Binding("d", "set_destination", "Dst"),
        Binding("p", "ping", "Ping"),
        Binding("u", "curl", "Curl"),
        Binding("t", "trace", "Trace"),
        Binding("c", "capture", "Capture"),
        Binding("x", "shell", "Shell"),
        Binding("r", "refresh", "Refresh", show=False),
        Binding("g", "jump_peer", "Go to veth peer", show=False),
        Binding("m", "tab('map')", "Map", show=False),
        Binding("b", "tab('bgp')", "BGP", show=False),
        Binding("escape", "focus_tree", "Back to the tree", show=False),
        Binding("q", "app.quit", "Quit"),
    ] + [Binding(str(i + 1), f"tab('{tab}')", f"Tab: {tab}", show=False) for i, tab in enumerate(TABS)]

    def __init__(self, source: Source, refresh_every: float = 2.0, **kw: Any) -> None:
        super().__init__(**kw)
        self.source = source
        self.refresh_every = refresh_every
        self.cluster: Cluster | None = None
        self.current: Entity | None = None
        self.snapshot: Snapshot | None = None
        self.reads = 0                  # snapshots shown so far (tests wait on it)
        self._pending_iface: str | None = None
        self._ticks = 0

    # --- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="body"):
            yield ClusterTree(id="side")
            with Vertical(id="main"):
                yield Static("", id="where")
                with TabbedContent(id="tabs", initial="links"):
                    with TabPane("Links", id="links"):
                        yield LinksView(id="links-view")
                    with TabPane("Routes", id="routes"):
                        yield RoutesView(id="routes-view")
                    with TabPane("Neigh", id="neigh"):
                        yield NeighboursView(id="neigh-view")
                    with TabPane("FDB", id="fdb"):
                        yield FdbView(id="fdb-view")
                    with TabPane("nft", id="nft"):
                        yield NftView(id="nft-view")
                    with TabPane("Pod", id="pod"):
                        yield WorkloadView(id="workload-view")
                    with TabPane("BGP", id="bgp"):
                        yield BgpView(id="bgp-view")
                    with TabPane("Map", id="map"):
                        with VerticalScroll(id="map-view"):
                            yield Static(Text("drawing …", style="dim"), id="picture")
                    with TabPane("Run", id="run"):
                        yield RunPanel(self.source, id="run-panel")
                    with TabPane("Capture", id="capture"):
                        yield CapturePanel(self.source, id="capture-panel")
        yield Footer()

    def on_mount(self) -> None:
        self.title = f"podlab · {self.source.name}"
        self.sub_title = "live: read from the kernel" if self.source.live else "plan preview: nothing is built"
        self.query_one("#tree").focus()
        self.tabs.hide_tab("bgp")          # shown while a node running BIRD is selected
        self.load_cluster()
        self.set_interval(self.refresh_every, self.tick)

    @property
    def tabs(self) -> TabbedContent:
        return self.query_one("#tabs", TabbedContent)

    @property
    def tree(self) -> ClusterTree:
        return self.query_one(ClusterTree)

    @property
    def run_panel(self) -> RunPanel:
        return self.query_one(RunPanel)

    @property
    def capture_panel(self) -> CapturePanel:
        return self.query_one(CapturePanel)

    # --- reading, in workers ----------------------------------------------------------------

    @work(thread=True, exclusive=True, group="cluster")
    def load_cluster(self) -> None:
        try:
            self.post_message(ClusterRead(self.source.cluster()))
        except Exception as e:
            self.app.call_from_thread(self.notify, f"cannot read the lab: {e}", severity="error", markup=False)

    @work(thread=True, exclusive=True, group="inspect")
    def read_entity(self, entity: Entity) -> None:
        try:
            snap = self.source.snapshot(entity)
            peers = {l.name: p for l in snap.links if (p := self.source.peer(entity, l)) is not None}
            message = Inspected(entity, snap, peers)
        except Exception as e:
            message = Inspected(entity, None, error=str(e))
        if not get_current_worker().is_cancelled:
            self.post_message(message)

    @work(thread=True, exclusive=True, group="nft")
    def read_nft(self, entity: Entity) -> None:
        try:
            text = self.source.nft(entity)
        except Exception as e:
            text = f"cannot read the ruleset: {e}"
        self.post_message(NftRead(entity, text))

    @work(thread=True, exclusive=True, group="workload")
    def read_workload(self, entity: Entity) -> None:
        try:
            self.post_message(WorkloadRead(entity, self.source.workload(entity)))
        except Exception as e:
            self.post_message(WorkloadRead(entity, None, str(e)))

    @work(thread=True, exclusive=True, group="bgp")
    def read_bgp(self, entity: Entity) -> None:
        try:
            report = self.source.bgp(entity)
        except Exception as e:
            report = {"node": entity.name, "error": f"cannot read BGP: {e}", "peers": []}
        self.post_message(BgpRead(entity, report))

    @work(thread=True, exclusive=True, group="map")
    def draw_map(self, cluster: Cluster, width: int, focus: str | None) -> None:
        worker = get_current_worker()
        snaps: dict[str, Snapshot | str] = {}
        for e in (cluster.underlay, *picture.shown_nodes(cluster, focus), *cluster.outside):
            if worker.is_cancelled:
                return
            try:
                snaps[e.name] = self.source.snapshot(e)
            except Exception as ex:
                snaps[e.name] = str(ex)
        model = picture.build(cluster, snaps, self.source.peer, focus)
        if not worker.is_cancelled:
            self.post_message(PictureDrawn(picture.draw(model, width)))

    def refresh_now(self) -> None:
        """Re-read the selected namespace, and what the visible tab shows."""
        if self.current is None:
            return
        self.read_entity(self.current)
        active = self.tabs.active
        if active == "nft":
            self.read_nft(self.current)
        elif active == "pod":
            self.read_workload(self.current)
        elif active == "bgp" and self._runs_bird(self.current):
            self.read_bgp(self.current)
        elif active == "map" and self.cluster is not None:
            if any(w.node is self and w.group == "map" and w.is_running for w in self.workers):
                return          # one drawing at a time: a big lab's map takes a while to read
            focus = self.current.node if self.current.kind in ("node", "pod") else None
            # the tabs' width, not the map's: a tab just shown has no size of its own yet
            self.draw_map(self.cluster, max(40, self.tabs.size.width - 3), focus)

    def tick(self) -> None:
        self._ticks += 1
        slow = self._ticks % SLOW_EVERY == 0
        if self.source.live and (slow or self.source.changed()):
            self.load_cluster()      # a lab that changed (pods applied, deleted) is shown at the next tick
        if self.tabs.active == "map" and not slow:
            # the map reads every node: redrawn on every SLOW_EVERY-th tick (and when shown, or on `r`)
            if self.current is not None:
                self.read_entity(self.current)
            return
        self.refresh_now()

    # --- results, on the app's thread ------------------------------------------------------

    def on_cluster_read(self, message: ClusterRead) -> None:
        first = self.cluster is None
        old, self.cluster = self.cluster, message.cluster
        self.tree.show(message.cluster)
        if first or _names(old) != _names(message.cluster):
            names = [e.name for e in message.cluster.entities()]
            self.run_panel.set_names(names + (["router"] if message.cluster.router else []))
        if self.current is not None and message.cluster.find(self.current.name) is None:
            self._show_where(self.current, None)
        if first:
            c = message.cluster
            start = next((p for ps in c.pods.values() for p in ps), None) or (c.nodes[0] if c.nodes else c.underlay)
            self.tree.reveal(start.name)

    def on_entity_chosen(self, message: EntityChosen) -> None:
        e = message.entity
        if self.current is None or e.name != self.current.name:
            self.current = e
            self._show_where(e, None)
        self.current = e
        self._show_bgp_tab(e)
        self.refresh_now()

    def _runs_bird(self, e: Entity | None) -> bool:
        return e is not None and e.kind == "node" and self.cluster is not None and e.name in self.cluster.bird

    def _show_bgp_tab(self, e: Entity) -> None:
        if self._runs_bird(e):
            self.tabs.show_tab("bgp")
            return
        if self.tabs.active == "bgp":
            self.tabs.active = "links"
        self.tabs.hide_tab("bgp")

    def _show_where(self, e: Entity, error: str | None) -> None:
        if self.cluster is not None and self.cluster.find(e.name) is None:
            error = "gone: deleted from the lab"     # rather than its namespace's absence, read a moment later
        where = Text.assemble((f"{e.kind} ", "dim"), (e.name, "bold"))
        if e.ip:
            where.append(f" {e.ip}")
        if e.kind == "pod" and e.node:
            where.append(f" on {e.node}", style="dim")
        where.append(f" · netns {e.netns}", style="dim")
        if error:
            where.append(f" · {error}", style="bold red")
        elif self.source.live:
            where.append(f" · read {time.strftime('%H:%M:%S')}", style="dim")
        self.query_one("#where", Static).update(where)

    def on_inspected(self, message: Inspected) -> None:
        if self.current is None or message.entity.name != self.current.name:
            return
        self._show_where(message.entity, message.error)
        snap = message.snapshot or Snapshot(message.entity.netns)
        self.snapshot = message.snapshot
        self.query_one(LinksView).show(snap, message.peers)
        self.query_one(RoutesView).show(snap)
        self.query_one(NeighboursView).show(snap)
        self.query_one(FdbView).show(snap)
        self.capture_panel.show(message.entity, snap)
        self.reads += 1
        if self._pending_iface is not None:
            iface, self._pending_iface = self._pending_iface, None
            self.tabs.active = "links"
            self.query_one(LinksView).select_iface(iface)
            self.query_one("#links-table", DataTable).focus()

    def on_nft_read(self, message: NftRead) -> None:
        if self.current is not None and message.entity.name == self.current.name:
            self.query_one(NftView).show(message.text)

    def on_workload_read(self, message: WorkloadRead) -> None:
        if self.current is not None and message.entity.name == self.current.name:
            self.query_one(WorkloadView).show(message.workload, message.error)

    def on_bgp_read(self, message: BgpRead) -> None:
        if self.current is not None and message.entity.name == self.current.name:
            self.query_one(BgpView).show(message.report)

    def on_picture_drawn(self, message: PictureDrawn) -> None:
        self.query_one("#picture", Static).update(message.picture)

    def on_jump_to(self, message: JumpTo) -> None:
        self.goto(message.entity, message.iface)

    @on(TabbedContent.TabActivated, "#tabs")
    def _tab_changed(self) -> None:
        self.refresh_now()

    # --- actions ---------------------------------------------------------------------------

    def goto(self, name: str, iface: str | None = None) -> None:
        """Select an entity (and, once it is read, one of its interfaces in Links)."""
        self._pending_iface = iface
        if not self.tree.reveal(name):
            self._pending_iface = None
            self.notify(f"{name} is not in this lab", severity="warning", markup=False)
        elif iface is None:
            self.query_one("#tree").focus()

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(KEYS))

    def action_filter(self) -> None:
        self.tree.action_filter()

    def action_focus_tree(self) -> None:
        self.query_one("#tree").focus()

    def action_tab(self, tab: str) -> None:
        if tab == "bgp" and not self._runs_bird(self.current):
            self.notify("the BGP tab is a node's that runs BIRD (calico designs): select one in the tree",
                        severity="warning", markup=False)
            return
        self.tabs.active = tab

    def action_refresh(self) -> None:
        self.load_cluster()
        self.refresh_now()

    def _need_current(self) -> Entity | None:
        if self.current is None:
            self.notify("select a pod, node or host in the tree first", severity="warning")
        return self.current

    def action_set_source(self) -> None:
        if (e := self._need_current()) is not None:
            self.run_panel.set_source(e.name)
            self.notify(f"source: {e.name}", markup=False)

    def action_set_destination(self) -> None:
        if (e := self._need_current()) is not None:
            self.run_panel.set_destination(e.name)
            self.notify(f"destination: {e.name}", markup=False)

    def _run(self, kind: str) -> None:
        self.tabs.active = "run"
        self.run_panel.start(kind, default_source=self.current)

    def action_ping(self) -> None:
        self._run("ping")

    def action_curl(self) -> None:
        self._run("curl")

    def action_trace(self) -> None:
        self._run("trace")

    def action_capture(self) -> None:
        panel = self.capture_panel
        was_on_links = self.tabs.active == "links"
        self.tabs.active = "capture"
        if panel.capturing is not None:
            panel.stop()
            return
        if was_on_links and self.snapshot is not None:
            table = self.query_one("#links-table", DataTable)
            if table.row_count:
                panel.choose(str(table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value))
        panel.start()

    def action_jump_peer(self) -> None:
        self.query_one(LinksView).action_jump()

    def action_shell(self) -> None:
        e = self._need_current()
        if e is None:
            return
        try:
            argv = self.source.shell_argv(e)
        except PodlabError as ex:
            self.notify(str(ex), severity="warning", markup=False)
            return
        env = dict(os.environ, PS1=f"[{e.kind} {e.name}] \\w# ")
        try:
            with self.app.suspend():
                print(f"shell in {e.kind} {e.name} (network namespace {e.netns}); 'exit' returns to podlab",
                      flush=True)
                code = subprocess.call(argv, env=env)
        except SuspendNotSupported:
            self.notify("this terminal cannot suspend the TUI: use 'sudo podlab shell "
                        f"{e.name}' in another terminal", severity="warning", markup=False)
            return
        except FileNotFoundError as ex:
            self.notify(f"cannot start a shell: {ex}", severity="error", markup=False)
            return
        self.notify(f"back from the shell in {e.name} (exit status {code})", markup=False)
        self.refresh_now()

    def system_commands(self) -> Iterator[SystemCommand]:
        """Every action, for the command palette."""
        yield SystemCommand("Ping", "ping from the source to the destination (Run tab)", self.action_ping)
        yield SystemCommand("Curl", "HTTP GET from the source to DST, DST:PORT or DST:PORT/PATH", self.action_curl)
        yield SystemCommand("Trace", "follow a packet hop by hop: the deciding route/FDB entry, the verdict",
                            self.action_trace)
        yield SystemCommand("Set source", "use the selected pod/node/host as the source", self.action_set_source)
        yield SystemCommand("Set destination", "use the selected pod/node/host as the destination",
                            self.action_set_destination)
        yield SystemCommand("Capture", "start or stop a live capture on the selected interface",
                            self.action_capture)
        yield SystemCommand("Shell", "open a shell in the selected namespace (the TUI comes back after)",
                            self.action_shell)
        yield SystemCommand("Go to veth peer", "jump to the other end of the selected veth", self.action_jump_peer)
        yield SystemCommand("Refresh", "re-read the selected namespace from the kernel now", self.action_refresh)
        yield SystemCommand("Filter", "filter the tree by name or IP", self.action_filter)
        yield SystemCommand("Help", "keys and what each panel shows", self.action_help)
        for i, tab in enumerate(TABS):
            yield SystemCommand(f"Show {tab}", f"switch to the {tab} tab (key {i + 1})",
                                lambda tab=tab: self.action_tab(tab))
        if self._runs_bird(self.current):
            yield SystemCommand("Show BGP", "this node's BGP sessions and routes, from its BIRD (key b)",
                                lambda: self.action_tab("bgp"))


def _names(cluster: Cluster | None) -> set[str]:
    return {e.name for e in cluster.entities()} if cluster is not None else set()
