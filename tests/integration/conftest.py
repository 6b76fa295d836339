"""Fixtures that build small real labs (unique names) and prove nothing is left after them."""
from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

import pytest

from lab import api, state
from lab.engine import netns


def root_netns_state() -> dict:
    """What podlab must never change in the root network namespace."""
    def ip(*args: str):
        return json.loads(subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout or "[]")

    def sysctl(key: str) -> str:
        return Path("/proc/sys/" + key.replace(".", "/")).read_text().strip()

    links = [(l["ifname"], l.get("mtu"), l.get("operstate"), l.get("master")) for l in ip("link")]
    addrs = [(a["ifname"], [(i["local"], i["prefixlen"]) for i in a.get("addr_info", [])]) for a in ip("addr")]
    routes = [json.dumps(r, sort_keys=True) for r in ip("route", "show", "table", "all")]
    rules = [json.dumps(r, sort_keys=True) for r in ip("rule")]
    nft = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    sysctls = {k: sysctl(k) for k in ("net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter",
                                      "net.ipv4.conf.default.rp_filter", "net.ipv4.conf.all.forwarding")}
    return {"links": sorted(links), "addrs": sorted(addrs), "routes": sorted(routes), "rules": sorted(rules),
            "nft": nft, "sysctls": sysctls}


def assert_no_residue(lab: str, netns_names: list[str]) -> None:
    left = [n for n in netns_names if netns.exists(n)]
    assert not left, f"namespaces left behind: {left[:5]}"
    assert not state.lab_dir(lab).exists(), "state directory left behind"
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert f"--lab {lab} " not in ps and not ps.rstrip().endswith(f"--lab {lab}"), "a lab process is still running"


@pytest.fixture(scope="module")
def lab_from_yaml(tmp_path_factory):
    """Build labs from YAML text; every lab is taken down at the end and checked for residue."""
    made: list[tuple[str, list[str]]] = []
    before = root_netns_state()

    def build(text: str, prefix: str = "it") -> api.Lab:
        name = f"{prefix}-{secrets.token_hex(3)}"
        path = tmp_path_factory.mktemp("topo") / f"{name}.yaml"
        path.write_text(text)
        lab = api.up(api.load_topology(str(path), name))
        names = [op.ns for op in lab.plan.ops if hasattr(op, "hostname")]
        made.append((name, names))
        return lab

    yield build
    for name, names in made:
        if state.lab_dir(name).exists():
            api.down(name)
        assert_no_residue(name, names)
    assert root_netns_state() == before, "the root network namespace changed"
