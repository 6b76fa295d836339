"""A preview of a design without root: the TUI's Source over a plan's records.

`PlanSource` shows the Snapshot records lab.preview replays from a topology's plan (what the
kernel would hold after `podlab up`). Nothing runs and nothing is read from a kernel, and the
screens say so. `podlab tui --preview TOPOLOGY` uses it to explore a design before bringing it
up; the snapshot tests use it because its data never changes (MACs are derived from names).
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from ipaddress import IPv4Interface
from typing import Any

from lab import designs
from lab.bgp.cli import planned_birds
from lab.errors import PodlabError
from lab.inspect import Link, Snapshot
from lab.preview import replay

from tui.source import (Cluster, ContainerRow, Entity, Peer, Workload, command_for, owners, peer_of,
                        split_destination, veth_map)

NOT_LIVE = "preview of a plan: nothing runs here (bring the lab up to send packets)"


class PlanSource:
    live = False

    def changed(self) -> bool:
        return False      # a plan preview is read once

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
                       outside, str(a.router_ip) if gateway else None, frozenset(planned_birds(self.plan, topo.name)))

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

    def bgp(self, entity: Entity) -> dict:
        return {"node": entity.name, "error": f"{NOT_LIVE}: BIRD is not running", "peers": [], "protocols": []}

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
