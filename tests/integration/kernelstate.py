"""A lab's kernel state as comparable objects: every namespace's links, addresses, routes, permanent
neighbours, bridge FDB, bridge ports and IPv4/IPv6 settings, with what differs by nature between
two builds of one design written out of it: the lab's name in namespace names, the host veths'
names (podlab names them from the pod, the plugins at random: both become veth(<pod>)), MACs
(every MAC becomes the device it belongs to), ifindexes, and what derives from a MAC (IPv6
link-local addresses and their routes). What is left must be the same object for object."""
from __future__ import annotations

import json
import subprocess
from dataclasses import asdict

from lab import api, inspect

CONF = ("forwarding", "rp_filter", "proxy_arp", "arp_notify", "route_localnet", "send_redirects", "accept_redirects",
        "arp_ignore", "arp_announce")
CONF6 = ("forwarding", "accept_ra", "disable_ipv6", "accept_dad")


def _sysctls(netns: str, devs: list[str]) -> dict[str, str]:
    keys = ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding", "net.ipv6.conf.default.accept_ra",
            "net.ipv6.conf.default.accept_dad"]
    keys += [f"net.ipv4.conf.{d}.{k}" for d in ["all", "default", *devs] for k in CONF]
    keys += [f"net.ipv6.conf.{d}.{k}" for d in devs for k in CONF6]
    script = 'for k in "$@"; do f=/proc/sys/$(echo "$k" | tr . /); [ -r "$f" ] && echo "$k=$(cat "$f")"; done; true'
    out = subprocess.run(["ip", "netns", "exec", netns, "sh", "-c", script, "sh", *keys], capture_output=True,
                         text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def _bridge_ports(netns: str) -> list[dict]:
    out = subprocess.run(["ip", "netns", "exec", netns, "bridge", "-j", "-d", "link", "show"], capture_output=True,
                         text=True).stdout
    return json.loads(out or "[]")


def state(lab: api.Lab) -> dict[str, dict[str, list]]:
    """role name (node1, a pod's name, underlay, ...) -> kind -> sorted canonical objects."""
    targets = [t for t in lab.targets().values() if t.name != "router"]
    rename = {p.veth: f"veth({p.name})" for p in lab.addresses.pods if p.veth}
    out = {}
    for t in targets:
        snap = inspect.snapshot(t.netns)
        macs = {l.mac: f"mac({rename.get(l.name, l.name)}@{t.name})" for l in snap.links if l.mac}

        def name(dev):
            return rename.get(dev, dev)

        def mac(m):
            if m and m.startswith("33:33:ff:"):    # solicited-node group of a link-local address (from a MAC)
                return "33:33:ff(solicited-node)"
            return macs.get(m, "mac(elsewhere)" if m and not m.startswith(("33:33", "01:00:5e")) else m)

        links = [(name(l.name), l.kind, l.state, l.mtu, name(l.master), l.peer_netnsid is not None) for l in snap.links]
        addrs = [(name(a.dev), a.address) for a in snap.addresses if not a.address.startswith("fe80:")]
        routes = [(r.dst, r.table, r.type, r.gateway, name(r.dev), r.scope, r.proto, r.src, r.metric, r.onlink)
                  for r in snap.routes if not r.dst.startswith(("fe80:", "ff00:")) and "fe80:" not in (r.gateway or "")
                  and not (r.table == "local" and ":" in r.dst and r.dst.endswith("/128") and
                           r.dst.split("/")[0].startswith("fe80"))]
        neigh = [(name(n.dev), n.address, mac(n.mac), n.state) for n in snap.neighbours if "PERMANENT" in n.state]
        fdb = [(name(f.dev), mac(f.mac), f.dst, name(f.master), f.permanent, f.self) for f in snap.fdb
               if f.permanent or f.self]
        ports = [(name(p["ifname"]), p.get("master"), p.get("hairpin"), p.get("state"), p.get("learning"),
                  p.get("flood"), p.get("isolated")) for p in _bridge_ports(t.netns)]
        settings = {k.replace(next((d for d in rename if f".{d}." in k), "\0"), "veth"): v
                    for k, v in _sysctls(t.netns, [l.name for l in snap.links]).items()}
        out[t.name] = {"links": sorted(links, key=str), "addresses": sorted(addrs), "routes": sorted(routes, key=str),
                       "neighbours": sorted(neigh, key=str), "fdb": sorted(fdb, key=str), "bridge ports": sorted(ports, key=str),
                       "sysctls": sorted(settings.items())}
    return out


def differences(a: dict, b: dict) -> list[str]:
    """Each object one build has and the other lacks, by namespace and kind."""
    out = []
    for ns in sorted(set(a) | set(b)):
        for kind in sorted(set(a.get(ns, {})) | set(b.get(ns, {}))):
            left, right = a.get(ns, {}).get(kind, []), b.get(ns, {}).get(kind, [])
            for x in left:
                if x not in right:
                    out.append(f"{ns} {kind}: only in the first: {x}")
            for x in right:
                if x not in left:
                    out.append(f"{ns} {kind}: only in the second: {x}")
    return out


def as_text(s: dict) -> str:
    return json.dumps(s, indent=1, default=lambda o: asdict(o))
