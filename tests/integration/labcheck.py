"""What every integration test checks after a lab: nothing left, the root namespace untouched."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from lab import state
from lab.engine import netns


# The designs every design-wide test runs, as the header to put on top of a cluster's YAML: the
# four of the older `mode:` key (kept as they are written in the shipped topologies), the ptp ones and Calico's.
MODES = {
    "l2": "mode: l2\n",
    "l3-host": "mode: l3\nrouting: host\n",
    "l3-gateway": "mode: l3\nrouting: gateway\n",
    "vxlan": "mode: vxlan\n",
    "kindnet": "design: kindnet\n",
    "gke-routes": "design: {attach: ptp, backend: vpc}\n",
    "calico-vxlan": "design: calico-vxlan\n",
    "calico": "design: calico\n",
}


def in_every_mode(cluster: str) -> dict[str, str]:
    """{design: YAML} for the cluster in each design."""
    return {design: header + cluster for design, header in MODES.items()}


def root_netns_state() -> dict:
    """What podlab must never change in the root network namespace."""
    def ip(*args: str):
        return json.loads(subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout or "[]")

    def sysctl(key: str) -> str:
        # An interface can vanish between listing and reading (other software on the host);
        # its absence then shows up in the link list, which is compared too.
        try:
            return Path("/proc/sys/" + key.replace(".", "/")).read_text().strip()
        except FileNotFoundError:
            return "(gone)"

    links = [(l["ifname"], l.get("mtu"), l.get("operstate"), l.get("master"), l.get("ifalias"),
              tuple(l.get("altnames", []))) for l in ip("link")]
    addrs = [(a["ifname"], [(i["local"], i["prefixlen"]) for i in a.get("addr_info", [])]) for a in ip("addr")]
    routes = [json.dumps(r, sort_keys=True) for r in ip("route", "show", "table", "all")]
    routes6 = [json.dumps(r, sort_keys=True) for r in ip("-6", "route", "show", "table", "all")]
    rules = [json.dumps(r, sort_keys=True) for r in ip("rule")] + [json.dumps(r, sort_keys=True) for r in ip("-6", "rule")]
    # Learned entries come and go on their own; what a program writes is permanent (podlab writes NUD_PERMANENT).
    neighbours = [json.dumps(n, sort_keys=True) for n in ip("neigh", "show", "nud", "permanent")]
    nft = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    keys = ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding", "net.ipv4.conf.all.src_valid_mark"]
    for conf in sorted(p.name for p in Path("/proc/sys/net/ipv4/conf").iterdir()):
        keys += [f"net.ipv4.conf.{conf}.{k}" for k in ("rp_filter", "forwarding", "proxy_arp", "send_redirects")]
    sysctls = {k: sysctl(k) for k in keys}
    return {"links": sorted(links), "addrs": sorted(addrs), "routes": sorted(routes), "routes6": sorted(routes6),
            "rules": sorted(rules), "neighbours": sorted(neighbours), "nft": nft, "sysctls": sysctls}


def diff_root_state(before: dict, after: dict) -> str:
    """What changed in the root network namespace, readably (empty if nothing did)."""
    lines = []
    for key in before:
        if before[key] != after.get(key):
            if isinstance(before[key], list):
                gone = [x for x in before[key] if x not in after[key]]
                new = [x for x in after[key] if x not in before[key]]
                lines.append(f"{key}: gone {gone[:3]} new {new[:3]}")
            else:
                lines.append(f"{key} changed")
    return "; ".join(lines)


def assert_no_residue(lab: str, netns_names: list[str]) -> None:
    left = [n for n in netns_names if netns.exists(n)]
    assert not left, f"namespaces left behind: {left[:5]}"
    assert not state.lab_dir(lab).exists(), "state directory left behind"
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert f"--lab {lab} " not in ps and not ps.rstrip().endswith(f"--lab {lab}"), "a lab process is still running"


def planned_objects(lab) -> dict[str, set]:
    """What a lab's plan says the kernel holds, per namespace: links, addresses, routes, permanent
    neighbours (compared with kernel_objects)."""
    from lab.ops import AddAddress, AddNeighbour, AddRoute, CreateNamespace, CreateVeth, CreateVxlan
    out: dict[str, set] = {}
    for op in lab.plan.ops:
        if isinstance(op, CreateNamespace):
            out.setdefault(op.ns, set())
        elif isinstance(op, CreateVeth):
            out.setdefault(op.ns, set()).add(("link", op.name))
            out.setdefault(op.peer_ns, set()).add(("link", op.peer))
        elif isinstance(op, CreateVxlan):
            out.setdefault(op.ns, set()).add(("link", op.name))
        elif isinstance(op, AddAddress):
            out.setdefault(op.ns, set()).add(("addr", op.dev, str(op.address)))
        elif isinstance(op, AddRoute) and not op.blackhole:
            dst = "default" if op.dst.prefixlen == 0 else str(op.dst)
            out.setdefault(op.ns, set()).add(("route", dst))     # the device may be the kernel's choice
        elif isinstance(op, AddNeighbour):
            out.setdefault(op.ns, set()).add(("neigh", op.dev, str(op.address)))
    return out


def kernel_objects(namespaces: set[str]) -> dict[str, set]:
    """What the kernel holds in these namespaces, in planned_objects' terms."""
    from lab import inspect
    out: dict[str, set] = {}
    for ns in namespaces:
        snap = inspect.snapshot(ns)
        got = {("link", l.name) for l in snap.links if l.kind in ("veth", "vxlan")}
        got |= {("addr", a.dev, a.address) for a in snap.addresses if not a.address.startswith("127.")}
        got |= {("route", r.dst) for r in snap.routes_in("main") if r.proto != 2 and r.type != "blackhole"}
        got |= {("neigh", n.dev, n.address) for n in snap.neighbours if "PERMANENT" in n.state}
        out[ns] = got
    return out
