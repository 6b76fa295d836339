"""Read a namespace's network state back from the kernel: the source of truth after `up`.

A trainee who fixes a route by hand sees the fix here, and a grader judges what is really
there, never the plan. pyroute2 decodes the dumps; it runs in a helper thread that has
joined the namespace, so no process is forked per namespace.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from lab.engine import netns

RT_TABLES = {254: "main", 255: "local", 253: "default"}
ROUTE_TYPES = {1: "unicast", 2: "local", 3: "broadcast", 6: "blackhole", 7: "unreachable", 8: "prohibit"}
NUD = {0x01: "INCOMPLETE", 0x02: "REACHABLE", 0x04: "STALE", 0x08: "DELAY", 0x10: "PROBE",
       0x20: "FAILED", 0x40: "NOARP", 0x80: "PERMANENT"}


@dataclass
class Link:
    index: int
    name: str
    kind: str            # veth, bridge, vxlan, loopback, ...
    state: str           # up / down (administrative), plus carrier
    mtu: int
    mac: str
    master: str | None = None
    peer_index: int | None = None       # a veth's other end
    peer_netnsid: int | None = None     # set when that end is in another namespace
    alias: str | None = None
    vxlan: dict[str, Any] | None = None  # id, local, port, learning, link


@dataclass
class Address:
    dev: str
    address: str         # CIDR form


@dataclass
class Route:
    dst: str             # "default" or CIDR
    table: str
    type: str
    gateway: str | None = None
    dev: str | None = None
    scope: str = "global"
    proto: int = 0
    onlink: bool = False
    src: str | None = None


@dataclass
class Neighbour:
    dev: str
    address: str
    mac: str | None
    state: str


@dataclass
class FdbEntry:
    dev: str
    mac: str
    dst: str | None       # VXLAN remote VTEP, None for a learnt/local bridge entry
    master: str | None
    permanent: bool
    self: bool            # an entry of the device itself (VXLAN) rather than of its bridge


@dataclass
class Snapshot:
    netns: str
    links: list[Link] = field(default_factory=list)
    addresses: list[Address] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    neighbours: list[Neighbour] = field(default_factory=list)
    fdb: list[FdbEntry] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)

    def link(self, name: str) -> Link | None:
        return next((l for l in self.links if l.name == name), None)

    def routes_in(self, table: str = "main") -> list[Route]:
        return [r for r in self.routes if r.table == table]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SYSCTLS = ("net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter", "net.ipv4.conf.all.send_redirects")


def snapshot(netns_name: str) -> Snapshot:
    return netns.run_in(netns_name, lambda: _read(netns_name))


def _read(name: str) -> Snapshot:
    from pyroute2 import IPRoute  # imported lazily: it is slow to import and unit tests skip it

    snap = Snapshot(name)
    with IPRoute() as ipr:
        raw_links = ipr.get_links()
        names = {l["index"]: l.get("IFLA_IFNAME") for l in raw_links}
        snap.links = [_link(l, names) for l in raw_links]
        snap.addresses = [Address(names.get(a["index"], str(a["index"])), f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}")
                          for a in ipr.get_addr(family=2)]
        snap.routes = [_route(r, names) for r in ipr.get_routes(family=2)]
        snap.neighbours = [Neighbour(names.get(n["ifindex"], "?"), n.get("NDA_DST"), n.get("NDA_LLADDR"),
                                     _nud(n["state"]))
                           for n in ipr.get_neighbours(family=2) if n.get("NDA_DST")]
        snap.fdb = [_fdb(f, names) for f in ipr.fdb("dump")]
    for key in SYSCTLS:
        try:
            with open("/proc/sys/" + key.replace(".", "/")) as f:
                snap.sysctls[key] = f.read().strip()
        except OSError:
            pass
    return snap


def _nud(state: int) -> str:
    return "|".join(v for k, v in NUD.items() if state & k) or "NONE"


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
    return Route(dst=f"{dst}/{r['dst_len']}" if dst else "default", table=RT_TABLES.get(table, str(table)),
                 type=ROUTE_TYPES.get(r["type"], str(r["type"])), gateway=r.get("RTA_GATEWAY"),
                 dev=names.get(oif) if oif else None, scope=scope, proto=r["proto"],
                 onlink=bool(r["flags"] & 4), src=r.get("RTA_PREFSRC"))


def _fdb(f: Any, names: dict[int, str]) -> FdbEntry:
    master = f.get("NDA_MASTER")
    return FdbEntry(dev=names.get(f["ifindex"], str(f["ifindex"])), mac=f.get("NDA_LLADDR"), dst=f.get("NDA_DST"),
                    master=names.get(master) if master else None, permanent=bool(f["state"] & 0x80),
                    self=bool(f["flags"] & 0x02))
