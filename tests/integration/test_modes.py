"""Every mode, built for real: the network model holds, and each node reads like the CNI it emulates
(../shared/reference/cni-dataplanes.md, "Faithfulness checks")."""
from __future__ import annotations

import subprocess

import pytest
from labcheck import in_every_mode

from lab import check, inspect

CLUSTER = """
nodes: [node1, node2]
deployments:
  - {name: web, replicas: 2, image: nginx}
  - {name: echo, replicas: 2, image: echoserver}
outside: [ecs]
"""
DESIGNS = in_every_mode(CLUSTER)


@pytest.fixture(scope="module", params=list(DESIGNS))
def lab(request, lab_from_yaml):
    return lab_from_yaml(DESIGNS[request.param], prefix=request.param.replace("-", ""))


def run_in(target, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", target.netns, *argv], capture_output=True, text=True, timeout=20)


def ttl_from(lab, src: str, dst_ip) -> int:
    out = run_in(lab.target(src), "ping", "-c", "1", "-W", "2", str(dst_ip)).stdout
    return int(out.split("ttl=")[1].split()[0])


def test_check_passes_every_expected_path_without_nat(lab):
    results = check.run(lab)
    failed = [r for r in results if not r.passed]
    assert not failed, failed[:5]
    pod_pairs = [r for r in results if r.proto == "icmp" and r.src in {p.name for p in lab.addresses.pods}
                 and r.dst in {p.name for p in lab.addresses.pods}]
    n = len(lab.addresses.pods)
    assert len(pod_pairs) == n * (n - 1)
    assert all(r.seen_source == r.src_ip for r in pod_pairs)
    # HTTP through the echo server reports the caller's own pod IP
    echo = [r for r in results if r.proto == "http" and r.dst.startswith("echo") and r.seen_source]
    assert echo and all(r.seen_source == r.src_ip for r in echo)


def test_check_detects_a_broken_path(lab):
    pod = lab.addresses.pods[0]
    node = lab.target(pod.node)
    subprocess.run(["ip", "-n", node.netns, "link", "set", pod.veth, "down"], check=True)
    try:
        results = check.run(lab, timeout=0.5)
        failed = {(r.src, r.dst) for r in results if not r.passed}
        assert failed and all(pod.name in pair for pair in failed)
    finally:
        subprocess.run(["ip", "-n", node.netns, "link", "set", pod.veth, "up"], check=True)


def test_pods_have_their_names_as_hostnames(lab):
    for pod in lab.addresses.pods:
        out = subprocess.run(["nsenter", f"--net=/run/netns/{pod.netns}", f"--uts={lab.target(pod.name).uts}",
                              "hostname"], capture_output=True, text=True).stdout.strip()
        assert out == pod.name


def test_bridge_plugin_objects(lab):
    """Check 1: cni0 holds the gateway .1; pods hold .N (N >= 2) and default via .1; check 2: forwarding on."""
    for node in lab.addresses.nodes:
        snap = inspect.snapshot(node.netns)
        mask = lab.topology.pod_cidr.prefixlen if lab.topology.mode == "l2" else lab.topology.node_mask
        assert f"{node.gateway}/{mask}" in [a.address for a in snap.addresses if a.dev == "cni0"]
        assert snap.sysctls["net.ipv4.ip_forward"] == "1"
        ports = [l for l in snap.links if l.master == "cni0" and l.name.startswith("veth")]
        assert len(ports) == len([p for p in lab.addresses.pods if p.node == node.name])
    for pod in lab.addresses.pods:
        snap = inspect.snapshot(pod.netns)
        assert int(str(pod.ip).split(".")[-1]) >= 2
        default = [r for r in snap.routes_in("main") if r.dst == "default"]
        assert [r.gateway for r in default] == [str(lab.addresses.node(pod.node).gateway)]


def test_mode_specific_objects(lab):
    a = lab.addresses
    mode, routing = lab.topology.mode, lab.topology.routing
    for node in a.nodes:
        snap = inspect.snapshot(node.netns)
        remote = [n for n in a.nodes if n is not node]
        routes = {r.dst: r for r in snap.routes_in("main")}
        if mode == "vxlan":          # check 3
            vx = snap.link("flannel.1")
            assert vx and vx.kind == "vxlan" and vx.mtu == lab.topology.mtu - 50
            assert vx.vxlan == {"id": 1, "local": str(node.ip), "port": 8472, "learning": False, "dev": "eth0"}
            assert [x.address for x in snap.addresses if x.dev == "flannel.1"] == [f"{node.block.network_address}/32"]
            for peer in remote:
                r = routes[str(peer.block)]
                assert (r.gateway, r.dev, r.onlink) == (str(peer.block.network_address), "flannel.1", True)
            assert len([n for n in snap.neighbours if n.dev == "flannel.1"]) == len(remote)
            fdb = [f for f in snap.fdb if f.dev == "flannel.1"]
            assert sorted((f.mac, f.dst) for f in fdb) == sorted((p.vtep_mac, str(p.ip)) for p in remote)
            assert all(f.permanent for f in fdb)
        elif mode == "l3" and routing == "host":   # check 4
            assert snap.link("flannel.1") is None
            for peer in remote:
                assert (routes[str(peer.block)].gateway, routes[str(peer.block)].dev) == (str(peer.ip), "eth0")
        elif mode == "l3":           # check 5
            assert not any(str(p.block) in routes for p in remote)
            assert routes["default"].gateway == str(a.router_ip)
        elif mode == "l2":
            assert snap.link("eth0").master == "cni0"
    if routing == "gateway":
        router = {r.dst: r.gateway for r in inspect.snapshot(a.underlay_netns).routes_in("main")}
        assert all(router[str(n.block)] == str(n.ip) for n in a.nodes)


def test_ttl_tells_switched_from_routed(lab):
    """Check 8: same-node bridge unchanged; cross-node: l2 unchanged, routed -2 (-3 via a VPC router)."""
    a = lab.addresses
    src = a.pods[0]
    same = next(p for p in a.pods if p.node == src.node and p is not src)
    other = next(p for p in a.pods if p.node != src.node)
    assert ttl_from(lab, src.name, same.ip) == 64
    expected = {"l2": 64, "vxlan": 62, "l3": 61 if lab.topology.routing == "gateway" else 62}[lab.topology.mode]
    assert ttl_from(lab, src.name, other.ip) == expected


def test_outside_host_reaches_pods_only_in_the_vpc_route_model(lab):
    pod = lab.addresses.pods[0]
    reached = run_in(lab.target("ecs"), "ping", "-c", "1", "-W", "1", str(pod.ip)).returncode == 0
    assert reached == (lab.topology.routing == "gateway")


def test_nginx_page_names_the_pod_across_nodes(lab):
    web = [p for p in lab.addresses.pods if p.name.startswith("web")]
    client = next(p for p in lab.addresses.pods if p.node != web[0].node)
    out = run_in(lab.target(client.name), "curl", "-s", "-m", "5", f"http://{web[0].ip}/").stdout
    assert out.strip() == f"Welcome to the home page of host {web[0].name}!"
