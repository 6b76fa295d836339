"""The TUI's pure parts, without root: the plan preview's entities and peers, the picture, trace and packet lines,
the tree's laziness on a 1000-pod design, and `podlab tui` on the command line."""
from __future__ import annotations

import argparse
import asyncio
import io
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console
from textual.widgets import DataTable

from lab import api, cli, planner
from tui import picture
from tui.capturepanel import packet_text
from tui.details import fdb_rows, link_rows, route_rows
from tui.preview import PlanSource
from tui.runpanel import trace_lines
from tui.source import command_for, listening_sockets, split_destination


def preview(name: str) -> PlanSource:
    return PlanSource(planner.build(api.load_topology(name)))


def text(renderable, width: int = 100) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_veth_peers_come_from_the_plan_both_ways():
    src = preview("default")
    c = src.cluster()
    pod = c.pods["node1"][0]
    eth0 = src.snapshot(pod).link("eth0")
    peer = src.peer(pod, eth0)
    assert peer is not None and peer.entity == "node1" and peer.iface.startswith("veth")
    host_end = src.snapshot(c.nodes[0]).link(peer.iface)
    back = src.peer(c.nodes[0], host_end)
    assert (back.entity, back.iface) == (pod.name, "eth0")
    uplink = src.peer(c.nodes[0], src.snapshot(c.nodes[0]).link("eth0"))
    assert (uplink.entity, uplink.iface) == ("underlay", "node1")
    assert src.peer(pod, src.snapshot(pod).link("lo")) is None


def test_link_rows_show_where_the_peer_lives_and_route_rows_every_table():
    src = preview("default")
    pod = src.cluster().pods["node1"][0]
    snap = src.snapshot(pod)
    peers = {l.name: p for l in snap.links if (p := src.peer(pod, l))}
    rows = {r[0]: r for r in link_rows(snap, peers)}
    assert rows["eth0"][6].plain == f"→ node1:{peers['eth0'].iface}"
    assert rows["eth0"][4] == f"{pod.ip}/24"
    tables = {r[0] for r in route_rows(snap)}
    assert tables == {"main", "local"}


def test_fdb_rows_hide_multicast_but_count_it():
    from lab.inspect import FdbEntry, Snapshot
    snap = Snapshot("x", fdb=[FdbEntry("cni0", "33:33:00:00:00:01", None, None, True, True),
                              FdbEntry("flannel.1", "0a:00:00:00:00:01", "192.168.56.12", None, True, True)])
    rows, hidden = fdb_rows(snap)
    assert hidden == 1 and len(rows) == 1 and rows[0][2].plain == "192.168.56.12"


def test_picture_draws_nodes_bridges_veths_and_tunnels():
    src = preview("default")
    c = src.cluster()
    snaps = {e.name: src.snapshot(e) for e in [c.underlay, *c.nodes]}
    drawn = text(picture.draw(picture.build(c, snaps, src.peer), 100))
    assert "underlay br0 192.168.56.0/24" in drawn
    assert "node1" in drawn and "cni0 bridge 10.244.0.1/24" in drawn
    assert "flannel.1 vni 1 ⇄ node2" in drawn and "flannel.1 vni 1 ⇄ node1" in drawn
    for p in c.pods["node1"]:
        assert f"{p.name}:eth0 {p.ip}" in drawn


def test_picture_follows_the_records_a_missing_fdb_entry_is_no_tunnel():
    src = preview("default")
    c = src.cluster()
    snaps = {e.name: src.snapshot(e) for e in [c.underlay, *c.nodes]}
    node1 = snaps["node1"]
    node1.fdb = [f for f in node1.fdb if f.dev != "flannel.1"]
    drawn = text(picture.draw(picture.build(c, snaps, src.peer), 100))
    assert "no FDB entries: no tunnel" in drawn


def test_picture_shows_l3_routes_to_other_machines():
    src = preview("l3-vpc-router")
    c = src.cluster()
    snaps = {e.name: src.snapshot(e) for e in [c.underlay, *c.nodes, *c.outside]}
    drawn = text(picture.draw(picture.build(c, snaps, src.peer), 100))
    assert "router → 172.16.0.0/25 via node1" in drawn and "router → 172.16.0.128/25 via node2" in drawn


