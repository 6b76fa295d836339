"""Why can't A reach B? A walk of the packet's path over the lab's kernel state, in plain words.

The walk reads only what the kernel holds (lab.inspect snapshots of every namespace): routes,
addresses, link states, bridge ports, neighbours, the VXLAN FDB and the forwarding sysctl. It
needs the lab's design for two things the snapshots cannot say on their own: which namespace
is which machine (for the words) and where each veth cable leads (its two ends' names).

It finds the first thing in the way ("node2 has no route to 10.244.0.0/24, node1's pod
block"), on the way there and then on the way back. It knows nothing of firewalls or MTU;
when it finds nothing in the way it says so, and the caller tells what the probe saw.
Pure: no kernel access here, so it is tested with hand-made snapshots.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, ip_interface, ip_network

from lab.inspect import Link, Route, Snapshot

MAX_HOPS = 16
ROUTABLE = ("unicast", "blackhole", "unreachable", "prohibit")

Dev = tuple[str, str]   # (namespace, interface)


@dataclass
class World:
    """The lab as the walk sees it."""
    snaps: dict[str, Snapshot]                     # netns -> its kernel state
    names: dict[str, str]                          # netns -> "node2", "pod web-1", "the VPC router", ...
    wires: dict[Dev, Dev] = field(default_factory=dict)  # each veth end -> the other end (both ways)
    blocks: dict[str, IPv4Network] = field(default_factory=dict)   # node name -> its pod block
    cable_of: dict[Dev, str] = field(default_factory=dict)         # a veth end -> "pod web-2's host end"
    bridge_of: dict[Dev, str] = field(default_factory=dict)        # a veth end -> the bridge it must be a port of

    def name(self, ns: str) -> str:
        return self.names.get(ns, ns)

    def holder(self, ip: IPv4Address) -> Dev | None:
        """Which (namespace, device) holds address `ip`, per the kernel."""
        for ns, snap in self.snaps.items():
            for a in snap.addresses:
                if ip_interface(a.address).ip == ip:
                    return ns, a.dev
        return None

    def describe_ip(self, ip: IPv4Address) -> str:
        """'10.244.0.0/24, node1's pod block' where the address falls in one; else the address."""
        for node, block in self.blocks.items():
            if ip in block:
                return f"{block}, {node}'s pod block"
        return str(ip)


@dataclass(frozen=True)
class Walk:
    ok: bool
    reason: str | None          # the first problem, in words; None when the path is clear
    hops: tuple[str, ...]       # the machines passed, in order


def is_up(link: Link | None) -> bool:
    return link is not None and link.state.split(",")[0] == "UP"


def forwarding(snap: Snapshot) -> bool:
    return snap.sysctls.get("net.ipv4.ip_forward", "1") != "0"


def local_ip(snap: Snapshot, ip: IPv4Address) -> str | None:
    """The device holding `ip` in this namespace (up), or None."""
    for a in snap.addresses:
        if ip_interface(a.address).ip == ip and (a.dev == "lo" or is_up(snap.link(a.dev))):
            return a.dev
    return None


def lookup(snap: Snapshot, ip: IPv4Address) -> Route | None:
    """The main table's longest-prefix match for `ip` (the kernel's choice, metrics aside)."""
    best: Route | None = None
    best_len = -1
    for r in snap.routes_in("main"):
        if r.type not in ROUTABLE:
            continue
        net = ip_network("0.0.0.0/0" if r.dst == "default" else r.dst, strict=False)
        if ip in net and net.prefixlen > best_len:
            best, best_len = r, net.prefixlen
    return best


