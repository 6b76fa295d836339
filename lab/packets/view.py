"""What a path walk asks the kernel, namespace by namespace.

LiveView asks the real kernel: state read back by lab.inspect, `route get` (with the input
interface, as the kernel looks up a forwarded packet, and `fibmatch` for the entry that matched),
veth peers by IFLA_LINK + link-netnsid resolved with RTM_GETNSID, forwarding sysctls, nft rules
(`nft -j list ruleset`, run only where nf_tables has a table).
SnapshotView answers the same questions from Snapshots (a longest-prefix match over their
routes), so the walk's reasoning is testable without root.
"""
from __future__ import annotations

import errno
import os
import subprocess
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_address
from typing import TYPE_CHECKING, Protocol

from lab import inspect
from lab.engine import netns as nsmod
from lab.engine import nsexec
from lab.inspect import RT_TABLES, Link, Route, Snapshot
from lab.netlink import dump, wire
from lab.netlink.query import Rtnl
from lab.packets import calico, nft

if TYPE_CHECKING:
    from lab.api import Lab

ROUTE_TYPES = {1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast", 6: "blackhole",
               7: "unreachable", 8: "prohibit", 9: "throw", 10: "nat"}


@dataclass(frozen=True)
class RouteAnswer:
    """What `ip route get` says: the effective route, the FIB entry that matched, or an errno."""
    type: str = "unicast"
    dev: str | None = None
    gateway: str | None = None
    prefsrc: str | None = None
    table: str = "main"
    prefix: str | None = None      # the matching entry: "10.244.1.0/24", "default"
    onlink: bool = False
    error: int = 0

    def text(self) -> str:
        """'route 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink (table main)'."""
        kind = "" if self.type == "unicast" else f"{self.type} "
        parts = [f"route {kind}{self.prefix or '?'}"]
        if self.gateway:
            parts.append(f"via {self.gateway}")
        if self.dev:
            parts.append(f"dev {self.dev}")
        if self.onlink:
            parts.append("onlink")
        return " ".join(parts) + f" (table {self.table})"


class View(Protocol):
    calico: calico.Facts | None       # a Calico lab's blocks, nodes and pods; None in other designs

    def state(self, ns: str) -> Snapshot: ...
    def route(self, ns: str, dst: str, src: str | None = None, iif: str | None = None) -> RouteAnswer: ...
    def peer(self, ns: str, dev: str) -> tuple[str, str] | None: ...
    def sysctl(self, ns: str, key: str) -> str | None: ...
    def nft_rules(self, ns: str) -> list[nft.Chain]: ...
    def owner(self, ns: str) -> str: ...
    def holder(self, ip: str) -> str | None: ...      # the namespace the design gives this address


def up(link: Link) -> bool:
    return link.state.split(",")[0] == "UP"


def carrier(link: Link) -> bool:
    return "NO-CARRIER" not in link.state


# ---------------------------------------------------------------- the real kernel

def route_answer(rtnl: Rtnl, dst: str, src: str | None, iif: int | None, names: dict[int, str]) -> RouteAnswer:
    """`ip route get` (the effective route) and `ip route get fibmatch` (the entry that matched)."""
    got = rtnl.route_get(dst, src, iif)
    fib = rtnl.route_get(dst, src, iif, fibmatch=True)
    prefix = (f"{fib.dst}/{fib.dst_len}" if fib.dst else "default") if not fib.error else None
    if got.error:
        # A blackhole, unreachable or prohibit entry refuses the lookup: name it if fibmatch can.
        kind = ROUTE_TYPES.get(fib.type, "error") if not fib.error else "error"
        return RouteAnswer(type=kind, error=got.error, prefix=prefix,
                           table=RT_TABLES.get(fib.table, str(fib.table)) if not fib.error else "main")
    return RouteAnswer(type=ROUTE_TYPES.get(got.type, str(got.type)),
                       dev=names.get(got.oif) if got.oif else None, gateway=got.gateway, prefsrc=got.prefsrc,
                       table=RT_TABLES.get(got.table, str(got.table)), prefix=prefix or f"{dst}/32",
                       onlink=bool(fib.flags & wire.RTNH_F_ONLINK) if not fib.error else False)


def _read_sysctl(key: str) -> str | None:
    try:
        with open("/proc/sys/" + key.replace(".", "/")) as f:
            return f.read().strip()
    except OSError:
        return None


def _nft_tables_here() -> bool:
    """Whether nf_tables holds a table in the calling thread's namespace (none at all: nothing
    can drop here, and `nft` need not run)."""
    try:
        sock = wire.open_socket(wire.NETLINK_NETFILTER)
    except OSError:
        return False
    try:
        return dump.nft_has_tables(sock)
    finally:
        sock.close()