def test_trace_lines_show_hops_decisions_and_the_verdict():
    hop = SimpleNamespace(netns="lab-node1", target="node1", iface="cni0", direction="in", ttl=64,
                          summary="10.244.0.2 > 10.244.1.2 ICMP echo request",
                          decision="route 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink")
    t = SimpleNamespace(src="busybox", dst="10.244.1.2", proto="icmp", hops=[hop], reply_hops=[],
                        verdict="delivered", where=None, reason=None)
    lines = [l.plain for l in trace_lines(t)]
    assert lines[0] == "trace icmp busybox → 10.244.1.2"
    assert " 1 node1 cni0 in ttl 64" in lines
    assert "   ↳ route 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink" in lines
    assert lines[-1] == "verdict: delivered (1 hops)"
    dropped = SimpleNamespace(**{**vars(t), "verdict": "dropped", "where": "node1", "reason": "no route"})
    assert trace_lines(dropped)[-1].plain == "verdict: dropped at node1: no route"


def test_packet_text_has_time_iface_direction_and_the_decoded_line():
    p = SimpleNamespace(time=0.0, netns="n", iface="eth0", direction="out", text="10.0.0.1 > 10.0.0.2 ICMP", raw=b"")
    line = packet_text(p).plain
    assert line.endswith("eth0 out 10.0.0.1 > 10.0.0.2 ICMP")


def test_destinations_name_port_and_path():
    assert split_destination("web:8080/hostname") == ("web", "8080", "hostname")
    resolve = {"web": "10.244.0.3"}.get
    assert command_for("curl", "web:8080/hostname", resolve)[-1] == "http://10.244.0.3:8080/hostname"
    assert command_for("ping", "web", resolve)[-1] == "10.244.0.3"


def test_listening_sockets_parse_the_kernel_tables():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        assert f"tcp 127.0.0.1:{s.getsockname()[1]}" in listening_sockets()
    finally:
        s.close()


def big_design(tmp_path) -> PlanSource:
    path = tmp_path / "big.yaml"
    path.write_text("name: big\nmode: vxlan\nnodes: 50\ndeployments:\n  - {name: web, replicas: 1000, image: nginx}\n")
    return PlanSource(planner.build(api.load_topology(str(path))))


def test_a_1000_pod_tree_loads_lazily_and_filters(tmp_path):
    from tui.app import PodlabApp
    from tui.tree import ClusterTree
    source = big_design(tmp_path)
    pods = [p for ps in source.cluster().pods.values() for p in ps]
    assert len(pods) == 1001        # and the cluster DNS pod

    async def run() -> None:
        app = PodlabApp(source)
        async with app.run_test(size=(80, 24)) as pilot:
            while app.screen.__class__.__name__ != "LabScreen" or app.screen.reads == 0:
                await pilot.pause(0.05)
            tree = app.screen.query_one(ClusterTree).tree
            lines = sum(1 for _ in walk(tree.root))
            assert lines < 100, f"{lines} tree lines: pods must load when their node opens, not all at once"
            await pilot.press("slash")
            await pilot.pause(0.1)
            await pilot.press(*pods[777].name[-5:], "enter")
            await pilot.pause(0.2)
            shown = [n.data.name for n in walk(tree.root) if n.data is not None and n.data.kind == "pod"]
            assert pods[777].name in shown and len(shown) < 20
            assert app.focused is tree

    asyncio.run(run())


def walk(node):
    for child in node.children:
        yield child
        yield from walk(child)


def test_podlab_tui_needs_root_unless_previewing(monkeypatch):
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["tui"], out, err) == 1
    assert "needs root" in err.getvalue() and "sudo podlab tui" in err.getvalue()
    from tui.cli import build_app
    app = build_app(argparse.Namespace(preview="default", lab=None, refresh=2.0))
    assert app.source is not None and app.source.live is False and app.source.name == "default"


def test_podlab_help_lists_tui():
    parser = cli.build_parser()
    assert "tui" in parser.format_help()


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_every_tab_renders_at_small_and_large_sizes(size):
    from tui.app import PodlabApp

    async def run() -> None:
        app = PodlabApp(preview("multi-container"))
        async with app.run_test(size=size) as pilot:
            while app.screen.__class__.__name__ != "LabScreen" or app.screen.reads == 0:
                await pilot.pause(0.05)
            for key in "123456789":
                await pilot.press(key)
                await pilot.pause(0.05)
                assert app.screen.tabs.active == ("links", "routes", "neigh", "fdb", "nft", "pod", "map",
                                                  "run", "capture")[int(key) - 1]
            table = app.screen.query_one("#links-table", DataTable)
            assert table.row_count == 2

    asyncio.run(run())


