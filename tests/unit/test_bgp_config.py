"""lab.bgp.config: the BIRD 2 text Calico's confd would generate, and that BIRD itself parses."""
from __future__ import annotations

import itertools
import re
import shutil
import subprocess

import pytest

from lab.bgp.config import BgpNode, bird_argv, bird_config, protocol_name, sessions

N1 = BgpNode("node1", "10.0.0.2", ("192.168.0.0/26",))
N2 = BgpNode("node2", "10.0.0.3", ("192.168.0.64/26", "192.168.1.0/26"))
N3 = BgpNode("node3", "10.0.0.10", ())
NODES = [N1, N2, N3]


def stanza(text: str, head: str) -> str:
    """The block that starts with `head` (up to its closing brace at column 0)."""
    start = text.index(head)
    return text[start:text.index("\n}", start) + 2]


def test_router_id_is_the_node_ip():
    assert "\nrouter id 10.0.0.2;\n" in bird_config(N1, NODES)


def test_kernel_protocol_learns_persists_and_writes_without_a_metric():
    kernel = stanza(bird_config(N1, NODES), "protocol kernel {")
    for line in ("learn;", "persist;", "scan time 2;", "graceful restart;", "merge paths on;", "metric 0;",
                 "import all;", "export filter calico_kernel_programming;"):
        assert f"  {line}" in kernel, line
    assert "ipv4 {" in kernel


def test_kernel_gets_only_pool_bgp_routes_and_the_blackholes():
    f = stanza(bird_config(N1, NODES), "filter calico_kernel_programming")
    assert "if ( source = RTS_BGP && net ~ 192.168.0.0/16 ) then { accept; }" in f
    assert "if ( source = RTS_STATIC ) then { accept; }" in f
    assert f.rstrip("}\n").rstrip().endswith("reject;")


def test_direct_leaves_out_pod_interfaces_as_calico_does():
    assert 'interface -"cali*", -"kube-ipvs*", "*";' in stanza(bird_config(N1, NODES), "protocol direct {")


def test_one_blackhole_per_own_block_and_none_without_blocks():
    static = stanza(bird_config(N2, NODES), "protocol static {")
    assert re.findall(r"route (\S+) blackhole;", static) == ["192.168.0.64/26", "192.168.1.0/26"]
    assert "protocol static {" not in bird_config(N3, NODES)


def test_export_announces_own_blocks_not_the_addresses_under_them_nor_cali_routes():
    text = bird_config(N2, NODES)
    aggr = stanza(text, "function calico_aggr()")
    for block in N2.blocks:
        assert aggr.index(f"if ( net = {block} ) then {{ accept; }}") < aggr.index(f"if ( net ~ {block} ) then {{ reject; }}")
    export = stanza(text, "filter calico_export_to_bgp_peers")
    assert export.index('ifname ~ "cali*"') < export.index("calico_aggr();")
    assert "if ( net ~ 192.168.0.0/16 ) then { accept; }" in export


def test_import_takes_only_the_pool():
    imp = stanza(bird_config(N1, NODES, pool="192.168.0.0/16"), "filter calico_import_from_bgp_peers")
    assert "if ( net ~ 192.168.0.0/16 ) then { accept; }" in imp and "reject;" in imp


def test_bgp_template_as_calico_with_shorter_connect_timers():
    t = stanza(bird_config(N1, NODES, asn=64600), "template bgp bgp_template {")
    for line in ("local as 64600;", "gateway recursive;", "add paths on;", "graceful restart;",
                 "connect delay time 1;", "connect retry time 1;", "error wait time 5,30;",
                 "import filter calico_import_from_bgp_peers;", "export filter calico_export_to_bgp_peers;"):
        assert f" {line}" in t, line


def test_full_mesh_one_session_per_peer_named_as_calico():
    text = bird_config(N1, NODES)
    assert re.findall(r"protocol bgp (\S+) from bgp_template", text) == ["Mesh_10_0_0_10", "Mesh_10_0_0_3"]
    s = stanza(text, "protocol bgp Mesh_10_0_0_3 ")
    assert "neighbor 10.0.0.3 as 64512;" in s and "source address 10.0.0.2;" in s


