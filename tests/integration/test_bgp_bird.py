"""Real BIRDs on lab.bgp's configuration: three nodes on one L2 segment (namespaces joined by a
bridge in a fourth) reach Established and program each other's blocks into the kernel as Calico's
BIRD does: `<block> via <node IP> dev eth0 proto bird`, and `blackhole <own block> proto bird`."""
from __future__ import annotations

import shutil
import subprocess
import time

import pytest
from bgp_segment import Segment
from labcheck import root_netns_state

from lab.bgp import birdc, status
from lab.bgp.config import BgpNode

pytestmark = pytest.mark.skipif(not shutil.which("bird") and not shutil.which("/usr/sbin/bird"),
                                reason="BIRD is not installed")

NODES = [BgpNode("n1", "10.0.0.2", ("192.168.0.0/26",)),
         BgpNode("n2", "10.0.0.3", ("192.168.0.64/26",)),
         BgpNode("n3", "10.0.0.10", ("192.168.0.128/26", "192.168.1.0/26"))]
CONVERGED_WITHIN = 10.0


def expected_routes(seg: Segment, node: BgpNode) -> set[str]:
    own = {f"blackhole {b} proto bird" for b in node.blocks}
    remote = {f"{b} via {other.ip} dev eth0 proto bird" for other in seg.nodes if other is not node
              for b in other.blocks}
    return own | remote


def bird_routes(seg: Segment, node: str) -> set[str]:
    return {line.strip() for line in seg.kernel_routes(node) if "proto bird" in line}


def sessions(seg: Segment, node: str) -> list[birdc.Protocol]:
    """The BGP rows of plain `show protocols` (cheap enough to poll 50 BIRDs)."""
    return [p for p in birdc.parse_protocols(birdc.command(seg.sock(node), "show protocols")) if p.proto == "BGP"]


def wait_converged(seg: Segment, started: float) -> tuple[float, float]:
    """Seconds from the start until every BGP session is Established, and until every node's
    kernel holds its expected routes."""
    established = None
    while time.monotonic() - started < CONVERGED_WITHIN:
        try:
            up = all(p.bgp_state == "Established" for n in seg.nodes for p in sessions(seg, n.name))
        except birdc.BirdError:              # a BIRD not yet listening on its socket
            up = False
        if up and established is None:
            established = time.monotonic() - started
        if up and all(bird_routes(seg, n.name) == expected_routes(seg, n) for n in seg.nodes):
            return established, time.monotonic() - started
        time.sleep(0.1)
    details = {n.name: [p.info for p in sessions(seg, n.name) if p.bgp_state != "Established"] for n in seg.nodes}
    routes = {n.name: sorted(bird_routes(seg, n.name)) for n in seg.nodes[:5]}
    pytest.fail(f"not converged within {CONVERGED_WITHIN}s: sessions not up {details}, routes {routes}")


@pytest.fixture
def segment():
    before = root_netns_state()
    made: list[Segment] = []

    def build(nodes: list[BgpNode] = NODES, **config_args) -> Segment:
        seg = Segment(nodes, **config_args)
        made.append(seg)
        seg.build()
        return seg

    try:
        yield build
    finally:
        for seg in made:
            seg.close()
            left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
            assert seg.prefix not in left, f"namespaces left behind: {left}"
    assert root_netns_state() == before, "the root network namespace changed"


def test_full_mesh_converges_and_programs_the_kernel(segment):
    seg = segment(pool="192.168.0.0/16")
    # A pod route under n1's own block and a /32 elsewhere in the pool, both on a cali* device:
    # n1's BIRD learns them from the kernel and must announce neither.
    ns1 = seg.ns["n1"]
    for cmd in (["link", "add", "calitest0", "type", "veth", "peer", "name", "pod0"],
                ["link", "set", "pod0", "up"], ["link", "set", "calitest0", "up"],
                ["route", "add", "192.168.0.5/32", "dev", "calitest0"],
                ["route", "add", "192.168.200.7/32", "dev", "calitest0"]):
        subprocess.run(["ip", "-n", ns1, *cmd], check=True)
    started = time.monotonic()
    seg.start_birds()
    established, programmed = wait_converged(seg, started)
    print(f"\n3-node mesh: sessions Established after {established:.2f}s, kernel routes after {programmed:.2f}s")

    for name in ("n2", "n3"):
        lines = seg.kernel_routes(name)
        assert not [line for line in lines if "192.168.0.5" in line or "192.168.200.7" in line], lines
    assert {"192.168.0.5 dev calitest0 scope link", "192.168.200.7 dev calitest0 scope link"} <= \
        {line.strip() for line in seg.kernel_routes("n1")}

    ps = {p.name: p for p in seg.protocols("n1")}
    assert (ps["Mesh_10_0_0_3"].neighbor, ps["Mesh_10_0_0_3"].imported, ps["Mesh_10_0_0_3"].exported) == \
        ("10.0.0.3", 1, 1)
    assert (ps["Mesh_10_0_0_10"].imported, ps["Mesh_10_0_0_10"].exported) == (2, 1)
    assert {r.net for r in birdc.routes(seg.sock("n1")) if r.proto.startswith("Mesh_")} == \
        {"192.168.0.64/26", "192.168.0.128/26", "192.168.1.0/26"}

    # our client and rendering agree with BIRD's own birdc
    cli = subprocess.run(["birdc", "-s", seg.sock("n1"), "show", "protocols"], capture_output=True, text=True,
                         check=True).stdout
    assert status.birdc_show_protocols(seg.protocols("n1")).splitlines() == [l.rstrip() for l in cli.splitlines()]
    table = status.calicoctl_node_status(seg.protocols("n3"))
    assert "| 10.0.0.2     | node-to-node mesh | up    |" in table and table.count("Established") == 2


def test_route_reflector_carries_the_clients_routes(segment):
    seg = segment(pool="192.168.0.0/16", mesh=False, route_reflectors=["n1"])
    started = time.monotonic()
    seg.start_birds()
    established, programmed = wait_converged(seg, started)
    print(f"\n3 nodes, 1 route reflector: Established after {established:.2f}s, kernel routes after {programmed:.2f}s")
    assert [p.name for p in seg.protocols("n2") if p.proto == "BGP"] == ["Node_10_0_0_2"]
    assert [(p.type, p.address) for p in status.peers(seg.protocols("n1"))] == \
        [("node specific", "10.0.0.10"), ("node specific", "10.0.0.3")]


def test_fifty_node_mesh_converges_in_seconds(segment):
    """1,225 sessions, 49 per BIRD. The neighbours are permanent: the kernel's one ARP table for
    all namespaces refuses dynamic entries past gc_thresh3 (1024), and 2,450 would be needed;
    with dynamic ARP this mesh took about 110 s, most sessions waiting on unanswered ARP."""
    nodes = [BgpNode(f"m{i}", f"10.0.0.{i + 2}", (f"192.168.{i}.0/26",)) for i in range(50)]
    seg = segment(nodes, permanent_neighbours=True, pool="192.168.0.0/16")
    started = time.monotonic()
    seg.start_birds()
    established, programmed = wait_converged(seg, started)
    print(f"\n50-node mesh: Established after {established:.2f}s, kernel routes after {programmed:.2f}s")
    assert len(sessions(seg, "m0")) == 49
