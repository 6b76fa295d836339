"""The shipped cni topologies, with the real plugins: each passes `check`, each hostPort is reached
through portmap's own iptables rules, and each plugin of the chain left what it is for."""
from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest
from cnilab import CNI, no_cni_residue, reservations

from lab import api, cli, state

pytestmark = pytest.mark.skipif(not os.path.exists(f"{CNI}/bridge"), reason="needs containernetworking-plugins")
TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"


def podlab(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return cli.main(list(args), out, err), out.getvalue(), err.getvalue()


@pytest.fixture
def example(request):
    made = []

    def up(name: str) -> api.Lab:
        lab = api.up(api.load_topology(str(TOPOLOGIES / f"{name}.yaml"), f"t{name}"[:24]))
        made.append(lab.name)
        return lab
    yield up
    for name in made:
        if state.lab_dir(name).exists():
            api.down(name)
        no_cni_residue(name)


def nat_rules(netns: str) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, "iptables-save", "-t", "nat"], capture_output=True,
                          text=True, check=True).stdout


def passes_check(lab: api.Lab) -> None:
    code, out, _ = podlab("check", "--lab", lab.name)
    assert code == 0 and "PASS" in out, out


def test_containerd_default(example):
    lab = example("cni-containerd")
    passes_check(lab)
    node = lab.addresses.node("node1")
    code, out, _ = podlab("curl", "ecs", f"{node.ip}:8080", "--lab", lab.name)     # from outside, by the hostPort
    assert code == 0 and "host web!" in out
    assert "CNI-HOSTPORT-DNAT" in nat_rules(node.netns)
    code, out, _ = podlab("exec", "busybox", "--lab", lab.name, "--", "ip", "-6", "addr", "show", "eth0")
    assert "2001:4860:4860::" in out          # the list's IPv6 range, as containerd's default gives it


def test_kindnet(example):
    lab = example("cni-kindnet")
    passes_check(lab)
    node2 = lab.addresses.node("node2")
    code, out, _ = podlab("curl", "busybox", f"{node2.ip}:8080", "--lab", lab.name)
    assert code == 0 and "host web!" in out
    # kindnet's dataDir: the node's own /run/cni-ipam-state, not /var/lib/cni/networks
    on_node2 = [p.ip for p in lab.addresses.pods if p.node == "node2"]
    assert reservations(lab.name, "node2", "kindnet", "/run/cni-ipam-state") == sorted(str(ip) for ip in on_node2)
    assert not (Path(state.lab_dir(lab.name)) / "cni/nodes/node2/var-lib/cni/networks").exists()


def test_bridge_ipmasq(example):
    lab = example("cni-bridge-ipmasq")
    passes_check(lab)
    node = lab.addresses.node("node1")
    rules = nat_rules(node.netns)
    assert "-j MASQUERADE" in rules and '--comment "name: \\"cbr0\\" id:' in rules
    code, out, _ = podlab("trace", "busybox", "ecs", "--lab", lab.name)
    assert code == 0 and f"{node.ip} > {lab.addresses.outside[0].ip} ICMP echo-request" in out   # masqueraded
    code, out, _ = podlab("curl", "ecs", f"{node.ip}:8080", "--lab", lab.name)
    assert code == 0 and "host web!" in out


def test_chain_bandwidth_tuning_firewall(example):
    lab = example("cni-chain")
    passes_check(lab)
    pod = lab.addresses.pod("limited")
    node = lab.addresses.node(pod.node)
    qdiscs = subprocess.run(["tc", "-n", node.netns, "qdisc", "show"], capture_output=True, text=True).stdout
    assert f"tbf 1: dev {pod.veth} root" in qdiscs and "rate 10Mbit" in qdiscs           # ingress-bandwidth
    assert "dev bwp" in qdiscs and "rate 20Mbit" in qdiscs                                # egress, on its ifb
    code, out, _ = podlab("exec", "limited", "--lab", lab.name, "--", "sysctl", "-n", "net.core.somaxconn")
    assert out.strip() == "1024"                                                           # tuning
    rules = subprocess.run(["ip", "netns", "exec", node.netns, "iptables-save", "-t", "filter"], capture_output=True,
                           text=True).stdout
    assert f"-A CNI-FORWARD -d {pod.ip}/32" in rules                                       # firewall
    code, out, _ = podlab("curl", "limited", f"{lab.addresses.node('node2').ip}:8080", "--lab", lab.name)
    assert code == 0 and "host web!" in out