def walk(world: World, src_ns: str, dst_ip: IPv4Address) -> Walk:
    """Follow a packet from namespace `src_ns` towards `dst_ip` until it arrives or stops."""
    ns = src_ns
    hops = [world.name(ns)]
    first = True
    for _ in range(MAX_HOPS):
        snap = world.snaps.get(ns)
        if snap is None:
            return Walk(False, f"cannot read the state of {world.name(ns)}", tuple(hops))
        who = world.name(ns)
        if local_ip(snap, dst_ip):
            return Walk(True, None, tuple(hops))
        if not first and not forwarding(snap):
            return Walk(False, f"{who} does not forward packets (net.ipv4.ip_forward = 0): "
                               f"it drops what it should pass on", tuple(hops))
        route = lookup(snap, dst_ip)
        if route is None:
            return Walk(False, f"{who} has no route to {world.describe_ip(dst_ip)}", tuple(hops))
        if route.type != "unicast":
            return Walk(False, f"{who} has a {route.type} route for {route.dst}, so it drops packets "
                               f"to {dst_ip}", tuple(hops))
        dev = snap.link(route.dev or "")
        if dev is None:
            return Walk(False, f"{who}'s route to {route.dst} uses {route.dev}, which does not exist",
                        tuple(hops))
        if not is_up(dev):
            return Walk(False, f"{who}'s {dev.name} is down (its route to {route.dst} goes through it)",
                        tuple(hops))
        nexthop = IPv4Address(route.gateway) if route.gateway else dst_ip
        if dev.kind == "vxlan":
            nxt, problem = _vxlan(world, ns, dev, nexthop)
        else:
            nxt, problem = _switch(world, ns, dev.name, nexthop)
        if problem:
            return Walk(False, problem, tuple(hops))
        assert nxt is not None
        ns = nxt
        hops.append(world.name(ns))
        first = False
    return Walk(False, f"the packet to {dst_ip} loops ({' -> '.join(hops[:6])} ...)", tuple(hops))


def _ports(snap: Snapshot, bridge: str) -> list[Link]:
    return [l for l in snap.links if l.master == bridge]


def _switch(world: World, ns: str, out_dev: str, nexthop: IPv4Address) -> tuple[str | None, str | None]:
    """Ethernet from (ns, out_dev) to whoever holds `nexthop`: across veth cables and bridges."""
    target = world.holder(nexthop)
    who = world.name(ns)
    if target is None:
        return None, f"{who} sends to {nexthop} on {out_dev}, but no machine in the lab has that address"
    # Breadth-first over the L2 graph, starting with the frame leaving (ns, out_dev).
    start = world.snaps[ns].link(out_dev)
    queue: deque[Dev] = deque()
    seen: set[Dev] = set()
    if start is not None and start.kind == "bridge":
        queue += [(ns, p.name) for p in _ports(world.snaps[ns], out_dev) if is_up(p)]
        if target == (ns, out_dev):
            return ns, None
    else:
        queue.append((ns, out_dev))
    while queue:
        here = queue.popleft()
        if here in seen:
            continue
        seen.add(here)
        peer = world.wires.get(here)
        if peer is None:
            continue
        pns, pdev = peer
        psnap = world.snaps.get(pns)
        plink = psnap.link(pdev) if psnap else None
        if not is_up(plink):
            continue
        assert plink is not None and psnap is not None
        if plink.master:
            bridge = psnap.link(plink.master)
            if not is_up(bridge):
                continue
            if target == (pns, plink.master):
                return pns, None
            queue += [(pns, p.name) for p in _ports(psnap, plink.master) if p.name != pdev and is_up(p)]
        elif target == peer:
            return pns, None
    return None, _why_unswitched(world, ns, out_dev, nexthop, target)


def _why_unswitched(world: World, ns: str, out_dev: str, nexthop: IPv4Address, target: Dev) -> str:
    """The frame found no way to `target`: say what is wrong near it (or near us)."""
    tns, tdev = target
    owner = world.name(tns)
    tsnap = world.snaps[tns]
    tlink = tsnap.link(tdev)
    if not is_up(tlink):
        return f"{owner}'s {tdev} (which holds {nexthop}) is down"
    # Check both ends of the cables next to the target and next to us.
    for end in _cable_ends(world, target) + _cable_ends(world, (ns, out_dev)):
        problem = _end_problem(world, end)
        if problem:
            return problem
    return f"{world.name(ns)} cannot reach {nexthop} ({owner}) over {out_dev}: they are not on one network"


