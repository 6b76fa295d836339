"""Walk a packet through the lab with the kernel's own lookups, namespace by namespace.

At each step the walk does what the kernel would: a route lookup (with the input interface
for a forwarded packet), the neighbour entry of the next hop (or an ARP answer from whoever
holds that address on the link, or from the far end of a veth that answers for it by proxy, as
a Calico node's cali interface does for 169.254.1.1), the bridge FDB to pick a port, the VXLAN FDB to pick the
remote VTEP and the encapsulation that follows, then the veth into the next namespace. The
first thing that would stop the packet ends the walk, with the namespace and the reason:
no route, no neighbour/FDB entry, an interface down, forwarding off, a packet larger than
the MTU, an nft rule. Each hop carries the decision that sent the packet on. The stops a
caller words its own way (the graders' diagnosis) also carry their facts, as a Cause.
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass, replace
from ipaddress import IPv4Network

from lab.inspect import Link, Snapshot
from lab.packets import calico, l2, nft
from lab.packets.frames import DEFAULT_TTL, VXLAN_OVERHEAD
from lab.packets.result import Hop
from lab.packets.view import RouteAnswer, View, carrier, up

BROADCAST = "ff:ff:ff:ff:ff:ff"
ETH = 14
VLAN_SLACK = 4          # a veth or bridge port accepts MTU + Ethernet header + a VLAN tag
MAX_STEPS = 64
USABLE_NEIGH = ("REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT", "NOARP")
PROXY_ARP_OFF = "proxy_arp is off"      # the one refusal of proxy ARP that Calico's words name by itself


@dataclass(frozen=True)
class Encap:
    src: str
    dst: str
    dport: int
    vni: int
    ttl: int
    inner_mac: str         # the inner frame's destination MAC (the remote VTEP device's)


@dataclass(frozen=True)
class Packet:
    src: str
    dst: str
    proto: str                     # icmp | tcp | udp
    length: int
    ttl: int = DEFAULT_TTL
    sport: int | None = None
    dport: int | None = None
    kind: str = "request"          # request | reply
    df: bool = True
    encap: Encap | None = None

    @property
    def wire_length(self) -> int:
        return self.length + (VXLAN_OVERHEAD if self.encap else 0)

    def summary(self) -> str:
        if self.proto == "icmp":
            what = "ICMP echo-request" if self.kind == "request" else "ICMP echo-reply"
            src, dst = self.src, self.dst
        else:
            src = f"{self.src}:{self.sport}" if self.sport else self.src
            dst = f"{self.dst}:{self.dport}" if self.dport else self.dst
            what = self.proto.upper() + ((" [S]" if self.kind == "request" else " [S.]")
                                         if self.proto == "tcp" else "")
        text = f"{src} > {dst} {what} ttl {self.ttl} len {self.length}"
        if self.encap:
            e = self.encap
            text += f" | outer {e.src} > {e.dst} UDP {e.dport} VNI {e.vni}"
        return text

    def nft_view(self, iif: str | None, oif: str | None) -> nft.Packet:
        if self.encap:
            e = self.encap
            return nft.Packet(e.src, e.dst, "udp", None, e.dport, iif, oif)
        state = "new" if self.kind == "request" else "established"
        return nft.Packet(self.src, self.dst, self.proto, self.sport, self.dport, iif, oif, state)

    def reply(self) -> Packet:
        return Packet(self.dst, self.src, self.proto, self.length, DEFAULT_TTL, self.dport, self.sport,
                      "reply", self.df)


@dataclass(frozen=True)
class Cause:
    """What stopped the packet, as facts; the reason says it in the walk's words.

    kind: no-route, refused (a blackhole/unreachable/prohibit route), forwarding-off, down (an
    interface), unreached (a frame nobody beyond `dev` takes: no ARP answer, no bridge port
    leads there, or no interface here has that MAC), no-neighbour and no-fdb (a VXLAN device's
    entries), vtep-route (the remote VTEP has no route), wrong-vtep-mac, loop; in a Calico lab
    also no-proxy-arp (`dev` in `ns`, a pod's host end, does not answer ARP for `ip`, the pod's
    gateway), not-learned (BGP did not bring the block of node `ns` that holds `ip`) and
    no-blackhole (the node has neither a pod route nor its block's blackhole for `ip`).
    """
    kind: str
    dev: str | None = None             # the interface concerned
    ns: str | None = None              # its namespace, where that is not where the walk stopped
    ip: str | None = None              # the destination, the next hop, or the sending VTEP
    mac: str | None = None
    route: RouteAnswer | None = None   # the lookup that failed


@dataclass
class Outcome:
    hops: list[Hop]
    delivered: bool
    ns: str | None             # where it was delivered, or where it stopped
    reason: str | None
    iface: str | None = None   # for a packet larger than the MTU: the interface,
    mtu: int | None = None     # and the largest packet it lets through
    cause: Cause | None = None


class Stop(Exception):
    def __init__(self, delivered: bool, ns: str, reason: str | None = None, iface: str | None = None,
                 mtu: int | None = None, cause: Cause | None = None):
        super().__init__(reason or "delivered")
        self.delivered, self.ns, self.reason, self.iface, self.mtu = delivered, ns, reason, iface, mtu
        self.cause = cause

    def outcome(self, hops: list[Hop]) -> Outcome:
        return Outcome(hops, self.delivered, self.ns, self.reason, self.iface, self.mtu, self.cause)


def route_error(answer: RouteAnswer, dst: str) -> str:
    if answer.type in ("blackhole", "unreachable", "prohibit"):
        return f"the route to {dst} is a {answer.type} route ({answer.text()})"
    if answer.error == errno.ENETUNREACH:
        return f"no route to {dst}"
    if answer.error == errno.EXDEV:
        return "the reverse-path filter (rp_filter) rejects it"
    if answer.error == errno.ENODEV:
        return "the input interface is gone"
    return f"the route lookup for {dst} fails: {os.strerror(answer.error).lower()}"


def route_cause(answer: RouteAnswer, dst: str) -> Cause | None:
    if answer.type in ("blackhole", "unreachable", "prohibit"):
        return Cause("refused", ip=dst, route=answer)
    if answer.error == errno.ENETUNREACH:
        return Cause("no-route", ip=dst, route=answer)
    return None


class Walker:
    def __init__(self, view: View):
        self.view = view
        self.hops: list[Hop] = []
        self.steps = 0

    # ------------------------------------------------------------ entry

    def run(self, ns: str, pkt: Packet) -> Outcome:
        self.hops = []
        try:
            self._originate(ns, pkt)
        except Stop as s:
            return s.outcome(self.hops)
        return Outcome(self.hops, False, ns, "the walk ended without an answer")   # not reached

    def resume(self, ns: str, iif: str | None, pkt: Packet) -> Outcome:
        """The walk from the middle: `pkt` arriving in `ns` on `iif` (None: leaving it), e.g. as a
        trace saw it after a rewrite (DNAT) the walk itself does not make."""
        self.hops = []
        try:
            if iif:
                self._l3_input(ns, iif, pkt)
            else:
                self._originate(ns, pkt)
        except Stop as s:
            return s.outcome(self.hops)
        return Outcome(self.hops, False, ns, "the walk ended without an answer")   # not reached

    # ------------------------------------------------------------ helpers

    def _state(self, ns: str) -> Snapshot:
        return self.view.state(ns)

    def _hop(self, ns: str, iface: str, direction: str, pkt: Packet, decision: str | None = None) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise Stop(False, ns, f"a forwarding loop: more than {MAX_STEPS} hops", cause=Cause("loop"))
        ttl = pkt.ttl
        self.hops.append(Hop(ns, self.view.owner(ns), iface, direction, pkt.summary(), ttl, decision, 0.0))

    def _drop(self, ns: str, reason: str, cause: Cause | None = None) -> Stop:
        return Stop(False, ns, reason, cause=cause)

    def _route_drop(self, ns: str, answer: RouteAnswer, dst: str) -> Stop:
        reason = route_error(answer, dst)
        meaning = self._blackhole_meaning(ns, answer, dst)
        return self._drop(ns, f"{reason}: {meaning}" if meaning else reason, route_cause(answer, dst))

    def _decided(self, ns: str, answer: RouteAnswer) -> str:
        """The route taken, and where a BGP-learned one came from."""
        route = calico.entry(self._state(ns), answer.prefix, answer.table)
        learned = calico.learned_from(self.view.calico, route, answer.gateway, self.view.owner)
        return f"{answer.text()}, {learned}" if learned else answer.text()

    def _nft(self, ns: str, hooks: list[str], pkt: Packet, iif: str | None, oif: str | None) -> None:
        chains = self.view.nft_rules(ns)
        if not chains:
            return
        verdict = nft.judge(chains, hooks, pkt.nft_view(iif, oif))
        if verdict is not None:
            raise self._drop(ns, verdict.text())

    # ------------------------------------------------------------ layer 3

    def _originate(self, ns: str, pkt: Packet) -> None:
        """A packet the namespace sends itself (or the outer packet of its VXLAN device)."""
        src, dst = (pkt.encap.src, pkt.encap.dst) if pkt.encap else (pkt.src, pkt.dst)
        answer = self.view.route(ns, dst, src)
        if answer.error or answer.type == "error":
            self._calico_route(ns, dst, answer)
            raise self._route_drop(ns, answer, dst)
        if answer.type == "local":
            self._hop(ns, "lo", "out", pkt)
            raise Stop(True, ns)
        if answer.type != "unicast" or not answer.dev:
            raise self._route_drop(ns, answer, dst)
        self._calico_route(ns, dst, answer)
        if not pkt.encap:
            self._nft(ns, ["output", "postrouting"], pkt, None, answer.dev)
        self._transmit(ns, answer.dev, answer.gateway or dst, pkt, self._decided(ns, answer))

    def _l3_input(self, ns: str, iif: str, pkt: Packet) -> None:
        if pkt.encap:
            e = pkt.encap
            answer = self.view.route(ns, e.dst, e.src, iif)
            if answer.type == "local" and not answer.error:
                return self._decapsulate(ns, pkt)
        src, dst = (pkt.encap.src, pkt.encap.dst) if pkt.encap else (pkt.src, pkt.dst)
        answer = self.view.route(ns, dst, src, iif)
        if answer.type == "local" and not answer.error:
            self._nft(ns, ["prerouting", "input"], pkt, iif, None)
            raise Stop(True, ns)
        if answer.error or answer.type == "error":
            if answer.error == errno.EHOSTUNREACH and answer.type == "error":
                off = self._forwarding_off(ns, iif)
                if off:
                    raise off
            self._calico_route(ns, dst, answer)
            raise self._route_drop(ns, answer, dst)
        if answer.type != "unicast" or not answer.dev:
            raise self._route_drop(ns, answer, dst)
        self._calico_route(ns, dst, answer)
        self._nft(ns, ["prerouting", "forward", "postrouting"], pkt, iif, answer.dev)
        ttl = pkt.encap.ttl if pkt.encap else pkt.ttl
        if ttl <= 1:
            raise self._drop(ns, f"TTL exceeded (the packet arrived with TTL {ttl})")
        forwarded = replace(pkt, encap=replace(pkt.encap, ttl=ttl - 1)) if pkt.encap else replace(pkt, ttl=ttl - 1)
        self._transmit(ns, answer.dev, answer.gateway or dst, forwarded, self._decided(ns, answer))

    def _forwarding_off(self, ns: str, iif: str) -> Stop | None:
        """The stop for what arrives on iif, if forwarding is off."""
        if self.view.sysctl(ns, "net.ipv4.ip_forward") == "0":
            return self._drop(ns, "forwarding is off (net.ipv4.ip_forward = 0): it does not route packets",
                              Cause("forwarding-off"))
        if self.view.sysctl(ns, f"net.ipv4.conf.{iif}.forwarding") == "0":
            return self._drop(ns, f"forwarding is off on {iif} (net.ipv4.conf.{iif}.forwarding = 0)",
                              Cause("forwarding-off", dev=iif))
        return None

    def _decapsulate(self, ns: str, pkt: Packet) -> None:
        e = pkt.encap
        assert e is not None
        snap = self._state(ns)
        dev = next((l for l in snap.links if l.kind == "vxlan" and l.vxlan and l.vxlan.get("port") == e.dport
                    and l.vxlan.get("id") == e.vni), None)
        if dev is None:
            raise self._drop(ns, f"VXLAN (UDP {e.dport}, VNI {e.vni}) arrives, but no VXLAN device here "
                                 f"has that port and VNI")
        if not up(dev):
            raise self._drop(ns, f"interface {dev.name} is down", Cause("down", dev=dev.name))
        inner = replace(pkt, encap=None)
        self._hop(ns, dev.name, "in", inner)
        if e.inner_mac.lower() != (dev.mac or "").lower():
            raise self._drop(ns, f"the inner frame is for {e.inner_mac} but {dev.name} is {dev.mac}: the "
                                 f"sending node's neighbour entry for this node's VTEP is wrong",
                             Cause("wrong-vtep-mac", dev=dev.name, ip=e.src, mac=e.inner_mac))
        self._l3_input(ns, dev.name, inner)

    # ------------------------------------------------------------ Calico's blocks

    def _calico_route(self, ns: str, dst: str, answer: RouteAnswer) -> None:
        """On a Calico node, a destination in a block that only a wider route (the default) or no
        route covers: its block was not learned (another node's), or its blackhole is gone (ours)."""
        facts = self.view.calico
        if facts is None or ns not in facts.nodes:
            return
        found = facts.block_of(dst)
        if found is None:
            return
        block, owner_ns = found
        matched = None if answer.prefix is None else \
            IPv4Network("0.0.0.0/0" if answer.prefix == "default" else answer.prefix, strict=False)
        if matched is not None and matched.prefixlen >= block.prefixlen:
            return                      # the block's own route, its blackhole, or a pod's /32
        if owner_ns == ns:
            proto = calico.proto_name(facts.blackhole_proto())
            raise self._drop(ns, calico.no_blackhole_words(block, facts.nodes[ns], proto),
                             Cause("no-blackhole", ip=dst, route=answer))
        if facts.bgp:
            wider = None if answer.prefix is None else \
                ("its default route" if answer.prefix == "default" else f"route {answer.prefix}") + \
                (f" via {answer.gateway}" if answer.gateway else "")
            raise self._drop(ns, calico.not_learned_words(block, facts.nodes[ns], facts.nodes[owner_ns], wider),
                             Cause("not-learned", ns=owner_ns, ip=dst, route=answer))

    def _blackhole_meaning(self, ns: str, answer: RouteAnswer, dst: str) -> str | None:
        """What a Calico node's blackhole for its own block says about `dst`."""
        facts = self.view.calico
        if facts is None or ns not in facts.nodes or answer.type != "blackhole" or not answer.prefix:
            return None
        if not any(str(b) == answer.prefix for b in facts.own_blocks(ns)):
            return None
        node = facts.nodes[ns]
        who = "BIRD" if facts.bgp else "Felix"
        holder = self.view.holder(dst)
        if holder is not None and holder != ns:
            return (f"{who}'s blackhole for {node}'s own block; pod {self.view.owner(holder)} holds {dst}, "
                    f"but {node} has no route `{dst} dev cali...` for it")
        return f"{who}'s blackhole for {node}'s own block: no pod on {node} holds {dst}"

    # ------------------------------------------------------------ proxy ARP

    def _proxy_refusal(self, ns: str, dev: str, ip: str, src: str | None) -> str | None:
        """Why `dev` in `ns` would not answer an ARP request for `ip` from `src` by proxy (None: it
        answers; PROXY_ARP_OFF: only proxy_arp is missing), in the kernel's order (arp_process):
        forwarding on `dev`, a unicast route to `ip` out of another interface, proxy_arp on `dev`
        (or on all)."""
        if self.view.sysctl(ns, f"net.ipv4.conf.{dev}.forwarding") != "1":
            return (f"forwarding is off on {dev} (net.ipv4.conf.{dev}.forwarding = 0): proxy ARP answers only "
                    f"on an interface that forwards")
        answer = self.view.route(ns, ip, src, dev) if src else RouteAnswer(type="error")
        if answer.error or answer.type != "unicast" or answer.dev == dev:
            return (f"{self.view.owner(ns)} has no route to {ip} out of another interface than {dev}: proxy ARP "
                    f"answers only for an address the node routes elsewhere (its default route covers it)")
        if "1" not in (self.view.sysctl(ns, f"net.ipv4.conf.{dev}.proxy_arp"),
                       self.view.sysctl(ns, "net.ipv4.conf.all.proxy_arp")):
            return PROXY_ARP_OFF
        return None

    def _proxy_end(self, ns: str, link: Link) -> tuple[str, Link] | None:
        """The far end of a veth, if it could answer ARP by proxy: up, no bridge port."""
        if link.kind != "veth":
            return None
        peer = self.view.peer(ns, link.name)
        if peer is None:
            return None
        plink = self._state(peer[0]).link(peer[1])
        if plink is None or not up(plink) or plink.master:
            return None
        return peer[0], plink

    def _own_address(self, ns: str, dev: str) -> str | None:
        return next((a.address.split("/")[0] for a in self._state(ns).addresses if a.dev == dev), None)

    def _proxied(self, ns: str, link: Link, nexthop: str) -> tuple[str, str] | None:
        """An ARP answer by proxy from the far end of `link` (MAC, words), where the kernel gives one;
        on a Calico pod's link, the stop that says why none comes."""
        end = self._proxy_end(ns, link)
        if end is None:
            return None
        pns, plink = end
        refusal = self._proxy_refusal(pns, plink.name, nexthop, self._own_address(ns, link.name))
        facts = self.view.calico
        if refusal is None:
            words = calico.proxy_words(nexthop, plink.name, self.view.owner(pns), bool(facts and pns in facts.nodes))
            return plink.mac or "", f"neigh {nexthop}: no entry yet, {words} ({plink.mac})"
        if facts is None or (pns, plink.name) not in facts.pod_ends:
            return None
        cause = Cause("no-proxy-arp", dev=plink.name, ns=pns, ip=nexthop)
        if refusal == PROXY_ARP_OFF:
            raise self._drop(ns, calico.no_proxy_words(plink.name, facts.pod_ends[(pns, plink.name)],
                                                       self.view.owner(pns), nexthop), cause)
        raise self._drop(ns, f"the ARP for {nexthop} gets no answer from {plink.name} on {self.view.owner(pns)}: "
                             f"{refusal}", cause)

    def _proxy_note(self, ns: str, link: Link, nexthop: str, mac: str, state: str) -> str | None:
        """For a Calico pod's learned neighbour entry of its gateway: that the node's cali end answered
        it, and, if it no longer would, that the entry will not be renewed."""
        facts = self.view.calico
        if facts is None or "PERMANENT" in state or "NOARP" in state:
            return None
        end = self._proxy_end(ns, link)
        if end is None or (end[0], end[1].name) not in facts.pod_ends or (end[1].mac or "").lower() != mac.lower():
            return None
        pns, plink = end
        words = calico.proxy_words(nexthop, plink.name, self.view.owner(pns), pns in facts.nodes)
        refusal = self._proxy_refusal(pns, plink.name, nexthop, self._own_address(ns, link.name))
        if refusal is None:
            return words
        why = f"proxy_arp is off on {plink.name}" if refusal == PROXY_ARP_OFF else refusal
        return f"{words}; but now {why}: once this entry expires, the pod's ARP for {nexthop} gets no answer"

    # ------------------------------------------------------------ sending on a link

    def _transmit(self, ns: str, dev: str, nexthop: str, pkt: Packet, decision: str) -> None:
        snap = self._state(ns)
        link = snap.link(dev)
        if link is None:
            raise self._drop(ns, f"the route names {dev}, which does not exist")
        if not up(link):
            raise self._drop(ns, f"interface {dev} is down", Cause("down", dev=dev))
        if pkt.wire_length > link.mtu and pkt.df:
            raise Stop(False, ns, f"packet larger than the MTU: {pkt.wire_length} bytes, {dev} has MTU {link.mtu} "
                                  f"(DF set)", dev, link.mtu - (VXLAN_OVERHEAD if pkt.encap else 0))
        if link.kind == "vxlan":
            return self._vxlan_out(ns, link, nexthop, pkt, decision)
        if not carrier(link) and link.kind != "bridge":    # a bridge's ports are checked one by one below
            peer = self.view.peer(ns, dev) if link.kind == "veth" else None
            far = f"its other end ({peer[1]} in {self.view.owner(peer[0])}) is down" if peer else "its link is down"
            raise self._drop(ns, f"{dev} has no carrier: {far}",
                             Cause("down", dev=peer[1], ns=peer[0]) if peer else None)
        mac, neigh = self._resolve(ns, link, nexthop)
        if link.kind == "bridge":
            port, how = self._bridge_port(ns, link, mac, ingress=None, hint=self.view.holder(nexthop))
            self._hop(ns, dev, "out", pkt, f"{decision}; {neigh}")
            self._port_mtu(ns, link, port, pkt)
            self._hop(ns, port.name, "out", pkt, how)
            return self._frame_out(ns, port, pkt, mac, self.view.holder(nexthop))
        self._hop(ns, dev, "out", pkt, f"{decision}; {neigh}")
        self._frame_out(ns, link, pkt, mac, self.view.holder(nexthop))

    def _resolve(self, ns: str, link: Link, nexthop: str) -> tuple[str, str]:
        """The next hop's MAC, and the words for how it was found."""
        snap = self._state(ns)
        entry = next((n for n in snap.neighbours if n.dev == link.name and n.address == nexthop), None)
        if entry is not None and entry.mac and any(s in entry.state for s in USABLE_NEIGH):
            words = f"neigh {nexthop} lladdr {entry.mac} {entry.state}"
            note = self._proxy_note(ns, link, nexthop, entry.mac, entry.state)
            return entry.mac, f"{words}, {note}" if note else words
        if link.kind == "vxlan":
            what = f"a {entry.state} neighbour entry" if entry else "no neighbour entry"
            raise self._drop(ns, f"{what} for {nexthop} on {link.name}: a VXLAN device without learning "
                                 f"cannot ARP across the overlay, the entry must be there",
                             Cause("no-neighbour", dev=link.name, ip=nexthop))
        found = l2.search(self.view, ns, link.name, ip=nexthop, hint=self.view.holder(nexthop))
        if found is None:
            behind = l2.search(self.view, ns, link.name, ip=nexthop, hint=self.view.holder(nexthop),
                               through_down=True)
            if behind is not None and behind[3] is not None:
                bns, bdev = behind[3]
                raise self._drop(bns, f"{self._what_is(bns, bdev)} {bdev} is down, so ARP for {nexthop} cannot "
                                      f"reach {self.view.owner(behind[0])}", Cause("down", dev=bdev))
            proxied = self._proxied(ns, link, nexthop)
            if proxied is not None:
                return proxied
            what = f"the neighbour entry for {nexthop} on {link.name} is {entry.state}" if entry \
                else f"no neighbour entry for {nexthop} on {link.name}"
            raise self._drop(ns, f"{what}, and nothing on that link answers ARP for it",
                             Cause("unreached", dev=link.name, ip=nexthop))
        fns, fdev, mac, _ = found
        return mac, f"neigh {nexthop}: no entry yet, ARP resolves it to {mac} ({self.view.owner(fns)} {fdev})"

    def _vxlan_out(self, ns: str, link: Link, nexthop: str, pkt: Packet, decision: str) -> None:
        mac, neigh = self._resolve(ns, link, nexthop)
        snap = self._state(ns)
        fdb = next((f for f in snap.fdb if f.dev == link.name and f.mac and f.mac.lower() == mac.lower()
                    and f.dst), None)
        how = "fdb"
        if fdb is None:
            fdb = next((f for f in snap.fdb if f.dev == link.name and f.mac == "00:00:00:00:00:00" and f.dst), None)
            how = "fdb default (00:00:00:00:00:00)"
        if fdb is None:
            raise self._drop(ns, f"no FDB entry for {mac} on {link.name}: the VXLAN device does not know which "
                                 f"node (VTEP) has that MAC", Cause("no-fdb", dev=link.name, ip=nexthop, mac=mac))
        vx = link.vxlan or {}
        remote = str(fdb.dst)
        self._hop(ns, link.name, "out", pkt, f"{decision}; {neigh}; {how} {mac} dst {remote}")
        answer = self.view.route(ns, remote, vx.get("local") or None)
        if answer.error or answer.type != "unicast" or not answer.dev:
            raise self._drop(ns, f"{link.name} cannot reach the remote VTEP: {route_error(answer, remote)}",
                             Cause("vtep-route", dev=link.name, ip=remote, route=answer))
        local = str(vx.get("local") or answer.prefsrc or "")     # no `local`: the route's source address
        outer = replace(pkt, encap=Encap(local, remote, int(vx.get("port") or 8472), int(vx.get("id") or 0),
                                         DEFAULT_TTL, mac))
        under = snap.link(answer.dev)
        if under is not None and pkt.df and outer.wire_length > under.mtu:
            raise Stop(False, ns, f"packet larger than the MTU: {link.name} adds {VXLAN_OVERHEAD} bytes of VXLAN "
                                  f"headers, and {answer.dev} (MTU {under.mtu}) carries at most "
                                  f"{under.mtu - VXLAN_OVERHEAD}-byte packets through it ({pkt.length} given)",
                       link.name, under.mtu - VXLAN_OVERHEAD)
        self._nft(ns, ["output", "postrouting"], outer, None, answer.dev)
        self._transmit(ns, answer.dev, answer.gateway or remote, outer, self._decided(ns, answer))

    # ------------------------------------------------------------ layer 2

    def _frame_out(self, ns: str, link: Link, pkt: Packet, mac: str, hint: str | None) -> None:
        if link.kind != "veth":
            raise self._drop(ns, f"{link.name} ({link.kind or 'unknown kind'}) leads nowhere podlab can follow")
        peer = self.view.peer(ns, link.name)
        if peer is None:
            raise self._drop(ns, f"the other end of {link.name} cannot be found")
        pns, pdev = peer
        plink = self._state(pns).link(pdev)
        if plink is None:
            raise self._drop(pns, f"the other end of {link.name} ({pdev}) is gone")
        if not up(plink):
            raise self._drop(pns, f"interface {pdev} is down", Cause("down", dev=pdev))
        if pkt.wire_length > plink.mtu + VLAN_SLACK:
            raise Stop(False, pns, f"packet larger than the MTU: {pkt.wire_length} bytes arrive on {pdev} "
                                   f"(MTU {plink.mtu}), which drops them silently", pdev,
                       plink.mtu + VLAN_SLACK - (VXLAN_OVERHEAD if pkt.encap else 0))
        self._arrive(pns, plink, pkt, mac, hint)

    def _arrive(self, ns: str, link: Link, pkt: Packet, mac: str, hint: str | None) -> None:
        self._hop(ns, link.name, "in", pkt)
        snap = self._state(ns)
        if link.master:
            bridge = snap.link(link.master)
            if bridge is None or not up(bridge):
                raise self._drop(ns, f"bridge {link.master} is down", Cause("down", dev=link.master))
            if mac.lower() == (bridge.mac or "").lower() or self._bridge_local(snap, bridge, mac):
                self._hop(ns, bridge.name, "in", pkt)
                return self._l3_input(ns, bridge.name, pkt)
            port, how = self._bridge_port(ns, bridge, mac, ingress=link.name, hint=hint)
            self._port_mtu(ns, bridge, port, pkt)
            self._hop(ns, port.name, "out", pkt, how)
            return self._frame_out(ns, port, pkt, mac, hint)
        if mac.lower() in ((link.mac or "").lower(), BROADCAST):
            return self._l3_input(ns, link.name, pkt)
        raise self._drop(ns, f"the frame is for {mac} but {link.name} is {link.mac}: a stale or wrong "
                             f"neighbour entry upstream", Cause("unreached", dev=link.name, mac=mac))

    def _what_is(self, ns: str, dev: str) -> str:
        link = self._state(ns).link(dev)
        return "bridge port" if link is not None and link.master else "interface"

    @staticmethod
    def _port_mtu(ns: str, bridge: Link, port: Link, pkt: Packet) -> None:
        # A bridge port, like a veth, takes MTU + Ethernet header + a VLAN tag's 4 bytes.
        if pkt.wire_length > port.mtu + VLAN_SLACK:
            raise Stop(False, ns, f"packet larger than the MTU: bridge {bridge.name} cannot send "
                                  f"{pkt.wire_length} bytes out of {port.name} (MTU {port.mtu})", port.name,
                       port.mtu + VLAN_SLACK - (VXLAN_OVERHEAD if pkt.encap else 0))

    @staticmethod
    def _bridge_local(snap: Snapshot, bridge: Link, mac: str) -> bool:
        """A bridge's own addresses: its ports' MACs, listed as permanent (local) FDB entries."""
        return any(f.master == bridge.name and f.permanent and not f.self and f.mac
                   and f.mac.lower() == mac.lower() for f in snap.fdb)

    def _bridge_port(self, ns: str, bridge: Link, mac: str, ingress: str | None,
                     hint: str | None) -> tuple[Link, str]:
        snap = self._state(ns)
        entry = next((f for f in snap.fdb if f.master == bridge.name and f.mac and f.mac.lower() == mac.lower()
                      and not f.self), None)
        port = snap.link(entry.dev) if entry else None
        if port is not None:
            how = f"bridge {bridge.name}: fdb {mac} dev {port.name}"
        else:
            ports = [l for l in snap.links if l.master == bridge.name and l.name != ingress]
            port = next((p for p in ports if l2.search(self.view, ns, p.name, mac=mac, hint=hint)), None)
            if port is None:
                for p in ports:     # a port that would lead there if it (or a link behind it) were up
                    behind = l2.search(self.view, ns, p.name, mac=mac, hint=hint, through_down=True)
                    if behind is not None and behind[3] is not None:
                        bns, bdev = behind[3]
                        raise self._drop(bns, f"{self._what_is(bns, bdev)} {bdev} is down", Cause("down", dev=bdev))
                raise self._drop(ns, f"bridge {bridge.name} has no FDB entry for {mac}, and none of its ports "
                                     f"leads to it", Cause("unreached", dev=bridge.name, mac=mac))
            how = f"bridge {bridge.name}: no fdb entry for {mac}, flooded; {port.name} leads to it"
        if port.name == ingress:
            raise self._drop(ns, f"bridge {bridge.name} would send the frame back out of {port.name}")
        if not up(port):
            raise self._drop(ns, f"bridge port {port.name} is down", Cause("down", dev=port.name))
        return port, how
