"""Turn a plan into kernel objects, and remove them again.

Only this package touches namespaces and netlink. Links get ifindexes chosen here, in
order, so a request can name a link made earlier in the same batch (a veth's bridge, a
route's device) without waiting to read it back: the whole lab streams out in a few
dozen send(2) calls per phase.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import singledispatch
from itertools import groupby

from lab import commands, state
from lab.engine import netlink as nl
from lab.engine import netns
from lab.engine.journal import Journal
from lab.errors import PodlabError
from lab.ops import (PHASE, AddAddress, AddFdb, AddNeighbour, AddRoute, CreateBridge, CreateNamespace,
                     CreateVeth, CreateVxlan, LinkUp, Op, SetHairpin, SetMaster, SetSysctl)

Progress = Callable[[str, int, int], None]

_PHASE_NAMES = {0: "namespaces", 1: "sysctls", 2: "bridges", 3: "veth pairs", 4: "vxlan devices",
                5: "links up", 6: "bridge ports", 7: "addresses", 8: "routes, neighbours, fdb"}


class Links:
    """The ifindex of every link by (namespace, name); new links are numbered upward."""

    def __init__(self) -> None:
        self.index: dict[tuple[str, str], int] = {}
        self.next: dict[str, int] = {}

    def add_namespace(self, ns: str, max_index: int) -> None:
        self.index[(ns, "lo")] = 1
        self.next[ns] = max_index + 1

    def new(self, ns: str, name: str) -> int:
        i = self.next[ns]
        self.next[ns] = i + 1
        self.index[(ns, name)] = i
        return i

    def __call__(self, ns: str, name: str) -> int:
        try:
            return self.index[(ns, name)]
        except KeyError:
            raise PodlabError(f"plan error: link {name} in {ns} is used before it is created") from None


@singledispatch
def encode(op: Op, links: Links, fds: dict[str, int]) -> nl.Request:
    raise TypeError(f"the engine cannot apply {type(op).__name__}")


def _what(op: Op) -> str:
    return commands.command(op)


@encode.register
def _(op: CreateBridge, links: Links, fds: dict[str, int]) -> nl.Request:
    body = (nl.ifinfomsg(links.new(op.ns, op.name)) + nl.string(nl.IFLA_IFNAME, op.name)
            + nl.u32(nl.IFLA_MTU, op.mtu) + (nl.mac(nl.IFLA_ADDRESS, op.mac) if op.mac else b"")
            + nl.nested(nl.IFLA_LINKINFO, nl.string(nl.IFLA_INFO_KIND, "bridge")))
    return nl.Request(nl.RTM_NEWLINK, nl.CREATE, body, _what(op))


@encode.register
def _(op: CreateVeth, links: Links, fds: dict[str, int]) -> nl.Request:
    index = links.new(op.ns, op.name)
    peer = (nl.ifinfomsg(links.new(op.peer_ns, op.peer)) + nl.string(nl.IFLA_IFNAME, op.peer)
            + nl.u32(nl.IFLA_MTU, op.mtu) + nl.u32(nl.IFLA_NET_NS_FD, fds[op.peer_ns])
            + (nl.mac(nl.IFLA_ADDRESS, op.peer_mac) if op.peer_mac else b""))
    body = nl.ifinfomsg(index) + nl.string(nl.IFLA_IFNAME, op.name) + nl.u32(nl.IFLA_MTU, op.mtu)
    if op.master:
        body += nl.u32(nl.IFLA_MASTER, links(op.ns, op.master))
    if op.alias:
        body += nl.string(nl.IFLA_IFALIAS, op.alias)
    body += nl.nested(nl.IFLA_LINKINFO, nl.string(nl.IFLA_INFO_KIND, "veth"),
                      nl.nested(nl.IFLA_INFO_DATA, nl.attr(nl.VETH_INFO_PEER, peer)))
    return nl.Request(nl.RTM_NEWLINK, nl.CREATE, body, _what(op))


@encode.register
def _(op: CreateVxlan, links: Links, fds: dict[str, int]) -> nl.Request:
    data = (nl.u32(nl.IFLA_VXLAN_ID, op.vni) + nl.u32(nl.IFLA_VXLAN_LINK, links(op.ns, op.dev))
            + nl.ip4(nl.IFLA_VXLAN_LOCAL, op.local) + nl.u8(nl.IFLA_VXLAN_LEARNING, int(op.learning))
            + nl.be16(nl.IFLA_VXLAN_PORT, op.port))
    body = (nl.ifinfomsg(links.new(op.ns, op.name)) + nl.string(nl.IFLA_IFNAME, op.name)
            + nl.u32(nl.IFLA_MTU, op.mtu) + nl.mac(nl.IFLA_ADDRESS, op.mac)
            + nl.nested(nl.IFLA_LINKINFO, nl.string(nl.IFLA_INFO_KIND, "vxlan"),
                        nl.nested(nl.IFLA_INFO_DATA, data)))
    return nl.Request(nl.RTM_NEWLINK, nl.CREATE, body, _what(op))


@encode.register
def _(op: SetMaster, links: Links, fds: dict[str, int]) -> nl.Request:
    body = nl.ifinfomsg(links(op.ns, op.name)) + nl.u32(nl.IFLA_MASTER, links(op.ns, op.master))
    return nl.Request(nl.RTM_SETLINK, 0, body, _what(op))


@encode.register
def _(op: LinkUp, links: Links, fds: dict[str, int]) -> nl.Request:
    body = nl.ifinfomsg(links(op.ns, op.name), flags=nl.IFF_UP, change=nl.IFF_UP)
    return nl.Request(nl.RTM_SETLINK, 0, body, _what(op))


@encode.register
def _(op: SetHairpin, links: Links, fds: dict[str, int]) -> nl.Request:
    body = (nl.ifinfomsg(links(op.ns, op.name), family=nl.AF_BRIDGE)
            + nl.nested(nl.IFLA_PROTINFO, nl.u8(nl.IFLA_BRPORT_MODE, 1)))
    return nl.Request(nl.RTM_SETLINK, 0, body, _what(op))


@encode.register
def _(op: AddAddress, links: Links, fds: dict[str, int]) -> nl.Request:
    a = op.address
    body = (nl.ifaddrmsg(a.network.prefixlen, links(op.ns, op.dev))
            + nl.ip4(nl.IFA_LOCAL, a.ip) + nl.ip4(nl.IFA_ADDRESS, a.ip))
    return nl.Request(nl.RTM_NEWADDR, nl.CREATE, body, _what(op))


@encode.register
def _(op: AddRoute, links: Links, fds: dict[str, int]) -> nl.Request:
    if op.blackhole:
        body = nl.rtmsg(op.dst.prefixlen, nl.RT_SCOPE_UNIVERSE, nl.RTN_BLACKHOLE)
    else:
        scope = nl.RT_SCOPE_UNIVERSE if op.via else nl.RT_SCOPE_LINK
        body = nl.rtmsg(op.dst.prefixlen, scope, nl.RTN_UNICAST, nl.RTNH_F_ONLINK if op.onlink else 0)
    if op.dst.prefixlen:
        body += nl.ip4(nl.RTA_DST, op.dst.network_address)
    if op.via:
        body += nl.ip4(nl.RTA_GATEWAY, op.via)
    if op.dev:
        body += nl.u32(nl.RTA_OIF, links(op.ns, op.dev))
    return nl.Request(nl.RTM_NEWROUTE, nl.CREATE, body, _what(op))


@encode.register
def _(op: AddNeighbour, links: Links, fds: dict[str, int]) -> nl.Request:
    body = (nl.ndmsg(nl.AF_INET, links(op.ns, op.dev), nl.NUD_PERMANENT)
            + nl.ip4(nl.NDA_DST, op.address) + nl.mac(nl.NDA_LLADDR, op.mac))
    return nl.Request(nl.RTM_NEWNEIGH, nl.CREATE, body, _what(op))


@encode.register
def _(op: AddFdb, links: Links, fds: dict[str, int]) -> nl.Request:
    body = (nl.ndmsg(nl.AF_BRIDGE, links(op.ns, op.dev), nl.NUD_PERMANENT, nl.NTF_SELF)
            + nl.mac(nl.NDA_LLADDR, op.mac) + nl.ip4(nl.NDA_DST, op.dst))
    return nl.Request(nl.RTM_NEWNEIGH, nl.NLM_F_CREATE | nl.NLM_F_REPLACE, body, _what(op))


def build(lab: str, ops: list[Op] | tuple[Op, ...], progress: Progress | None = None) -> None:
    """Create every object of the plan. On failure raise PodlabError naming the object and
    the operation; what was made stays journalled, for the caller to destroy."""
    journal = Journal(lab)
    creates = [op for op in ops if isinstance(op, CreateNamespace)]
    taken = [op.ns for op in creates if netns.exists(op.ns)]
    if taken:
        raise PodlabError(f"network namespace {taken[0]} already exists ({len(taken)} names taken): "
                          f"another lab or program uses it; pick another lab name with --name")
    sysctls: dict[str, list[tuple[str, str]]] = {}
    for op in ops:
        if isinstance(op, SetSysctl):
            sysctls.setdefault(op.ns, []).append((op.key, op.value))
    specs = [(op.ns, op.hostname, state.uts_path(lab, op.ns)) for op in creates]
    journal.record_many("netns", [{"name": ns, "uts": uts, "role": op.role}
                                  for (ns, _, uts), op in zip(specs, creates)])
    if progress:
        progress("namespaces", 0, len(specs))
    made = netns.create(specs, sysctls)
    if progress:
        progress("namespaces", len(specs), len(specs))
    try:
        _links(ops, made, progress)
    finally:
        for handle in made.values():
            handle.close()


def _links(ops: list[Op] | tuple[Op, ...], made: dict[str, netns.Created], progress: Progress | None) -> None:
    links = Links()
    for name, handle in made.items():
        links.add_namespace(name, handle.max_index)
    fds = {name: h.fd for name, h in made.items()}
    channels = {name: nl.Channel(h.nl) for name, h in made.items()}
    rest = [op for op in ops if not isinstance(op, (CreateNamespace, SetSysctl))]
    for phase, group in groupby(rest, key=lambda op: PHASE[type(op)]):
        batch = list(group)
        # Within a phase no op depends on another namespace's op of that phase, so
        # grouping by namespace keeps each send(2) as large as possible.
        batch.sort(key=lambda op: op.ns)
        for ns, per_ns in groupby(batch, key=lambda op: op.ns):
            channel = channels[ns]
            for op in per_ns:
                channel.queue(encode(op, links, fds))
            try:
                channel.flush()
            except nl.NetlinkError as e:
                raise PodlabError(f"failed: {e}") from None
        if progress:
            progress(_PHASE_NAMES[phase], len(batch), len(batch))


def destroy(lab: str) -> list[str]:
    """Remove every namespace the journal says this lab may have made. Returns those removed."""
    removed = []
    uts_dir = str(state.lab_dir(lab) / "uts") + "/"
    for entry in reversed(Journal(lab).of_kind("netns")):
        name, uts = entry.get("name", ""), entry.get("uts")
        if uts and not str(uts).startswith(uts_dir):
            uts = None      # a record that points outside the lab's own directory is not ours to unmount
        if netns.remove(name, uts):
            removed.append(name)
    return removed
