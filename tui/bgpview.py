"""The BGP tab of a node running BIRD (calico): its sessions as `calicoctl node status` lists them,
with the routes each one imported and exported, and BIRD's own `show protocols` below.

It shows a report of lab.bgp.cli.node_status (the Source's `bgp`): plain data, read from BIRD's
control socket by a worker.
"""
from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from tui.details import fill

# calicoctl's columns, with each session's route counts before INFO: that one can be long
# ("Active Socket: Connection refused") and is the one a narrow terminal cuts.
COLUMNS = ("PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "IMPORTED", "EXPORTED", "INFO")


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)     # BIRD gives no counts for a session that is down


def bgp_rows(report: dict) -> list[list[Any]]:
    """One row per peer, in COLUMNS' order."""
    rows = []
    for p in report.get("peers", []):
        established = p["info"].split(" ", 1)[0] == "Established"
        rows.append([p["address"], p["type"], Text(p["state"], style="green" if p["state"] == "up" else "red"),
                     p["since"], _count(p.get("imported")), _count(p.get("exported")),
                     Text(p["info"], style="green" if established else "yellow")])
    return rows


def summary(report: dict) -> Text:
    """'2 of 2 sessions Established · 2 routes imported, 1 exported', or why BIRD did not answer."""
    if report.get("error"):
        return Text(report["error"], style="bold red")
    peers = report.get("peers", [])
    if not peers:
        return Text("BIRD runs, with no BGP peers (calicoctl: No IPv4 peers found.)", style="yellow")
    up = sum(1 for p in peers if p["info"].split(" ", 1)[0] == "Established")
    imported = sum(p.get("imported") or 0 for p in peers)
    exported = sum(p.get("exported") or 0 for p in peers)
    return Text.assemble((f"{up} of {len(peers)} sessions Established", "green" if up == len(peers) else "yellow"),
                         f" · {imported} route{'s' if imported != 1 else ''} imported, {exported} exported")


class BgpView(VerticalScroll):
    def compose(self) -> ComposeResult:
        yield Static("", id="bgp-summary")
        table: DataTable = DataTable(cursor_type="row", zebra_stripes=True, id="bgp-table")
        table.add_columns(*COLUMNS)
        yield table
        yield Static("", id="bgp-birdc")

    def show(self, report: dict) -> None:
        self.query_one("#bgp-summary", Static).update(summary(report))
        rows = bgp_rows(report)
        fill(self.query_one(DataTable), rows, [p["protocol"] for p in report.get("peers", [])])
        birdc = report.get("birdc")
        self.query_one("#bgp-birdc", Static).update(
            Text.assemble(("birdc show protocols\n", "bold"), (birdc.rstrip("\n"), "")) if birdc else "")