def test_with_several_labs_up_the_welcome_screen_asks_which(tmp_path):
    from tui.app import PodlabApp
    opened: list[str] = []

    def open_lab(name: str) -> PlanSource:
        opened.append(name)
        return preview("default")

    async def run() -> None:
        app = PodlabApp(None, topologies=tmp_path, labs=["one", "two"], open_lab=open_lab)
        app.animation_level = "none"
        async with app.run_test(size=(80, 24)) as pilot:
            while type(app.screen).__name__ != "WelcomeScreen":
                await pilot.pause(0.05)
            await pilot.press("down", "enter")
            while type(app.screen).__name__ != "LabScreen" or app.screen.reads == 0:
                await pilot.pause(0.05)
            assert opened == ["two"]
            assert app.screen.current.name == "busybox"

    asyncio.run(run())


def test_the_command_palette_has_the_actions_and_every_entity():
    from tui.app import PodlabApp

    async def run() -> None:
        source = preview("default")
        target = source.cluster().pods["node2"][0]
        app = PodlabApp(source)
        app.animation_level = "none"
        async with app.run_test(size=(80, 24)) as pilot:
            while type(app.screen).__name__ != "LabScreen" or app.screen.reads == 0:
                await pilot.pause(0.05)
            lab_screen = app.screen
            titles = [c.title for c in app.get_system_commands(lab_screen)]
            for action in ("Ping", "Curl", "Trace", "Capture", "Shell", "Set source", "Set destination",
                           "Go to veth peer", "Refresh", "Filter", "Help", "Show map"):
                assert action in titles
            await pilot.press("ctrl+p")
            await pilot.pause(0.2)
            await pilot.press(*f"go to pod {target.name}")
            await pilot.pause(0.5)
            await pilot.press("enter")
            for _ in range(100):
                if lab_screen.current.name == target.name:
                    break
                await pilot.pause(0.05)
            assert lab_screen.current.name == target.name

    asyncio.run(run())


def test_the_mouse_selects_in_the_tree_and_switches_tabs():
    from textual.widgets import Tabs
    from tui.app import PodlabApp

    async def run() -> None:
        app = PodlabApp(preview("default"))
        app.animation_level = "none"
        async with app.run_test(size=(80, 24)) as pilot:
            while type(app.screen).__name__ != "LabScreen" or app.screen.reads == 0:
                await pilot.pause(0.05)
            screen = app.screen
            tree = screen.tree.tree
            node2 = next(n for n in walk(tree.root) if n.data is not None and n.data.name == "node2")
            await pilot.click(tree, offset=(6, node2.line - int(tree.scroll_y)))
            for _ in range(100):
                if screen.current.name == "node2":
                    break
                await pilot.pause(0.05)
            assert screen.current.name == "node2"
            await pilot.click("#tabs Tab#--content-tab-routes")
            await pilot.pause(0.1)
            assert screen.tabs.active == "routes"
            assert screen.query_one(Tabs).active == "--content-tab-routes"

    asyncio.run(run())


def test_the_map_of_a_big_lab_draws_a_dozen_nodes_and_the_selected_one(tmp_path):
    source = big_design(tmp_path)
    c = source.cluster()
    shown = picture.shown_nodes(c, "node40")
    assert [n.name for n in shown] == [f"node{i}" for i in range(1, picture.NODES_SHOWN + 1)] + ["node40"]
    snaps = {e.name: source.snapshot(e) for e in [c.underlay, *shown]}
    drawn = text(picture.draw(picture.build(c, snaps, source.peer, "node40"), 100))
    assert "node40" in drawn and "node39" not in drawn
    assert f"… and {50 - picture.NODES_SHOWN - 1} more nodes" in drawn
    assert "… 8 more veths" in drawn          # 20 pods per node, PODS_SHOWN listed


def test_a_filter_matching_many_pods_lists_some_and_counts_the_rest(tmp_path):
    from tui.app import PodlabApp
    from tui.tree import MAX_MATCHES, ClusterTree

    async def run() -> None:
        app = PodlabApp(big_design(tmp_path))
        async with app.run_test(size=(80, 24)) as pilot:
            while type(app.screen).__name__ != "LabScreen" or app.screen.reads == 0:
                await pilot.pause(0.05)
            side = app.screen.query_one(ClusterTree)
            side.query_one("#filter").value = "web-"
            await pilot.pause(0.2)
            lines = list(walk(side.tree.root))
            assert sum(1 for n in lines if n.data is not None and n.data.kind == "pod") == MAX_MATCHES
            assert str(lines[-1].label) == f"… {1000 - MAX_MATCHES} more matching pods: type more"

    asyncio.run(run())


