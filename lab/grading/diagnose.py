"""Why can't A reach B? lab.packets' walk of the path, in a student's words.

The walk (lab.packets.walk, what `podlab explain` runs) follows the packet through the kernel
state of every namespace it crosses and stops at the first thing in the way, with the facts
of it (its Cause); the answer is walked back the same way. Here those facts become a sentence
that names machines as the course does ("node2 has no route to 10.244.0.0/24, node1's pod
block"). The lab's design adds what the kernel cannot say: which namespace is which machine,
each node's pod block, and where each veth cable leads and which bridge its end must be a
port of, so a frame that finds nobody is traced to the cable that is cut, missing, down or
unplugged. Stops the course has no words of its own for keep the walk's reason.
Pure over a View: tested with snapshots (lab.packets.view.SnapshotView).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, ip_interface

from lab.errors import PodlabError
from lab.inspect import Snapshot
from lab.packets import frames
from lab.packets.explain import request_packet, walk_both
from lab.packets.view import View, up
from lab.packets.walk import Cause, Outcome, route_error

LOOP_SHOWN = 6      # machines named in a loop's sentence

Dev = tuple[str, str]   # (namespace, interface)


@dataclass
class World:
    """The lab's design, as the words need it."""
    names: dict[str, str]                          # netns -> "node2", "pod web-1", "the VPC router", ...
    wires: dict[Dev, Dev] = field(default_factory=dict)  # each veth end -> the other end (both ways)
    blocks: dict[str, IPv4Network] = field(default_factory=dict)   # node name -> its pod block
    cable_of: dict[Dev, str] = field(default_factory=dict)         # a veth end -> "pod web-2's host end"
    bridge_of: dict[Dev, str] = field(default_factory=dict)        # a veth end -> the bridge it must be a port of

    def name(self, ns: str) -> str:
        return self.names.get(ns, ns)

    def describe_ip(self, ip: str) -> str:
        """'10.244.0.0/24, node1's pod block' where the address falls in one; else the address."""
        for node, block in self.blocks.items():
            if IPv4Address(ip) in block:
                return f"{block}, {node}'s pod block"
        return ip

    def label(self, end: Dev) -> str:
        """'vetha (pod a's host end)', or just the interface's name."""
        what = self.cable_of.get(end)
        return f"{end[1]} ({what})" if what else end[1]


def diagnose(view: View, world: World, src_ns: str, src_ip: str, dst_ip: str) -> str | None:
    """The first problem on the way to dst_ip (an ICMP echo) and, if there is none, on the way
    back; None if the walk finds the path clear."""
    out, back = walk_both(view, src_ns, request_packet(src_ip, dst_ip, "icmp", None, frames.default_size("icmp")))
    return words(view, world, out, back, src_ip, dst_ip)


def words(view: View, world: World, out: Outcome, back: Outcome | None, src_ip: str, dst_ip: str) -> str | None:
    """The walk's outcome (request, and reply if the request arrived) as a sentence; None if both arrive."""
    if not out.delivered:
        return _stop(view, world, out, dst_ip)
    if back is not None and not back.delivered:
        return f"the answer cannot come back: {_stop(view, world, back, src_ip)}"
    return None


def _stop(view: View, world: World, o: Outcome, dst: str) -> str:
    ns = o.ns or ""
    who, c = world.name(ns), o.cause
    if c is None:
        return f"dropped at {who}: {o.reason}"
    match c.kind:
        case "no-route":
            return f"{who} has no route to {world.describe_ip(c.ip or dst)}"
        case "refused" if c.route is not None:
            return f"{who} has a {c.route.type} route for {c.route.prefix}, so it drops packets to {c.ip}"
        case "forwarding-off" if c.dev:
            return (f"{who} does not forward packets that arrive on {c.dev} "
                    f"(net.ipv4.conf.{c.dev}.forwarding = 0)")
        case "forwarding-off":
            return f"{who} does not forward packets (net.ipv4.ip_forward = 0): it drops what it should pass on"
        case "down":
            return _down(view, world, (c.ns or ns, c.dev or ""))
        case "unreached":
            return _unreached(view, world, ns, c)
        case "no-neighbour":
            return (f"{who} has no neighbour entry for {c.ip}{_vtep_of(view, world, c.ip)} on {c.dev}: {c.dev} "
                    f"does not learn (nolearning), so without it {who} cannot address the VXLAN frame")
        case "no-fdb":
            return (f"{who}'s {c.dev} has no FDB entry for {c.mac}{_vtep_of(view, world, c.ip)}: it does not "
                    f"know which node to send that VTEP's frames to")
        case "vtep-route" if c.route is not None and c.ip:
            return f"{who} cannot send VXLAN packets to {c.ip}: {route_error(c.route, c.ip)}"
        case "wrong-vtep-mac":
            return _wrong_vtep_mac(view, world, ns, c)
        case "no-proxy-arp" | "not-learned" | "no-blackhole":
            return o.reason or f"dropped at {who}"        # Calico's words already name the machines
        case "loop":
            machines = [world.name(h.netns) for h in o.hops]
            passed = [m for i, m in enumerate(machines) if i == 0 or machines[i - 1] != m]
            return f"the packet to {dst} loops ({' -> '.join(passed[:LOOP_SHOWN])} ...)"
    return f"dropped at {who}: {o.reason}"