def test_passive_when_the_peer_ip_is_greater_as_a_string():
    # "10.0.0.10" < "10.0.0.2" as strings, though not as numbers: node1 (.2) connects to node3 (.10)
    by_name = {s.neighbor: s for s in sessions(N1, NODES)}
    assert by_name["10.0.0.3"].passive and not by_name["10.0.0.10"].passive
    assert "passive on;" not in stanza(bird_config(N1, NODES), "protocol bgp Mesh_10_0_0_10 ")
    assert "passive on;" in stanza(bird_config(N3, NODES), "protocol bgp Mesh_10_0_0_2 ")


def test_every_pair_has_exactly_one_active_side():
    nodes = [BgpNode(f"n{i}", f"10.0.{i // 200}.{i % 200 + 2}") for i in range(30)]
    passive = {(n.ip, s.neighbor): s.passive for n in nodes for s in sessions(n, nodes)}
    for a, b in itertools.combinations([n.ip for n in nodes], 2):
        assert passive[(a, b)] != passive[(b, a)]


def test_a_node_skips_itself_in_the_peer_list():
    assert [s.neighbor for s in sessions(N1, NODES)] == ["10.0.0.10", "10.0.0.3"]


def test_route_reflector_peers_with_everyone_and_reflects_to_non_reflectors():
    rr = sessions(N1, NODES, mesh=False, route_reflectors=["node1"])
    assert [(s.name, s.rr_client, s.passive) for s in rr] == [("Node_10_0_0_10", True, False),
                                                              ("Node_10_0_0_3", True, False)]
    s = stanza(bird_config(N1, NODES, mesh=False, route_reflectors=["node1"], rr_cluster_id="1.2.3.4"),
               "protocol bgp Node_10_0_0_3 ")
    assert "rr client;" in s and "rr cluster id 1.2.3.4;" in s


def test_clients_peer_only_with_the_reflectors_and_reflectors_with_each_other_plainly():
    assert [s.name for s in sessions(N3, NODES, mesh=False, route_reflectors=["node1", "node2"])] == \
        ["Node_10_0_0_2", "Node_10_0_0_3"]
    between = sessions(N1, NODES, mesh=False, route_reflectors=["node1", "node2"])
    assert [(s.name, s.rr_client) for s in between] == [("Node_10_0_0_10", True), ("Node_10_0_0_3", False)]
    assert "rr client" not in bird_config(N3, NODES, mesh=False, route_reflectors=["node1"])


def test_mesh_with_reflectors_meshes_the_others_as_calico_does():
    four = NODES + [BgpNode("node4", "10.0.0.4")]
    assert [s.name for s in sessions(N3, four, route_reflectors=["node1"])] == \
        ["Mesh_10_0_0_3", "Mesh_10_0_0_4", "Node_10_0_0_2"]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="nodeX"):
        sessions(N1, NODES, route_reflectors=["nodeX"])
    with pytest.raises(ValueError, match="outside the pool"):
        bird_config(BgpNode("n", "10.0.0.2", ("10.1.0.0/26",)), NODES)


def test_protocol_names_and_argv():
    assert protocol_name("Node", "172.19.4.87") == "Node_172_19_4_87"
    assert bird_argv("/x/n1.conf", "/x/n1.ctl") == ["/usr/sbin/bird", "-f", "-c", "/x/n1.conf", "-s", "/x/n1.ctl"]


BIRD = shutil.which("bird") or shutil.which("/usr/sbin/bird")


@pytest.mark.skipif(not BIRD, reason="BIRD is not installed")
@pytest.mark.parametrize("node,kwargs", [
    (N1, {}), (N3, {}), (N2, {"asn": 65001, "pool": "192.168.0.0/23"}),
    (N1, {"mesh": False, "route_reflectors": ["node1"]}),
    (N3, {"mesh": False, "route_reflectors": ["node1", "node2"]}),
], ids=["mesh", "mesh-no-blocks", "asn-pool", "reflector", "client"])
def test_bird_parses_it(tmp_path, node, kwargs):
    conf = tmp_path / "bird.conf"
    conf.write_text(bird_config(node, NODES, **kwargs))
    out = subprocess.run([BIRD, "-p", "-c", str(conf)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.skipif(not BIRD, reason="BIRD is not installed")
def test_bird_parse_check_does_fail_on_a_bad_config(tmp_path):
    conf = tmp_path / "bird.conf"
    conf.write_text(bird_config(N1, NODES).replace("metric 0;", "metric zero;"))
    assert subprocess.run([BIRD, "-p", "-c", str(conf)], capture_output=True).returncode != 0