def _visit_here(ns: str) -> tuple[Rtnl, Snapshot, bool]:
    """What a walk reads of the namespace the calling thread is in: a route socket kept for
    `route get`, the state read on it, and whether nf_tables has tables."""
    rtnl = Rtnl(sock=wire.open_socket())
    try:
        return rtnl, inspect.read_here(ns, rtnl.sock), _nft_tables_here()
    except BaseException:
        rtnl.close()
        raise


class LiveView:
    """The lab's kernel, read on demand and cached for one walk (the walk reads, never writes)."""

    def __init__(self, lab: Lab):
        from lab.ops import CreateVeth
        self.lab = lab
        self._owner: dict[str, str] = {}
        for t in lab.targets().values():
            if t.kind == "underlay" and lab.design.backend.router:
                self._owner[t.netns] = "router"
            self._owner.setdefault(t.netns, t.name)
        self._holder: dict[str, str] = {}
        for t in lab.targets().values():
            if t.ip is not None and t.kind != "pod":
                self._holder.setdefault(str(t.ip), t.netns)
        for p in lab.addresses.pods:
            self._holder.setdefault(str(p.ip), p.netns)
        for n in lab.addresses.nodes:
            self._holder.setdefault(str(n.gateway), n.netns)
            self._holder.setdefault(str(n.block.network_address), n.netns)
        # The design's veth ends: a hint for where a peer lives, checked against the kernel's nsid.
        self._veth_hint: dict[tuple[str, str], str] = {}
        for op in lab.plan.ops:
            if isinstance(op, CreateVeth):
                self._veth_hint[(op.ns, op.name)] = op.peer_ns
                self._veth_hint[(op.peer_ns, op.peer)] = op.ns
        self._states: dict[str, Snapshot] = {}
        self._nsid: dict[str, dict[int, str]] = {}
        self._nft: dict[str, list[nft.Chain]] = {}
        self._has_tables: dict[str, bool] = {}
        self._sysctls: dict[tuple[str, str], str | None] = {}
        self._sockets: dict[str, Rtnl] = {}
        self.namespaces = list(self._owner)
        self.calico = calico.facts_of(lab)

    def owner(self, ns: str) -> str:
        return self._owner.get(ns, ns)

    def holder(self, ip: str) -> str | None:
        return self._holder.get(ip)

    def state(self, ns: str) -> Snapshot:
        if ns not in self._states:
            self._visit(ns)
        return self._states[ns]

    def _visit(self, ns: str) -> None:
        # One helper thread per namespace for everything the walk reads there (a thread costs
        # 0.5-1 ms, more on a loaded machine); the route socket stays for the lookups.
        rtnl, snap, tables = nsmod.run_in(ns, lambda: _visit_here(ns))
        self._sockets[ns], self._states[ns], self._has_tables[ns] = rtnl, snap, tables

    def _rtnl(self, ns: str) -> Rtnl:
        if ns not in self._sockets:
            self._visit(ns)
        return self._sockets[ns]

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()

    def route(self, ns: str, dst: str, src: str | None = None, iif: str | None = None) -> RouteAnswer:
        index = None
        snap = self.state(ns)
        if iif:
            link = snap.link(iif)
            if link is None:
                return RouteAnswer(type="error", error=errno.ENODEV)
            index = link.index
        got = route_answer(self._rtnl(ns), dst, src, index, {l.index: l.name for l in snap.links})
        if got.error and got.prefix is None:
            # The kernel refuses a blackhole/unreachable/prohibit match without naming it: find it.
            entry = longest_match(snap, dst)
            if entry is not None and entry.type != "unicast":
                return RouteAnswer(type=entry.type, prefix=entry.dst, table=entry.table, error=got.error)
        return got

    def sysctl(self, ns: str, key: str) -> str | None:
        if (ns, key) not in self._sysctls:
            self._sysctls[(ns, key)] = nsmod.run_in(ns, lambda: _read_sysctl(key))
        return self._sysctls[(ns, key)]

    def peer(self, ns: str, dev: str) -> tuple[str, str] | None:
        link = self.state(ns).link(dev)
        if link is None or link.kind != "veth" or link.peer_index is None:
            return None
        if link.peer_netnsid is None:     # both ends in this namespace
            other = next((l for l in self.state(ns).links if l.index == link.peer_index), None)
            return (ns, other.name) if other else None
        hint = self._veth_hint.get((ns, dev))
        # A small lab asks for every namespace's id at once; a large one tries the design's hint first.
        first = [hint] if hint and len(self.namespaces) > 64 else []
        for candidates in (first, self.namespaces):
            found = self._nsid_lookup(ns, link.peer_netnsid, [c for c in candidates if c != ns])
            if found is not None:
                other = next((l for l in self.state(found).links if l.index == link.peer_index), None)
                if other is not None:
                    return found, other.name
        return None

    def _nsid_lookup(self, ns: str, nsid: int, candidates: list[str]) -> str | None:
        known = self._nsid.setdefault(ns, {})
        if nsid in known:
            return known[nsid]
        rtnl = self._rtnl(ns)
        for name in candidates:
            if name in known.values():
                continue
            try:
                fd = os.open(nsmod.netns_path(name), os.O_RDONLY)
            except OSError:
                continue
            try:
                got = rtnl.nsid(fd)
            finally:
                os.close(fd)
            if got is not None:
                known[got] = name
        return known.get(nsid)

    def nft_rules(self, ns: str) -> list[nft.Chain]:
        if ns not in self._nft:
            self._nft[ns] = []
            if ns not in self._has_tables:
                self._visit(ns)
            if self._has_tables[ns]:
                try:
                    r = subprocess.run(nsexec.command(["nft", "-j", "list", "ruleset"], ns),
                                       capture_output=True, text=True, timeout=10)
                    if r.returncode == 0:
                        self._nft[ns] = nft.parse(r.stdout)
                except (OSError, subprocess.TimeoutExpired):
                    pass
        return self._nft[ns]


