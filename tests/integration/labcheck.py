"""What every integration test checks after a lab: nothing left, the root namespace untouched."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from lab import state
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
