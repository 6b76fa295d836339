"""The TUI driven by Textual's Pilot over a real lab: what it shows is what the kernel has, and what
it sends really crosses the lab. Every test runs at 80x24, the smallest terminal it supports."""
from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import time

import pytest
from labcheck import assert_no_residue
from textual.widgets import DataTable

from lab import api, state
from lab.engine import netns
from tui.app import PodlabApp
from tui.source import LabSource

DESIGN = """
mode: vxlan
nodes: [node1, node2]
pods:
  - {name: client, node: node1, image: busybox}
  - {name: web, node: node2, image: nginx}
"""
SIZE = (80, 24)


@pytest.fixture(scope="module")
def lab(lab_from_yaml):
    return lab_from_yaml(DESIGN, prefix="tui")


def run(lab, scenario, refresh: float = 2.0, size=SIZE) -> None:
    """Run `scenario(app, pilot)` inside the app, over the lab, once its first namespace is shown."""
    async def main() -> None:
        app = PodlabApp(LabSource(lab), refresh_every=refresh)
        app.animation_level = "none"
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: type(app.screen).__name__ == "LabScreen" and app.screen.reads > 0)
            await scenario(app, pilot)
    asyncio.run(main())


async def until(pilot, condition, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await pilot.pause(0.05)


async def select(app, pilot, name: str) -> None:
    screen = app.screen
    before = screen.reads
    screen.goto(name)
    await until(pilot, lambda: screen.current is not None and screen.current.name == name and screen.reads > before,
                what=f"{name} to be read")


def rows(app, table_id: str) -> list[list[str]]:
    table = app.screen.query_one(f"#{table_id}", DataTable)
    return [[getattr(c, "plain", str(c)) for c in table.get_row_at(i)] for i in range(table.row_count)]


def ip_json(ns: str, *args: str) -> list[dict]:
    out = subprocess.run(["ip", "-4", "-n", ns, "-j", *args], capture_output=True, text=True, check=True).stdout
    return json.loads(out or "[]")


def test_selecting_a_pod_shows_its_kernel_addresses_routes_and_veth_peer(lab):
    web = lab.target("web")
    node = lab.target("node2")

    async def scenario(app, pilot):
        await select(app, pilot, "web")
        links = {r[0]: r for r in rows(app, "links-table")}
        kernel_addrs = {a["ifname"]: [f"{i['local']}/{i['prefixlen']}" for i in a["addr_info"] if i["family"] == "inet"]
                        for a in ip_json(web.netns, "addr")}
        assert links["eth0"][4] == " ".join(kernel_addrs["eth0"]) == f"{web.ip}/24"
        assert links["eth0"][3] == str(ip_json(web.netns, "link", "show", "eth0")[0]["mtu"])
        # the host end, as the node's kernel names it: a veth enslaved to cni0
        host_end = links["eth0"][6].removeprefix("→ node2:")
        node_link = ip_json(node.netns, "link", "show", host_end)[0]
        assert node_link["master"] == "cni0"
        shown = {(r[0], r[1]) for r in rows(app, "routes-table")}
        for r in ip_json(web.netns, "route", "show", "table", "all"):
            table = r.get("table", "main")
            if table not in ("main", "local"):
                continue
            dst = r["dst"] if r["dst"] == "default" or "/" in r["dst"] else r["dst"] + "/32"
            assert (table, dst) in shown, f"kernel route {table} {dst} not shown"
        assert ("main", "default") in shown

    run(lab, scenario)


def test_a_route_added_by_hand_appears_and_goes_without_a_restart(lab):
    client = lab.target("client")
    gateway = str(lab.addresses.node("node1").gateway)

    def routes(app) -> set[str]:
        return {r[1] for r in rows(app, "routes-table") if r[0] == "main"}

    async def scenario(app, pilot):
        await select(app, pilot, "client")
        await pilot.press("2")
        assert "10.99.0.0/16" not in routes(app)
        subprocess.run(["ip", "-n", client.netns, "route", "add", "10.99.0.0/16", "via", gateway], check=True)
        try:
            await until(pilot, lambda: "10.99.0.0/16" in routes(app), timeout=6, what="the new route")
            row = next(r for r in rows(app, "routes-table") if r[1] == "10.99.0.0/16")
            assert row[2] == gateway and row[3] == "eth0"
        finally:
            subprocess.run(["ip", "-n", client.netns, "route", "del", "10.99.0.0/16"], check=True)
        await until(pilot, lambda: "10.99.0.0/16" not in routes(app), timeout=6, what="the route to go")

    run(lab, scenario, refresh=0.5)


def finished(app) -> bool:
    return any(line.startswith("[exit status") for line in app.screen.run_panel.history)


def test_ping_from_the_tui_gets_replies_across_the_overlay(lab):
    web_ip = str(lab.target("web").ip)

    async def scenario(app, pilot):
        await select(app, pilot, "client")
        await pilot.press("s")
        app.screen.run_panel.set_destination("web")
        await pilot.press("p")
        assert app.screen.tabs.active == "run"
        await until(pilot, lambda: finished(app), what="ping to end")
        out = "\n".join(app.screen.run_panel.history)
        assert f"64 bytes from {web_ip}: icmp_seq=1 ttl=62" in out    # two routing hops: node1, node2
        assert "3 received" in out and "[exit status 0]" in out

    run(lab, scenario)


def test_curl_from_the_tui_gets_the_pages_of_the_pod_that_served_it(lab):
    async def scenario(app, pilot):
        await select(app, pilot, "client")
        app.screen.run_panel.set_destination("web:80/")
        await pilot.press("u")
        await until(pilot, lambda: finished(app), what="curl to end")
        out = "\n".join(app.screen.run_panel.history)
        assert "Welcome to the home page of host web!" in out and "[exit status 0]" in out

    run(lab, scenario)


def test_trace_shows_each_hop_its_deciding_entry_and_the_verdict(lab):
    async def scenario(app, pilot):
        await select(app, pilot, "client")
        app.screen.run_panel.set_destination("web")
        await pilot.press("t")
        history = app.screen.run_panel.history
        await until(pilot, lambda: any(l.startswith("verdict:") for l in history), timeout=15, what="the trace")
        out = "\n".join(history)
        assert out.count("\n") > 10, out
        assert "verdict: delivered" in out
        hop_heads = [l for l in history if l[:3].strip().isdigit()]
        assert any(" client eth0 out" in l for l in hop_heads), out
        assert any(" node1 flannel.1 out" in l for l in hop_heads), out
        assert any(" web eth0 in" in l for l in hop_heads), out
        assert any("↳ route" in l and "flannel.1" in l for l in history), out
        assert any("UDP 8472" in l for l in history), "the VXLAN hop shows the outer header"

    run(lab, scenario)


def test_capture_on_a_node_uplink_shows_vxlan_outer_and_inner_headers(lab):
    node1 = lab.addresses.node("node1")
    web_ip = str(lab.target("web").ip)

    async def scenario(app, pilot):
        screen = app.screen
        await select(app, pilot, "node1")
        screen.goto("node1", "eth0")
        await pilot.pause(0.3)
        await until(pilot, lambda: screen.query_one("#links-table", DataTable).cursor_row
                    == [r[0] for r in rows(app, "links-table")].index("eth0"), what="eth0 selected")
        await pilot.press("c")
        panel = screen.capture_panel
        assert panel.iface == "eth0" and panel.capturing is not None
        await pilot.pause(0.5)
        screen.run_panel.set_source("client")
        screen.run_panel.set_destination("web")
        screen.run_panel.start("ping")
        await until(pilot, lambda: finished(app), what="ping to end")
        await until(pilot, lambda: any("echo-reply" in l for l in panel.history), what="captured replies")
        await pilot.press("c")
        await until(pilot, lambda: panel.capturing is None, what="the capture to stop")
        lines = [l for l in panel.history if "echo-request" in l]
        assert lines, panel.history
        assert f"> {web_ip} ICMP echo-request" in lines[0]
        assert f"outer {node1.ip} > " in lines[0] and "UDP 8472 VNI 1" in lines[0]

    run(lab, scenario)


def test_enter_on_a_veth_goes_to_its_other_end(lab):
    veth = lab.addresses.pod("client").veth

    async def scenario(app, pilot):
        screen = app.screen
        await select(app, pilot, "client")
        table = screen.query_one("#links-table", DataTable)
        table.focus()
        table.move_cursor(row=[r[0] for r in rows(app, "links-table")].index("eth0"))
        await pilot.press("enter")
        await until(pilot, lambda: screen.current.name == "node1" and table.row_count > 3, what="the jump")
        await until(pilot, lambda: table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value == veth,
                    what="the cursor on the host end")
        await pilot.press("enter")       # and back
        await until(pilot, lambda: screen.current.name == "client", what="the jump back")

    run(lab, scenario)


def test_nft_and_pod_tabs_read_the_namespace(lab):
    web = lab.target("web")

    async def scenario(app, pilot):
        screen = app.screen
        await select(app, pilot, "web")
        subprocess.run(["ip", "netns", "exec", web.netns, "nft", "add", "table", "inet", "tuitest"], check=True)
        try:
            await pilot.press("5")
            text = lambda: str(screen.query_one("#nft-text").render())  # noqa: E731
            await until(pilot, lambda: "table inet tuitest" in text(), what="the nft table")
        finally:
            subprocess.run(["ip", "netns", "exec", web.netns, "nft", "delete", "table", "inet", "tuitest"],
                           check=True)
        await pilot.press("6")
        body = lambda: str(screen.query_one("#workload-text").render())  # noqa: E731
        await until(pilot, lambda: "tcp 0.0.0.0:80" in body(), what="the listening socket")
        containers = rows(app, "containers-table")
        assert containers and containers[0][:4] == ["nginx", "nginx", "http", "Running"]

    run(lab, scenario)


def test_map_draws_bridges_veths_and_tunnels_from_the_kernel(lab):
    veth = lab.addresses.pod("web").veth

    async def scenario(app, pilot):
        screen = app.screen
        await pilot.press("7")
        picture = lambda: str(screen.query_one("#picture").render())  # noqa: E731
        await until(pilot, lambda: "⇄" in picture(), what="the map")
        drawn = picture()
        assert "flannel.1 vni 1 ⇄ node2" in drawn and "flannel.1 vni 1 ⇄ node1" in drawn
        assert f"{veth} ═ web:eth0" in drawn

    run(lab, scenario, size=(120, 40))


def test_the_welcome_screen_brings_a_design_up_and_opens_it(tmp_path):
    name = f"tuiw-{secrets.token_hex(3)}"
    (tmp_path / f"{name}.yaml").write_text(f"name: {name}\nnodes: [node1]\npods: [{{name: solo, image: busybox}}]\n")
    namespaces: list[str] = []

    async def main() -> None:
        app = PodlabApp(None, topologies=tmp_path, labs=[])
        app.animation_level = "none"
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: type(app.screen).__name__ == "WelcomeScreen" and app.screen.designs,
                        what="the welcome screen")
            await pilot.press("enter")
            await until(pilot, lambda: type(app.screen).__name__ == "LabScreen", timeout=30, what="the lab")
            namespaces.extend(op.ns for op in app.source.lab.plan.ops if hasattr(op, "hostname"))
            await until(pilot, lambda: app.screen.reads > 0 and app.screen.current.name == "solo",
                        what="the pod to be shown")
            assert name in api.running()

    try:
        asyncio.run(main())
    finally:
        if state.lab_dir(name).exists():
            api.down(name)
    assert namespaces and all(not netns.exists(n) for n in namespaces)
    assert_no_residue(name, namespaces)


