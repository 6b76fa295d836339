"""Snapshot tests of the TUI's main screens (pytest-textual-snapshot), over stable data.

The data is a plan preview (tui.preview.PlanSource): the records `podlab up` would make, with
names and MACs derived from the design, so every run draws the same screens. Update the SVGs
after an intended change with `pytest tests/unit/test_tui_snapshots.py --snapshot-update`,
and look at them (the report opens in a browser) before committing.
"""
from __future__ import annotations

from types import SimpleNamespace

from lab import api, planner
from lab.errors import PodlabError
from tui.app import PodlabApp
from tui.preview import PlanSource


def app_for(design: str, source_class: type = PlanSource) -> PodlabApp:
    app = PodlabApp(source_class(planner.build(api.load_topology(design))))
    app.animation_level = "none"
    return app


def _shown(app) -> bool:
    """The namespace under the tree's cursor is the one whose records are on screen."""
    screen = app.screen
    if type(screen).__name__ != "LabScreen":
        return type(screen).__name__ == "HelpScreen"
    cursor = screen.tree.tree.cursor_node
    wanted = cursor.data.netns if cursor is not None and cursor.data is not None else None
    return screen.reads > 0 and screen.snapshot is not None and wanted in (None, screen.snapshot.netns)


async def settled(pilot) -> None:
    """The lab screen is up, shows the records of the namespace under the cursor, no worker is busy."""
    app = pilot.app
    while type(app.screen).__name__ != "LabScreen" or app.screen.reads == 0:
        await pilot.pause(0.05)
    await quiet(pilot)


async def quiet(pilot) -> None:
    app = pilot.app
    while True:
        await app.workers.wait_for_complete()
        await pilot.pause(0.2)           # longer than the tree's settle delay before it reads a namespace
        if _shown(app) and not any(w.is_running for w in app.workers):
            break


def keys_then_settle(*keys: str):
    async def run(pilot) -> None:
        await settled(pilot)
        for key in keys:
            await pilot.press(key)
        await quiet(pilot)
    return run


def test_main_screen_links_80x24(snap_compare):
    assert snap_compare(app_for("default"), terminal_size=(80, 24), run_before=settled)


def test_main_screen_links_wide(snap_compare):
    assert snap_compare(app_for("default"), terminal_size=(140, 36), run_before=settled)


def test_routes_tab_80x24(snap_compare):
    assert snap_compare(app_for("l3-host-routes"), terminal_size=(80, 24), run_before=keys_then_settle("2"))


def test_node_fdb_tab(snap_compare):
    # up from the first pod to its node, then the FDB tab: flannel.1's entries point at the other VTEP
    assert snap_compare(app_for("vxlan"), terminal_size=(100, 30),
                        run_before=keys_then_settle("up", "4"))


def test_map_80x24(snap_compare):
    assert snap_compare(app_for("default"), terminal_size=(80, 24), run_before=keys_then_settle("7"))


def test_map_wide_vpc_router(snap_compare):
    assert snap_compare(app_for("l3-vpc-router"), terminal_size=(140, 40), run_before=keys_then_settle("7"))


def test_help_screen_80x24(snap_compare):
    assert snap_compare(app_for("default"), terminal_size=(80, 24), run_before=keys_then_settle("question_mark"))


class TracedPreview(PlanSource):
    """A preview whose trace returns a fixed result, to draw the trace view."""

    def trace(self, src, dst, proto="icmp", port=None):
        a = self.addresses
        pod, other = a.pods[0], next(p for p in a.pods if p.node != a.pods[0].node)
        n1, n2 = a.node(pod.node), a.node(other.node)

        def hop(target, iface, direction, ttl, summary, decision=None):
            return SimpleNamespace(netns=f"{a.lab}-{target}", target=target, iface=iface, direction=direction,
                                   ttl=ttl, summary=summary, decision=decision, time=0.0)
        icmp = f"{pod.ip} > {other.ip} ICMP echo request"
        hops = [hop(pod.name, "eth0", "out", 64, icmp, f"route default via {n1.gateway} dev eth0"),
                hop(n1.name, "cni0", "in", 64, icmp),
                hop(n1.name, "flannel.1", "out", 63, icmp, f"route {n2.block} via {n2.block.network_address} "
                    "dev flannel.1 onlink; fdb dst " + str(n2.ip)),
                hop(n1.name, "eth0", "out", 64, f"{n1.ip}:40000 > {n2.ip}:8472 VXLAN vni 1 | {icmp}"),
                hop(n2.name, "flannel.1", "in", 63, icmp),
                hop(n2.name, "cni0", "out", 62, icmp, f"route {n2.block} dev cni0"),
                hop(other.name, "eth0", "in", 62, icmp)]
        if dst == "nowhere":
            raise PodlabError("no pod, node or host named 'nowhere'")
        return SimpleNamespace(src=src.name, dst=str(other.ip), proto=proto, port=port, hops=hops, reply_hops=[],
                               verdict="delivered", where=None, reason=None)


def test_trace_in_the_run_tab_80x24(snap_compare):
    async def run(pilot) -> None:
        await settled(pilot)
        other = pilot.app.screen.cluster.pods["node2"][0]
        pilot.app.screen.run_panel.set_destination(other.name)
        await pilot.press("t")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause(0.2)
    assert snap_compare(app_for("default", TracedPreview), terminal_size=(80, 24), run_before=run)


def test_welcome_screen_when_no_lab_is_up(snap_compare, tmp_path):
    (tmp_path / "alpha.yaml").write_text("name: alpha\ndescription: two nodes on VXLAN\nnodes: [n1, n2]\n"
                                         "pods: [{name: a, image: busybox}]\n")
    (tmp_path / "beta.yaml").write_text("name: beta\nmode: l3\nrouting: gateway\nnodes: 3\n")
    (tmp_path / "broken.yaml").write_text("name: broken\nnodes: [n1\n")
    app = PodlabApp(None, topologies=tmp_path, labs=[])
    app.animation_level = "none"
    assert snap_compare(app, terminal_size=(100, 24))


class BirdPreview(PlanSource):
    """A calico preview whose nodes' BIRDs answer as recorded: one session Established, one refused."""

    def bgp(self, entity):
        from lab.bgp.cli import node_status
        return node_status(entity.name, "/run/recorded/bird.ctl")


def test_bgp_tab_of_a_calico_node(snap_compare, monkeypatch):
    from pathlib import Path

    from lab.bgp import birdc
    recorded = Path(__file__).resolve().parent / "golden" / "bird" / "rr_show_protocols_all_peer_down.txt"
    rows = birdc.parse_protocols(birdc.parse_lines(recorded.read_text()))
    monkeypatch.setattr(birdc, "protocols", lambda sock: rows)

    async def node_then_bgp(pilot) -> None:
        await keys_then_settle("up")(pilot)       # from the first pod to its node, shown before `b`
        await pilot.press("b")
        await quiet(pilot)
    assert snap_compare(app_for("calico", BirdPreview), terminal_size=(110, 30), run_before=node_then_bgp)
