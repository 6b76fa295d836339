"""A picture of the topology drawn in the terminal: the underlay switch, each node with its
bridges, the veth pairs to its pods, its VXLAN device and the tunnels its FDB points at.

The drawing comes from the kernel's records (Snapshots of the underlay and every node), so a
deleted FDB entry or veth disappears from it; names and pod addresses come from the cluster.

    underlay br0 192.168.56.0/24
    ┃
    ┣━ node1:eth0 ╭ node1 192.168.56.11 ─────────────╮
    ┃             │ cni0 10.244.0.1/24               │
    ┃             │ ├ veth1a2b3c4d ═ busybox .0.2    │
    ┃             │ flannel.1 vni 1 ⇄ node2          │
    ┃             ╰──────────────────────────────────╯
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from rich.text import Text

from lab.inspect import Link, Snapshot

from tui.source import Cluster, Entity, Peer

PODS_SHOWN = 12         # per bridge; the rest is counted
NODES_SHOWN = 12        # and the selected one: a map of 50 nodes is read slowly and scrolled through in vain


@dataclass
class Port:
    iface: str
    peer: Peer | None
    ip: str | None = None
    state: str = ""


@dataclass
class Bridge:
    name: str
    addresses: list[str]
    ports: list[Port] = field(default_factory=list)


@dataclass
class Tunnel:
    dev: str
    vni: int | None
    remotes: list[str]            # node names (or VTEP addresses no node has)


@dataclass
class Box:
    entity: Entity
    uplinks: list[str]            # "eth0 192.168.56.11/24"
    bridges: list[Bridge]
    tunnels: list[Tunnel]
    loose: list[Port]             # veths to pods not on a bridge (L3 CNIs route to them directly)
    error: str | None = None
    host_pods: list[str] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)   # "10.244.1.0/24 via node2": routes to other machines


@dataclass
class Model:
    cluster: Cluster
    switch: Bridge | None
    router: list[str]
    boxes: list[Box]
    outside: list[Box]


def shown_nodes(cluster: Cluster, focus: str | None = None) -> list[Entity]:
    """The nodes the map draws: the first NODES_SHOWN, and the focused one (a node, or a pod's node)."""
    nodes = list(cluster.nodes[:NODES_SHOWN])
    extra = next((n for n in cluster.nodes[NODES_SHOWN:] if n.name == focus), None)
    return nodes + [extra] if extra else nodes


def build(cluster: Cluster, snaps: dict[str, Snapshot | str],
          peer: Callable[[Entity, Link], Peer | None], focus: str | None = None) -> Model:
    """snaps: entity name -> its Snapshot (or an error text) for the underlay, the nodes and outside hosts."""
    by_ip = {e.ip: e.name for e in cluster.nodes if e.ip}
    pod_ip = {p.name: p.ip for ps in cluster.pods.values() for p in ps}
    u = snaps.get("underlay")
    switch = None
    if isinstance(u, Snapshot):
        br = next((l for l in u.links if l.kind == "bridge"), None)
        if br is not None:
            switch = Bridge(br.name, [a.address for a in u.addresses if a.dev == br.name],
                            [Port(l.name, peer(cluster.underlay, l), state=l.state)
                             for l in u.links if l.master == br.name])

    def box(e: Entity) -> Box:
        s = snaps.get(e.name)
        if not isinstance(s, Snapshot):
            return Box(e, [], [], [], [], error=s or "not read")
        addrs = {l.name: [a.address for a in s.addresses if a.dev == l.name] for l in s.links}
        bridges = [Bridge(l.name, addrs[l.name]) for l in s.links if l.kind == "bridge"]
        named = {b.name: b for b in bridges}
        loose = []
        uplinks = []
        for l in s.links:
            if l.kind != "veth":
                continue
            p = peer(e, l)
            port = Port(l.name, p, pod_ip.get(p.entity) if p else None, l.state)
            if l.master in named:
                named[l.master].ports.append(port)
            elif p is not None and p.entity == "underlay":
                uplinks.append(f"{l.name} {' '.join(addrs[l.name])}".strip())
            else:
                loose.append(port)
        tunnels = []
        for l in s.links:
            if l.kind != "vxlan":
                continue
            remotes = [by_ip.get(f.dst, f.dst) for f in s.fdb if f.dev == l.name and f.dst]
            tunnels.append(Tunnel(l.name, (l.vxlan or {}).get("id"), sorted(set(remotes), key=str)))
        host = [p.name for p in cluster.pods.get(e.name, ()) if p.detail == "hostNetwork"]
        return Box(e, uplinks, bridges, tunnels, loose, host_pods=host, routes=machine_routes(s, by_ip))

    router = machine_routes(u, by_ip) if isinstance(u, Snapshot) else []
    return Model(cluster, switch, router, [box(n) for n in shown_nodes(cluster, focus)],
                 [box(h) for h in cluster.outside])


def machine_routes(s: Snapshot, by_ip: dict[str, str]) -> list[str]:
    """Routes that send a block to another machine (host-gw, the VPC router): the L3 designs' wiring."""
    return [f"{r.dst} via {by_ip[r.gateway]}" for r in s.routes
            if r.table == "main" and r.gateway in by_ip and r.dst != "default"]


def _box_lines(b: Box) -> list[Text]:
    lines: list[Text] = []
    if b.error:
        return [Text(b.error, style="red")]
    for br in b.bridges:
        lines.append(Text.assemble((br.name, "bold yellow"), (" bridge ", "dim"), " ".join(br.addresses)))
        shown = br.ports[:PODS_SHOWN]
        for i, p in enumerate(shown):
            last = i == len(shown) - 1 and len(br.ports) <= PODS_SHOWN
            lines.append(_port_line("└ " if last else "├ ", p))
        if len(br.ports) > PODS_SHOWN:
            lines.append(Text(f"└ … {len(br.ports) - PODS_SHOWN} more veths", style="dim"))
    for p in b.loose:
        lines.append(_port_line("", p))
    for t in b.tunnels:
        remotes = ", ".join(t.remotes) if t.remotes else "no FDB entries: no tunnel"
        lines.append(Text.assemble((t.dev, "bold magenta"), (f" vni {t.vni} ", "dim"), ("⇄ ", "magenta"),
                                   (remotes, "magenta" if t.remotes else "red")))
    for r in b.routes:
        lines.append(Text.assemble(("→ ", "green"), r))
    if b.host_pods:
        lines.append(Text.assemble(("hostNetwork: ", "magenta"), ", ".join(b.host_pods)))
    if not lines:
        lines.append(Text("no bridge, no pod veths", style="dim"))
    return lines


def _port_line(branch: str, p: Port) -> Text:
    t = Text(branch, style="dim")
    t.append(p.iface)
    t.append(" ═ ", style="cyan")
    if p.peer is not None:
        t.append(f"{p.peer.entity}", style="bold")
        t.append(f":{p.peer.iface}", style="dim")
        if p.ip:
            t.append(f" {p.ip}")
    else:
        t.append("? (not made by podlab)", style="red")
    if "LOWER_UP" not in p.state:
        t.append(" down", style="red")
    return t


def draw(model: Model, width: int = 80) -> Text:
    c = model.cluster
    out = Text()
    out.append(f"lab {c.lab} · {c.mode} · {len(c.nodes)} nodes, {c.pod_count} pods\n", style="bold")
    sw = model.switch
    head = f"underlay {sw.name if sw else '(no switch)'} {c.underlay.detail}"
    out.append(head + "\n", style="bold yellow")
    for r in model.router:
        out.append(f"┃ router → {r}\n", style="green")
    ports = {p.peer.entity: p for p in sw.ports if p.peer} if sw else {}
    boxes = model.boxes + model.outside
    widest = max([len(l.plain) for b in boxes for l in _box_lines(b)]
                 + [len(b.entity.name) + len(", ".join(b.uplinks)) + 5 for b in boxes], default=20)
    stub = min(9, max((len(p.iface) for p in ports.values()), default=4))
    inner = max(24, min(width - stub - 8, widest + 2))      # between the box's two borders
    for i, b in enumerate(boxes):
        last = i == len(boxes) - 1
        port = ports.get(b.entity.name)
        connector = Text("┗━" if last else "┣━", style="yellow")
        connector.append(f" {port.iface if port else 'no port':<{stub}.{stub}} ", style="yellow" if port else "red")
        indent = Text("  " if last else "┃ ", style="yellow") + Text(" " * (len(connector.plain) - 2))
        title = f" {b.entity.name} "[:inner - 1]
        uplink = (f" {', '.join(b.uplinks)} " if b.uplinks else "")[:max(0, inner - 1 - len(title))]
        top = Text("╭─", style="blue")
        top.append(title, style="bold")
        top.append(uplink, style="dim")
        top.append("─" * (inner - 1 - len(title) - len(uplink)) + "╮", style="blue")
        out.append(connector + top + "\n")
        for line in _box_lines(b):
            line = line.copy()
            line.truncate(inner - 2, overflow="ellipsis")
            row = indent + Text("│ ", style="blue") + line
            row.append(" " * (inner - 2 - len(line.plain)) + " │", style="blue")
            out.append(row + "\n")
        out.append(indent + Text("╰" + "─" * inner + "╯", style="blue") + "\n")
    hidden = len(c.nodes) - len(model.boxes)
    if hidden > 0:
        out.append(f"… and {hidden} more nodes (select one in the tree to draw it here)\n", style="dim")
    out.append("═ veth pair  ⇄ VXLAN tunnel (FDB)  ━ switch port", style="dim")
    return out