def _state(view: View, ns: str) -> Snapshot | None:
    """A namespace's kernel state, or None when it cannot be read (it is gone)."""
    try:
        return view.state(ns)
    except (OSError, PodlabError):
        return None


def _wrong_vtep_mac(view: View, world: World, ns: str, c: Cause) -> str:
    sender = view.holder(c.ip) if c.ip else None
    by = world.name(sender) if sender else "the sending node"
    snap = _state(view, ns)
    dev = snap.link(c.dev or "") if snap else None
    who = world.name(ns)
    return (f"{by} sends to VTEP MAC {c.mac}, but {who}'s {c.dev} has MAC {dev.mac if dev else '?'}: "
            f"the neighbour entry for {who}'s VTEP on {by} is wrong")


def _down(view: View, world: World, end: Dev) -> str:
    snap = _state(view, end[0])
    link = snap.link(end[1]) if snap else None
    what = f"bridge {end[1]}" if link is not None and link.kind == "bridge" else world.label(end)
    return f"{world.name(end[0])}'s {what} is down"


def _vtep_of(view: View, world: World, ip: str | None) -> str:
    holder = view.holder(ip) if ip else None
    return f" ({world.name(holder)}'s VTEP)" if holder else ""


def _holder(view: View, world: World, ip: str | None, mac: str | None) -> Dev | None:
    """Which (namespace, device) holds address `ip` (or MAC `mac`), per the kernel; the
    namespace the design gives the address to is asked first."""
    hint = view.holder(ip) if ip else None
    for ns in ([hint] if hint else []) + [n for n in world.names if n != hint]:
        snap = _state(view, ns)
        if snap is None:
            continue
        for a in snap.addresses:
            if ip is not None and str(ip_interface(a.address).ip) == ip:
                return ns, a.dev
        for link in snap.links:
            if mac is not None and (link.mac or "").lower() == mac.lower():
                return ns, link.name
    return None


def _unreached(view: View, world: World, ns: str, c: Cause) -> str:
    """A frame from (ns, c.dev) found nobody to take it: say what is wrong near its target (or near us)."""
    who, dev, wanted = world.name(ns), c.dev or "", c.ip or c.mac or "?"
    target = _holder(view, world, c.ip, c.mac)
    if target is None:
        return f"{who} sends to {wanted} on {dev}, but no machine in the lab has that address"
    tns, tdev = target
    owner = world.name(tns)
    tsnap = _state(view, tns)
    tlink = tsnap.link(tdev) if tsnap else None
    if tlink is None or not up(tlink):
        return f"{owner}'s {tdev} (which holds {wanted}) is down"
    for end in _cable_ends(view, world, target) + _cable_ends(view, world, (ns, dev)):
        problem = _end_problem(view, world, end)
        if problem:
            return problem
    return f"{who} cannot reach {wanted} ({owner}) over {dev}: they are not on one network"


def _cable_ends(view: View, world: World, dev: Dev) -> list[Dev]:
    """The veth ends near `dev`: its own cable, or the cables plugged into it if it is a bridge."""
    ns, name = dev
    snap = _state(view, ns)
    link = snap.link(name) if snap else None
    if snap is not None and link is not None and link.kind == "bridge":
        ends = [(ns, p.name) for p in snap.links if p.master == name]
    else:
        ends = [dev]
    out = []
    for end in ends:
        out.append(end)
        if end in world.wires:
            out.append(world.wires[end])
    return out


def _end_problem(view: View, world: World, end: Dev) -> str | None:
    ns, name = end
    snap = _state(view, ns)
    if snap is None:
        return None
    link = snap.link(name)
    label = world.label(end)
    if link is None:
        return f"{world.name(ns)} has no interface {label}"
    if not up(link):
        return f"{world.name(ns)}'s {label} is down"
    expected = world.bridge_of.get(end)
    if expected and link.master != expected:
        where = f"attached to {link.master}" if link.master else "not attached to any bridge"
        return f"on {world.name(ns)}, {label} is {where}: it must be a port of bridge {expected}"
    bridge = snap.link(link.master) if link.master else None
    if link.master and (bridge is None or not up(bridge)):
        return f"{world.name(ns)}'s bridge {link.master} is down"
    return None
