"""The BGP of a calico lab's real BIRDs in `podlab inspect NODE -o json` and in the TUI's BGP tab,
which re-reads the sessions as the other tabs re-read the kernel: a BIRD stopped by hand shows."""
from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import signal
from pathlib import Path

import pytest
from test_tui import rows, select, until

from lab import cli
from lab.engine.journal import Journal
from tui.app import PodlabApp
from tui.source import LabSource

pytestmark = pytest.mark.skipif(not shutil.which("bird") and not os.path.exists("/usr/sbin/bird"),
                                reason="BIRD is not installed")

CALICO = Path(__file__).resolve().parents[2] / "topologies" / "calico.yaml"
NODES = ("henry001", "henry002", "henry003")


@pytest.fixture(scope="module")
def lab(lab_from_yaml):
    return lab_from_yaml(CALICO.read_text(), prefix="bgpv")


def others(lab, node: str) -> set[str]:
    return {str(lab.target(n).ip) for n in NODES if n != node}


def test_inspect_json_of_a_node_carries_its_bgp_sessions(lab):
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["inspect", "henry001", "-o", "json", "--lab", lab.name], out, err) == 0, err.getvalue()
    data = json.loads(out.getvalue())
    assert {"links", "routes", "netns"} <= set(data)               # the snapshot, as before
    bgp = data["bgp"]
    assert bgp["node"] == "henry001" and bgp["error"] is None and "text" not in bgp
    assert {p["address"] for p in bgp["peers"]} == others(lab, "henry001")
    assert all(p["info"] == "Established" and p["imported"] == 1 and p["exported"] == 1 for p in bgp["peers"])
    out = io.StringIO()
    assert cli.main(["bgp", "henry001", "-o", "json", "--lab", lab.name], out, err) == 0
    assert json.loads(out.getvalue()) == [bgp]                    # what `podlab bgp NODE -o json` prints

    out = io.StringIO()
    assert cli.main(["inspect", "busybox", "-o", "json", "--lab", lab.name], out, err) == 0
    assert "bgp" not in json.loads(out.getvalue())


def test_the_bgp_tab_shows_the_sessions_and_a_bird_stopped_by_hand(lab):
    async def main() -> None:
        app = PodlabApp(LabSource(lab), refresh_every=0.5)
        app.animation_level = "none"
        async with app.run_test(size=(110, 30)) as pilot:
            await until(pilot, lambda: type(app.screen).__name__ == "LabScreen" and app.screen.reads > 0)
            screen = app.screen
            await select(app, pilot, "henry001")
            await pilot.press("b")
            table = lambda: {r[0]: r for r in rows(app, "bgp-table")}  # noqa: E731
            await until(pilot, lambda: set(table()) == others(lab, "henry001"), what="the BGP sessions")
            assert screen.tabs.active == "bgp"
            assert all(r[2] == "up" and r[4:] == ["1", "1", "Established"] for r in table().values()), table()

            henry002 = lab.target("henry002")
            bird = next(p for p in Journal(lab.name).processes() if p["what"] == f"bird in {henry002.netns}")
            os.kill(bird["pid"], signal.SIGTERM)
            await until(pilot, lambda: table()[str(henry002.ip)][6] != "Established", what="the session to go down")
            assert table()[str(lab.target("henry003").ip)][6] == "Established"

            await select(app, pilot, "henry002")
            summary = lambda: str(screen.query_one("#bgp-summary").render())  # noqa: E731
            await until(pilot, lambda: "BIRD is not running on henry002" in summary(), what="henry002's error")
            assert screen.tabs.active == "bgp" and rows(app, "bgp-table") == []
    asyncio.run(main())
