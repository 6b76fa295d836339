"""The records the kernel would hold after `podlab up`, from a plan alone (no root, no kernel).

`replay` applies a topology's plan (pure data) to empty Snapshot records, the ones lab.inspect
reads back from the kernel: links with their masters and veth peers, addresses, the routes the
kernel adds for them, the plan's routes, neighbours, FDB entries and sysctls. MACs the plan
leaves to the kernel are derived from names, so a replay never changes (the TUI's preview and
its snapshot tests rely on that).
"""
from __future__ import annotations

from ipaddress import ip_address, ip_network
from typing import Any

from lab import ops as O
from lab.addressing import stable_mac
from lab.inspect import Address, FdbEntry, Link, Neighbour, Route, Snapshot


def replay(plan: Any) -> dict[str, Snapshot]:
    """Apply the plan's ops to empty records, as the engine applies them to the kernel."""
    lab = plan.addresses.lab
    snaps: dict[str, Snapshot] = {}
    netnsid: dict[tuple[str, str], int] = {}    # ids a namespace gives the others it sees, in order

    def snap(ns: str) -> Snapshot:
        return snaps[ns]

    def add_link(ns: str, name: str, kind: str, mtu: int, mac: str | None, **kw: Any) -> Link:
        s = snap(ns)
        link = Link(len(s.links) + 1, name, kind, "UP,LOWER_UP", mtu, mac or stable_mac(lab, ns, name), **kw)
        s.links.append(link)
        return link

    def nsid(ns: str, other: str) -> int:
        key = (ns, other)
        if key not in netnsid:
            netnsid[key] = sum(1 for k in netnsid if k[0] == ns)
        return netnsid[key]

    for op in O.ordered(plan.ops):
        if isinstance(op, O.CreateNamespace):
            snaps[op.ns] = Snapshot(op.ns, links=[Link(1, "lo", "loopback", "UP,LOWER_UP", 65536,
                                                      "00:00:00:00:00:00")])
        elif isinstance(op, O.CreateBridge):
            add_link(op.ns, op.name, "bridge", op.mtu, op.mac)
        elif isinstance(op, O.CreateVeth):
            a = add_link(op.ns, op.name, "veth", op.mtu, op.mac, master=op.master, alias=op.alias)
            b = add_link(op.peer_ns, op.peer, "veth", op.mtu, op.peer_mac)
            a.peer_index, a.peer_netnsid = b.index, nsid(op.ns, op.peer_ns)
            b.peer_index, b.peer_netnsid = a.index, nsid(op.peer_ns, op.ns)
            if op.master:
                snap(op.ns).fdb.append(FdbEntry(op.name, a.mac, None, op.master, True, False))
        elif isinstance(op, O.CreateVxlan):
            add_link(op.ns, op.name, "vxlan", op.mtu, op.mac,
                     vxlan={"id": op.vni, "local": str(op.local), "port": op.port, "learning": op.learning,
                            "dev": op.dev})
        elif isinstance(op, O.SetMaster):
            snap(op.ns).link(op.name).master = op.master  # type: ignore[union-attr]
        elif isinstance(op, O.AddAddress):
            s = snap(op.ns)
            s.addresses.append(Address(op.dev, str(op.address)))
            net = op.address.network
            if op.address.network.prefixlen < 32:
                s.routes.append(Route(str(net), "main", "unicast", None, op.dev, "link", 2, src=str(op.address.ip)))
            s.routes.append(Route(f"{op.address.ip}/32", "local", "local", None, op.dev, "host", 2,
                                  src=str(op.address.ip)))
        elif isinstance(op, O.AddRoute):
            dst = "default" if op.dst.prefixlen == 0 else str(op.dst)
            scope = op.scope or ("global" if op.via or op.blackhole else "link")
            snap(op.ns).routes.append(Route(dst, "main", "blackhole" if op.blackhole else "unicast",
                                            str(op.via) if op.via else None, op.dev or _dev_for(snap(op.ns), op.via),
                                            scope, 3, op.onlink, str(op.src) if op.src else None))
        elif isinstance(op, O.DelRoute):
            s = snap(op.ns)
            s.routes = [r for r in s.routes if not (r.table == "main" and r.dst == str(op.dst) and r.dev == op.dev)]
        elif isinstance(op, O.AddNeighbour):
            snap(op.ns).neighbours.append(Neighbour(op.dev, str(op.address), op.mac, "PERMANENT"))
        elif isinstance(op, O.AddFdb):
            snap(op.ns).fdb.append(FdbEntry(op.dev, op.mac, str(op.dst), None, True, True))
        elif isinstance(op, O.SetSysctl):
            snap(op.ns).sysctls[op.key] = op.value
        elif isinstance(op, O.SetSysctls):
            snap(op.ns).sysctls.update(op.settings)
    return snaps


def _dev_for(s: Snapshot, via: Any) -> str | None:
    """The device a gateway is reached on: the one whose connected route holds it."""
    if via is None:
        return None
    for r in s.routes:
        if r.table == "main" and r.scope == "link" and r.dst != "default" and ip_address(via) in ip_network(r.dst):
            return r.dev
    return None