def _cable_ends(world: World, dev: Dev) -> list[Dev]:
    """The veth ends near `dev`: its own cable, or the cables plugged into it if it is a bridge."""
    ns, name = dev
    link = world.snaps[ns].link(name)
    if link is not None and link.kind == "bridge":
        ends = [(ns, p.name) for p in _ports(world.snaps[ns], name)]
    else:
        ends = [dev]
    out = []
    for end in ends:
        out.append(end)
        if end in world.wires:
            out.append(world.wires[end])
    return out


def _end_problem(world: World, end: Dev) -> str | None:
    ns, name = end
    snap = world.snaps.get(ns)
    if snap is None:
        return None
    link = snap.link(name)
    what = world.cable_of.get(end)
    label = f"{name} ({what})" if what else name
    if link is None:
        return f"{world.name(ns)} has no interface {label}"
    if not is_up(link):
        return f"{world.name(ns)}'s {label} is down"
    expected = world.bridge_of.get(end)
    if expected and link.master != expected:
        where = f"attached to {link.master}" if link.master else "not attached to any bridge"
        return f"on {world.name(ns)}, {label} is {where}: it must be a port of bridge {expected}"
    if link.master and not is_up(snap.link(link.master)):
        return f"{world.name(ns)}'s bridge {link.master} is down"
    return None


def _vxlan(world: World, ns: str, dev: Link, nexthop: IPv4Address) -> tuple[str | None, str | None]:
    """Through a VXLAN device: neighbour (VTEP MAC) -> FDB (remote node) -> the underlay -> the remote VTEP."""
    snap = world.snaps[ns]
    who = world.name(ns)
    vtep = _vtep_owner(world, nexthop)
    remote = f" ({vtep}'s VTEP)" if vtep else ""
    neigh = next((n for n in snap.neighbours if n.dev == dev.name and n.address == str(nexthop)
                  and n.mac and "FAILED" not in n.state and "INCOMPLETE" not in n.state), None)
    if neigh is None:
        return None, (f"{who} has no neighbour entry for {nexthop}{remote} on {dev.name}: {dev.name} does not "
                      f"learn (nolearning), so without it {who} cannot address the VXLAN frame")
    entry = next((f for f in snap.fdb if f.dev == dev.name and f.mac == neigh.mac and f.dst), None)
    if entry is None:
        return None, (f"{who}'s {dev.name} has no FDB entry for {neigh.mac}{remote}: it does not know which "
                      f"node to send that VTEP's frames to")
    underlay_dst = IPv4Address(entry.dst)
    # The encapsulated packet is the node's own UDP traffic: walk it over the underlay.
    outer = walk(world, ns, underlay_dst)
    if not outer.ok:
        return None, f"{who} cannot send VXLAN packets to {underlay_dst}: {outer.reason}"
    holder = world.holder(underlay_dst)
    assert holder is not None
    rns = holder[0]
    rsnap = world.snaps[rns]
    rdev = next((l for l in rsnap.links if l.kind == "vxlan" and l.vxlan and dev.vxlan
                 and l.vxlan.get("id") == dev.vxlan.get("id")), None)
    rwho = world.name(rns)
    if rdev is None:
        return None, f"{rwho} has no VXLAN device with VNI {dev.vxlan.get('id') if dev.vxlan else '?'} to receive it"
    if not is_up(rdev):
        return None, f"{rwho}'s {rdev.name} is down, so it drops the VXLAN packets {who} sends"
    if rdev.mac != neigh.mac:
        return None, (f"{who} sends to VTEP MAC {neigh.mac}, but {rwho}'s {rdev.name} has MAC {rdev.mac}: "
                      f"the neighbour entry for {nexthop} on {who} is wrong")
    return rns, None


def _vtep_owner(world: World, ip: IPv4Address) -> str | None:
    holder = world.holder(ip)
    return world.name(holder[0]) if holder else None


def diagnose(world: World, src_ns: str, src_ip: IPv4Address, dst_ip: IPv4Address) -> str | None:
    """The first problem on the way to dst_ip and, if there is none, on the way back; None if clear."""
    there = walk(world, src_ns, dst_ip)
    if not there.ok:
        return there.reason
    dst = world.holder(dst_ip)
    if dst is None:
        return None
    back = walk(world, dst[0], src_ip)
    if not back.ok:
        return f"the answer cannot come back: {back.reason}"
    return None