BIRD_GOLDEN = Path(__file__).resolve().parent / "golden" / "bird"


def recorded_bird(monkeypatch, name: str = "rr_show_protocols_all_peer_down.txt") -> None:
    """BIRD's control socket answers as recorded (one session Established, one refused)."""
    from lab.bgp import birdc
    rows = birdc.parse_protocols(birdc.parse_lines((BIRD_GOLDEN / name).read_text()))
    monkeypatch.setattr(birdc, "protocols", lambda sock: rows)


class BirdPreview(PlanSource):
    """A calico preview whose nodes answer from a recorded BIRD, counting the reads."""
    reads = 0

    def bgp(self, entity):
        from lab.bgp.cli import node_status
        type(self).reads += 1
        return node_status(entity.name, "/run/recorded/bird.ctl")


def test_bgp_rows_are_calicoctls_table_with_the_routes_of_each_session(monkeypatch):
    from lab.bgp.cli import node_status
    from tui.bgpview import bgp_rows, summary
    recorded_bird(monkeypatch)
    report = node_status("henry001", "/run/recorded/bird.ctl")
    rows = [[getattr(c, "plain", c) for c in r] for r in bgp_rows(report)]
    assert rows == [["10.0.0.10", "node specific", "start", "08:56:56", "-", "-", "Active Socket: Connection refused"],
                    ["10.0.0.3", "node specific", "up", "08:56:56", "1", "1", "Established"]]
    assert summary(report).plain == "1 of 2 sessions Established · 1 route imported, 1 exported"
    stopped = {"node": "henry001", "error": "BIRD is not running on henry001", "peers": []}
    assert bgp_rows(stopped) == [] and summary(stopped).plain == "BIRD is not running on henry001"


def test_the_preview_knows_which_nodes_run_bird():
    src = preview("calico")
    assert src.cluster().bird == {"henry001", "henry002", "henry003"}
    assert "not running" in src.bgp(src.cluster().nodes[0])["error"]
    assert preview("default").cluster().bird == frozenset()


def test_a_node_running_bird_has_a_bgp_tab_a_pod_has_none(monkeypatch):
    from tui.app import PodlabApp
    recorded_bird(monkeypatch)
    BirdPreview.reads = 0

    async def run() -> None:
        app = PodlabApp(BirdPreview(planner.build(api.load_topology("calico"))), refresh_every=0.2)
        app.animation_level = "none"
        async with app.run_test(size=(100, 30)) as pilot:
            while type(app.screen).__name__ != "LabScreen" or app.screen.reads == 0:
                await pilot.pause(0.05)
            screen = app.screen
            assert screen.current.kind == "pod" and not _bgp_tab_shown(screen)
            await pilot.press("b")
            await pilot.pause(0.1)
            assert screen.tabs.active == "links"              # no BGP for a pod: it says so, stays
            screen.goto("henry001")
            while screen.current.name != "henry001":
                await pilot.pause(0.05)
            assert _bgp_tab_shown(screen)
            assert "Show BGP" in [c.title for c in app.get_system_commands(screen)]
            await pilot.press("b")
            while not screen.query_one("#bgp-table", DataTable).row_count:
                await pilot.pause(0.05)
            assert screen.tabs.active == "bgp"
            table = screen.query_one("#bgp-table", DataTable)
            assert [table.get_row_at(i)[0].plain for i in range(table.row_count)] == ["10.0.0.10", "10.0.0.3"]
            seen = BirdPreview.reads
            while BirdPreview.reads < seen + 2:                 # re-read on the refresh ticks, like the other tabs
                await pilot.pause(0.05)
            pod = screen.cluster.pods["henry002"][0].name
            screen.goto(pod)
            while screen.current.name != pod:
                await pilot.pause(0.05)
            assert screen.tabs.active == "links" and not _bgp_tab_shown(screen)

    asyncio.run(run())


def _bgp_tab_shown(screen) -> bool:
    from textual.widgets import Tab
    return screen.query_one("#tabs Tab#--content-tab-bgp", Tab).display
