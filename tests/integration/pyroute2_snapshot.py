"""The reference reader for lab.inspect: a namespace's state as pyroute2 decodes it.

lab.inspect reads the kernel with lab.netlink.dump (struct, only the attributes it uses); this is
how it read it before, with pyroute2 decoding everything. The tests compare the two on real
namespaces, so the fast reader is held to pyroute2's answers.
"""
from __future__ import annotations

from typing import Any

from lab import inspect
from lab.engine import netns
from lab.inspect import Address, FdbEntry, Link, Neighbour, Route, Snapshot


def snapshot(netns_name: str) -> Snapshot:
    return netns.run_in(netns_name, lambda: _read(netns_name))


def _read(name: str) -> Snapshot:
    from pyroute2 import IPRoute

    snap = Snapshot(name)
    with IPRoute() as ipr:
        raw_links = ipr.get_links()
        names = {l["index"]: l.get("IFLA_IFNAME") for l in raw_links}
        snap.links = [_link(l, names) for l in raw_links]
        snap.addresses = [Address(names.get(a["index"], str(a["index"])), f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}")
                          for a in ipr.get_addr(family=2)]
        snap.routes = [_route(r, names) for r in ipr.get_routes(family=2)]
        snap.neighbours = [Neighbour(names.get(n["ifindex"], "?"), n.get("NDA_DST"), n.get("NDA_LLADDR"),
                                     inspect._nud(n["state"]))
                           for n in ipr.get_neighbours(family=2) if n.get("NDA_DST")]
        snap.fdb = [_fdb(f, names) for f in ipr.fdb("dump")]
    snap.sysctls = inspect.read_sysctls()
    return snap


def _link(l: Any, names: dict[int, str]) -> Link:
    kind = l.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") or ("loopback" if l["index"] == 1 else "")
    up = "UP" if l["flags"] & 1 else "DOWN"
    carrier = "LOWER_UP" if l["flags"] & 0x10000 else "NO-CARRIER"
    link = Link(index=l["index"], name=l.get("IFLA_IFNAME"), kind=kind, state=f"{up},{carrier}",
                mtu=l.get("IFLA_MTU"), mac=l.get("IFLA_ADDRESS"), alias=l.get("IFLA_IFALIAS"))
    master = l.get("IFLA_MASTER")
    link.master = names.get(master, str(master)) if master else None
    if kind == "veth":
        link.peer_index = l.get("IFLA_LINK")
        link.peer_netnsid = l.get("IFLA_LINK_NETNSID")
    if kind == "vxlan":
        data = dict(l.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA").get("attrs", []))
        dev = data.get("IFLA_VXLAN_LINK")
        link.vxlan = {"id": data.get("IFLA_VXLAN_ID"), "local": data.get("IFLA_VXLAN_LOCAL"),
                      "port": data.get("IFLA_VXLAN_PORT"), "learning": bool(data.get("IFLA_VXLAN_LEARNING")),
                      "dev": names.get(dev) if dev else None}
    return link


def _route(r: Any, names: dict[int, str]) -> Route:
    table = r.get("RTA_TABLE", r["table"])
    dst = r.get("RTA_DST")
    oif = r.get("RTA_OIF")
    scope = {0: "global", 253: "link", 254: "host"}.get(r["scope"], str(r["scope"]))
    return Route(dst=f"{dst}/{r['dst_len']}" if dst else "default", table=inspect.RT_TABLES.get(table, str(table)),
                 type=inspect.ROUTE_TYPES.get(r["type"], str(r["type"])), gateway=r.get("RTA_GATEWAY"),
                 dev=names.get(oif) if oif else None, scope=scope, proto=r["proto"],
                 onlink=bool(r["flags"] & 4), src=r.get("RTA_PREFSRC"), metric=r.get("RTA_PRIORITY"),
                 nexthops=[{"gateway": h.get("RTA_GATEWAY"), "dev": names.get(h["oif"]) if h["oif"] else None,
                            "weight": h["hops"] + 1, "onlink": bool(h["flags"] & 4)}
                           for h in (r.get("RTA_MULTIPATH") or [])])


def _fdb(f: Any, names: dict[int, str]) -> FdbEntry:
    master = f.get("NDA_MASTER")
    return FdbEntry(dev=names.get(f["ifindex"], str(f["ifindex"])), mac=f.get("NDA_LLADDR"), dst=f.get("NDA_DST"),
                    master=names.get(master) if master else None, permanent=bool(f["state"] & 0x80),
                    self=bool(f["flags"] & 0x02))