def test_the_tree_follows_pods_applied_and_deleted_while_it_runs(lab_from_yaml, tmp_path):
    """A change made by another command (podlab apply, delete) shows in a running TUI at its next tick:
    the new pod in the tree under its node, then gone from it; a pod being shown says it was deleted."""
    import io

    from lab import cli
    live = lab_from_yaml(DESIGN, prefix="tuilive")
    manifest = tmp_path / "extra.yaml"
    manifest.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: extra}\n"
                        "spec:\n  nodeName: node1\n  containers:\n  - {name: web, image: nginx}\n")

    def podlab(*args: str) -> None:
        out, err = io.StringIO(), io.StringIO()
        assert cli.main([*args, "--lab", live.name], out, err) == 0, err.getvalue()

    async def scenario(app, pilot):
        screen = app.screen

        def shown() -> set[str]:
            names: set[str] = set()

            def walk(node) -> None:
                for child in node.children:
                    if child.data is not None:
                        names.add(child.data.name)
                    walk(child)
            walk(screen.tree.tree.root)
            return names
        await select(app, pilot, "client")          # node1's pods are open in the tree
        assert "extra" not in shown()
        await asyncio.to_thread(podlab, "apply", "-f", str(manifest))
        await until(pilot, lambda: "extra" in shown(), timeout=5, what="the applied pod in the tree")
        assert screen.cluster.find("extra").node == "node1"
        assert f"{len(api.Lab(live.name).addresses.pods)} pods" in str(screen.tree.tree.root.label)
        await select(app, pilot, "extra")
        await asyncio.to_thread(podlab, "delete", "pod", "extra")
        await until(pilot, lambda: "extra" not in shown(), timeout=5, what="the deleted pod gone from the tree")
        assert "gone" in str(app.screen.query_one("#where").content)
    run(live, scenario, refresh=0.5)
