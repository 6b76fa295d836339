"""lab.bgp.status: calicoctl node status and birdc show protocols, rendered from BIRD's replies."""
from __future__ import annotations

import json
from pathlib import Path

from lab.bgp import birdc, status

GOLDEN = Path(__file__).resolve().parent / "golden" / "bird"


def recorded(name: str) -> list[birdc.Protocol]:
    return birdc.parse_protocols(birdc.parse_lines((GOLDEN / name).read_text()))


def test_calicoctl_node_status_of_a_mesh_node():
    assert status.calicoctl_node_status(recorded("show_protocols.txt")) == """\
Calico process is running.

IPv4 BGP status
+--------------+-------------------+-------+----------+-------------+
| PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |    INFO     |
+--------------+-------------------+-------+----------+-------------+
| 10.0.0.10    | node-to-node mesh | up    | 08:55:32 | Established |
| 10.0.0.3     | node-to-node mesh | up    | 08:55:32 | Established |
+--------------+-------------------+-------+----------+-------------+

IPv6 BGP status
No IPv6 peers found.
"""


def test_node_specific_peers_and_a_session_still_connecting():
    ps = status.peers(recorded("rr_show_protocols_all_peer_down.txt"))
    assert [(p.address, p.type, p.state, p.info) for p in ps] == [
        ("10.0.0.10", "node specific", "start", "Active Socket: Connection refused"),
        ("10.0.0.3", "node specific", "up", "Established")]
    assert "| 10.0.0.10    | node specific | start | 08:56:56 | Active Socket: Connection refused |" in \
        status.calicoctl_node_status(recorded("rr_show_protocols_all_peer_down.txt"))


def test_no_peers():
    only_kernel = [p for p in recorded("show_protocols.txt") if p.proto != "BGP"]
    assert "IPv4 BGP status\nNo IPv4 peers found.\n" in status.calicoctl_node_status(only_kernel)


def test_birdc_show_protocols_as_birdc_prints_it():
    expected = [line.rstrip() for line in (GOLDEN / "birdc_show_protocols.txt").read_text().splitlines()]
    assert status.birdc_show_protocols(recorded("show_protocols.txt")).splitlines() == expected


def test_status_dict_is_json_with_route_counts():
    d = json.loads(json.dumps(status.status_dict("node1", recorded("show_protocols_all.txt"))))
    assert d["node"] == "node1"
    assert [(p["address"], p["type"], p["info"], p["imported"], p["exported"]) for p in d["peers"]] == [
        ("10.0.0.10", "node-to-node mesh", "Established", 2, 1), ("10.0.0.3", "node-to-node mesh", "Established", 1, 1)]
    assert len(d["protocols"]) == 6