# ---------------------------------------------------------------- snapshots (tests, offline)

def longest_match(snap: Snapshot, dst: str, table: str = "main") -> Route | None:
    target = ip_address(dst)
    best: tuple[IPv4Network, Route] | None = None
    for r in snap.routes_in(table):
        net = IPv4Network("0.0.0.0/0" if r.dst == "default" else r.dst, strict=False)
        if target in net and (best is None or net.prefixlen > best[0].prefixlen):
            best = (net, r)
    return best[1] if best else None


class SnapshotView:
    """The same answers from Snapshots: longest-prefix match over main, local addresses first."""

    def __init__(self, states: dict[str, Snapshot], peers: dict[tuple[str, str], tuple[str, str]],
                 owners: dict[str, str] | None = None, rules: dict[str, list[nft.Chain]] | None = None,
                 holders: dict[str, str] | None = None, calico_facts: calico.Facts | None = None):
        self.states = states
        self.peers = {**peers, **{v: k for k, v in peers.items()}}
        self.owners = owners or {}
        self.rules = rules or {}
        self.holders = holders or {}
        self.calico = calico_facts

    def owner(self, ns: str) -> str:
        return self.owners.get(ns, ns)

    def holder(self, ip: str) -> str | None:
        return self.holders.get(ip)

    def state(self, ns: str) -> Snapshot:
        return self.states[ns]

    def peer(self, ns: str, dev: str) -> tuple[str, str] | None:
        return self.peers.get((ns, dev))

    def sysctl(self, ns: str, key: str) -> str | None:
        s = self.states[ns].sysctls
        if key.startswith("net.ipv4.conf.") and key.endswith(".forwarding") and key not in s:
            return s.get("net.ipv4.ip_forward")      # ip_forward sets every interface's value
        return s.get(key)

    def nft_rules(self, ns: str) -> list[nft.Chain]:
        return self.rules.get(ns, [])

    def route(self, ns: str, dst: str, src: str | None = None, iif: str | None = None) -> RouteAnswer:
        snap = self.states[ns]
        target = ip_address(dst)
        for a in snap.addresses:
            if IPv4Address(a.address.split("/")[0]) == target:
                return RouteAnswer(type="local", dev="lo", prefix=f"{dst}/32", table="local")
        # The kernel's order (ip_route_input_slow): the FIB lookup, then forwarding, then the type.
        r = longest_match(snap, dst)
        if r is None:
            return RouteAnswer(type="error", error=errno.ENETUNREACH)
        if r.type != "unicast":
            code = {"blackhole": errno.EINVAL, "unreachable": errno.EHOSTUNREACH,
                    "prohibit": errno.EACCES}.get(r.type, errno.EINVAL)
            return RouteAnswer(type=r.type, prefix=r.dst, table=r.table, error=code)
        if iif and self.sysctl(ns, f"net.ipv4.conf.{iif}.forwarding") != "1":
            return RouteAnswer(type="error", error=errno.EHOSTUNREACH)
        prefsrc = r.src or next((a.address.split("/")[0] for a in snap.addresses if a.dev == r.dev), None)
        return RouteAnswer(dev=r.dev, gateway=r.gateway, prefsrc=prefsrc, table=r.table, prefix=r.dst,
                           onlink=r.onlink)
