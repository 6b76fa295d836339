"""A preview of a design without root: the records the kernel would hold after `podlab up`.

`PlanSource` replays a topology's plan (pure data) into the same Snapshot records that
lab.inspect reads from the kernel: links with their masters and veth peers, addresses, the
routes the kernel adds for them, the plan's routes, neighbours and FDB entries. Nothing runs
and nothing is read from a kernel, and the screens say so. `podlab tui --preview TOPOLOGY`
uses it to explore a design before bringing it up; the snapshot tests use it because its
data never changes (MACs are derived from names, not random).
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from ipaddress import IPv4Interface
from typing import Any

from lab import designs
from lab import ops as O
from lab.addressing import stable_mac
from lab.errors import PodlabError
from lab.inspect import Address, FdbEntry, Link, Neighbour, Route, Snapshot

from tui.source import (Cluster, ContainerRow, Entity, Peer, Workload, command_for, owners, peer_of,
                        split_destination, veth_map)

NOT_LIVE = "preview of a plan: nothing runs here (bring the lab up to send packets)"


class PlanSource:
    live = False

    def __init__(self, plan: Any):
        self.plan = plan
        self.topology = plan.topology
        self.addresses = plan.addresses
        self._snaps = replay(plan)
        self._veths = veth_map(plan.ops)
        self._owners = owners(plan.addresses)
        self._cluster = self._build_cluster()

    @property
    def name(self) -> str:
        return self.topology.name

    def _build_cluster(self) -> Cluster:
        a, topo = self.addresses, self.topology
        gateway = designs.of(topo).backend.router
        underlay = Entity("underlay", "underlay", a.underlay_netns, None, str(a.router_ip) if gateway else None,
                          detail=f"{topo.node_subnet}" + (f", VPC router {a.router_ip}" if gateway else ""))
        nodes = tuple(Entity(n.name, "node", n.netns, None, str(n.ip), n.name, "planned", str(n.block))
                      for n in a.nodes)
        pods: dict[str, list[Entity]] = {n.name: [] for n in a.nodes}
        for p in a.pods:
            pods[p.node].append(Entity(p.name, "pod", p.netns, None, str(p.ip), p.node, "planned",
                                       "hostNetwork" if p.host_network else ""))
        outside = tuple(Entity(h.name, "outside", h.netns, None, str(h.ip)) for h in a.outside)
        mode = designs.of(topo).name
        return Cluster(topo.name, mode, topo.description, underlay, nodes, {k: tuple(v) for k, v in pods.items()},
                       outside, str(a.router_ip) if gateway else None)

    def cluster(self) -> Cluster:
        return self._cluster

    def snapshot(self, entity: Entity) -> Snapshot:
        return self._snaps[entity.netns]

    def peer(self, entity: Entity, link: Link) -> Peer | None:
        return peer_of(self._veths, self._owners, entity, link)

    def nft(self, entity: Entity) -> str:
        return ""

    def workload(self, entity: Entity) -> Workload:
        w = Workload(note=NOT_LIVE)
        pod = next((p for p in self.topology.pods if p.name == entity.name), None)
        if pod is not None:
            w.containers = [ContainerRow(c.name, c.image, c.workload, "planned", 0, None,
                                         ",".join(map(str, c.ports)) or "-") for c in pod.containers]
        return w

    def resolve(self, text: str) -> str:
        name = split_destination(text)[0]
        e = self._cluster.find(name)
        if e is not None and e.ip:
            return e.ip
        try:
            return str(IPv4Interface(name).ip)
        except ValueError:
            raise PodlabError(f"no pod, node or host named {name!r} in lab {self.name}") from None

    def entity(self, name: str) -> Entity:
        e = self._cluster.find(name.strip())
        if e is None:
            raise PodlabError(f"no pod, node or host named {name!r} in lab {self.name}")
        return e

    def command(self, kind: str, src: Entity, dst: str) -> list[str]:
        return command_for(kind, dst, self.resolve)

    def run(self, src: Entity, argv: list[str], started: Any = None) -> Iterator[str]:
        yield NOT_LIVE

    def trace(self, src: Entity, dst: str, proto: str = "icmp", port: int | None = None) -> Any:
        raise PodlabError(NOT_LIVE)

    def capture(self, entity: Entity, iface: str | None, bpf: str | None,
                stop: threading.Event) -> Iterator[Any]:
        raise PodlabError(NOT_LIVE)

    def shell_argv(self, entity: Entity) -> list[str]:
        raise PodlabError(NOT_LIVE)


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
    from ipaddress import ip_address, ip_network
    for r in s.routes:
        if r.table == "main" and r.scope == "link" and r.dst != "default" and ip_address(via) in ip_network(r.dst):
            return r.dev
    return None
