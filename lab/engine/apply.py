"""Turn a plan into kernel objects, and remove them again.

Only this package touches namespaces and netlink. Links get ifindexes chosen here, in
order, so a request can name a link made earlier in the same batch (a veth's bridge, a
route's device) without waiting to read it back: the whole lab streams out in a few
dozen send(2) calls per phase.
"""
from __future__ import annotations

import os
import socket
import struct
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial, singledispatch
from itertools import groupby

from lab import commands, faults, state
from lab.cni import paths as cni_paths
from lab.engine import netns, nftables, nsexec
from lab.engine.daemons import Daemons, change_daemons, write_files
from lab.engine.journal import Journal, ns_id
from lab.errors import PodlabError
from lab.netlink import wire as nl
from lab.netlink.writer import ONE_QUEUE, Channel, NetlinkError, Request, link_index, links_running
from lab.ops import (PHASE, AddAddress, AddFdb, AddNeighbour, AddRoute, ApplyNft, CniAdd, CniNode, CreateBridge, CreateNamespace,
                     CreateVeth, CreateVxlan, DelFdb, DelNeighbour, DelRoute, LinkUp, Op, SetHairpin, SetLinkConf, SetMaster,
                     SetSysctl, SetSysctls, StartDaemon, UpdateDaemon, WriteFile)

Progress = Callable[[str, int, int], None]
UNMOUNT_THREADS = 32

_PHASE_NAMES = {0: "namespaces", 1: "sysctls", 2: "bridges", 3: "veth pairs", 4: "vxlan devices",
                5: "links up", 6: "bridge ports", 7: "addresses", 8: "routes, neighbours, fdb", 9: "nftables"}


class Links:
    """The ifindex of every link by (namespace, name); new links are numbered upward."""

    def __init__(self, up: set[tuple[str, str]] | frozenset = frozenset()) -> None:
        self.index: dict[tuple[str, str], int] = {}
        self.next: dict[str, int] = {}
        # Links the plan brings up that the kernel can create already up (saves a request each).
        self.up = up
        self.brought_up: list[tuple[str, str]] = []   # LinkUp's links in the order they went out (_wait_running)
        self.existing: dict[str, object] = {}           # namespace -> netlink socket (add_existing)

    def flags(self, ns: str, name: str) -> dict[str, int]:
        return {"flags": nl.IFF_UP, "change": nl.IFF_UP} if (ns, name) in self.up else {}

    def add_existing(self, ns: str, sock) -> None:
        """A namespace that is already there (a node of a running lab): its links are looked up by
        name when first named, and the kernel numbers the links made in it."""
        self.existing[ns] = sock

    def add_namespace(self, ns: str, max_index: int) -> None:
        self.index[(ns, "lo")] = 1
        self.next[ns] = max_index + 1

    def new(self, ns: str, name: str) -> int:
        if ns in self.existing:
            return 0          # the kernel's choice, read back by name when the link is next named
        i = self.next[ns]
        self.next[ns] = i + 1
        self.index[(ns, name)] = i
        return i

    def __call__(self, ns: str, name: str) -> int:
        try:
            return self.index[(ns, name)]
        except KeyError:
            pass
        index = link_index(self.existing[ns], name) if ns in self.existing else None
        if index is None:
            raise PodlabError(f"plan error: link {name} in {ns} is used before it is created")
        self.index[(ns, name)] = index
        return index


@singledispatch
def encode(op: Op, links: Links, fds: dict[str, int]) -> Request:
    raise TypeError(f"the engine cannot apply {type(op).__name__}")


def _what(op: Op) -> Callable[[], str]:
    return partial(commands.command, op)   # made only if the request fails


# What the kernel's EEXIST means is decided per operation (Request.exists_ok). Plans are built
# into new namespaces, so EEXIST means the plan itself, or something that ran there meanwhile,
# made the object already. It is success only where the kernel says it for this very object:
# an address (the same local address and prefix on the same device). A link of that name may
# be anything, and later requests name the link by the ifindex chosen here; a route to the same
# destination and metric may go elsewhere; a neighbour entry may hold another MAC: errors.

def _link_what(op: CreateBridge | CreateVeth | CreateVxlan) -> Callable[[], str]:
    """A link request's failure names the link first (EEXIST: that name is taken)."""
    return partial(_naming_link, op)


def _naming_link(op: CreateBridge | CreateVeth | CreateVxlan) -> str:
    peer = f" (or its peer {op.peer} in {op.peer_ns})" if isinstance(op, CreateVeth) else ""
    return f"link {op.name} in {op.ns}{peer}: {commands.command(op)}"


@encode.register
def _(op: CreateBridge, links: Links, fds: dict[str, int]) -> Request:
    # Created down and without multicast snooping; _bridge_on turns both on at the end (see _links).
    body = (nl.ifinfomsg(links.new(op.ns, op.name), **links.flags(op.ns, op.name))
            + nl.string(nl.IFLA_IFNAME, op.name)
            + nl.u32(nl.IFLA_MTU, op.mtu) + (nl.mac(nl.IFLA_ADDRESS, op.mac) if op.mac else b"")
            + _bridge_info(snooping=False))
    return Request(nl.RTM_NEWLINK, nl.CREATE, body, _link_what(op), exists_ok=False)


def _bridge_info(snooping: bool) -> bytes:
    return nl.nested(nl.IFLA_LINKINFO, nl.string(nl.IFLA_INFO_KIND, "bridge"),
                     nl.nested(nl.IFLA_INFO_DATA, nl.u8(nl.IFLA_BR_MCAST_SNOOPING, int(snooping))))


def _snooping_on(ns: str, bridge: str, links: Links) -> Request:
    return Request(nl.RTM_NEWLINK, 0, nl.ifinfomsg(links(ns, bridge)) + _bridge_info(snooping=True),
                   f"multicast snooping on {bridge} in {ns}")


@encode.register
def _(op: CreateVeth, links: Links, fds: dict[str, int]) -> Request:
    index = links.new(op.ns, op.name)
    peer = (nl.ifinfomsg(links.new(op.peer_ns, op.peer)) + nl.string(nl.IFLA_IFNAME, op.peer)
            + nl.u32(nl.IFLA_MTU, op.mtu) + ONE_QUEUE + nl.u32(nl.IFLA_NET_NS_FD, fds[op.peer_ns])
            + (nl.mac(nl.IFLA_ADDRESS, op.peer_mac) if op.peer_mac else b""))
    body = (nl.ifinfomsg(index, **links.flags(op.ns, op.name)) + nl.string(nl.IFLA_IFNAME, op.name)
            + nl.u32(nl.IFLA_MTU, op.mtu) + ONE_QUEUE + (nl.mac(nl.IFLA_ADDRESS, op.mac) if op.mac else b""))
    if op.master:
        body += nl.u32(nl.IFLA_MASTER, links(op.ns, op.master))
    if op.alias:
        body += nl.string(nl.IFLA_IFALIAS, op.alias)
    body += nl.nested(nl.IFLA_LINKINFO, nl.string(nl.IFLA_INFO_KIND, "veth"),
                      nl.nested(nl.IFLA_INFO_DATA, nl.attr(nl.VETH_INFO_PEER, peer)))
    return Request(nl.RTM_NEWLINK, nl.CREATE, body, _link_what(op), exists_ok=False)


@encode.register
def _(op: CreateVxlan, links: Links, fds: dict[str, int]) -> Request:
    data = (nl.u32(nl.IFLA_VXLAN_ID, op.vni) + nl.u32(nl.IFLA_VXLAN_LINK, links(op.ns, op.dev))
            + nl.ip4(nl.IFLA_VXLAN_LOCAL, op.local) + nl.u8(nl.IFLA_VXLAN_LEARNING, int(op.learning))
            + nl.be16(nl.IFLA_VXLAN_PORT, op.port))
    body = (nl.ifinfomsg(links.new(op.ns, op.name), **links.flags(op.ns, op.name))
            + nl.string(nl.IFLA_IFNAME, op.name)
            + nl.u32(nl.IFLA_MTU, op.mtu) + nl.mac(nl.IFLA_ADDRESS, op.mac)
            + nl.nested(nl.IFLA_LINKINFO, nl.string(nl.IFLA_INFO_KIND, "vxlan"),
                        nl.nested(nl.IFLA_INFO_DATA, data)))
    return Request(nl.RTM_NEWLINK, nl.CREATE, body, _link_what(op), exists_ok=False)


@encode.register
def _(op: SetMaster, links: Links, fds: dict[str, int]) -> Request:
    body = nl.ifinfomsg(links(op.ns, op.name)) + nl.u32(nl.IFLA_MASTER, links(op.ns, op.master))
    return Request(nl.RTM_SETLINK, 0, body, _what(op))


@encode.register
def _(op: LinkUp, links: Links, fds: dict[str, int]) -> Request:
    links.brought_up.append((op.ns, op.name))   # requests go out in the order they are encoded
    body = nl.ifinfomsg(links(op.ns, op.name), flags=nl.IFF_UP, change=nl.IFF_UP)
    return Request(nl.RTM_SETLINK, 0, body, _what(op))


@encode.register
def _(op: SetHairpin, links: Links, fds: dict[str, int]) -> Request:
    body = (nl.ifinfomsg(links(op.ns, op.name), family=nl.AF_BRIDGE)
            + nl.nested(nl.IFLA_PROTINFO, nl.u8(nl.IFLA_BRPORT_MODE, 1)))
    return Request(nl.RTM_SETLINK, 0, body, _what(op))


@encode.register
def _(op: SetLinkConf, links: Links, fds: dict[str, int]) -> Request | list[Request]:
    index = links(op.ns, op.dev)
    conf = b"".join(nl.u32(nl.IPV4_DEVCONF[k], v) for k, v in op.conf)
    body = nl.ifinfomsg(index) + nl.nested(nl.IFLA_AF_SPEC, nl.nested(nl.AF_INET, nl.nested(nl.IFLA_INET_CONF, conf)))
    requests = [Request(nl.RTM_SETLINK, 0, body, _what(op))]
    if op.proxy_delay is not None:
        table = (struct.pack("=Bxxx", nl.AF_INET) + nl.string(nl.NDTA_NAME, "arp_cache")
                 + nl.nested(nl.NDTA_PARMS, nl.u32(nl.NDTPA_IFINDEX, index), nl.u64(nl.NDTPA_PROXY_DELAY, op.proxy_delay)))
        requests.append(Request(nl.RTM_SETNEIGHTBL, 0, table, _what(op)))
    return requests


@encode.register
def _(op: AddAddress, links: Links, fds: dict[str, int]) -> Request:
    a = op.address
    body = (nl.ifaddrmsg(a.network.prefixlen, links(op.ns, op.dev))
            + nl.ip4(nl.IFA_LOCAL, a.ip) + nl.ip4(nl.IFA_ADDRESS, a.ip))
    return Request(nl.RTM_NEWADDR, nl.CREATE, body, _what(op), exists_ok=True)


@encode.register
def _(op: AddRoute, links: Links, fds: dict[str, int]) -> Request:
    proto = {"protocol": op.proto} if op.proto else {}
    if op.blackhole:
        body = nl.rtmsg(op.dst.prefixlen, nl.RT_SCOPE_UNIVERSE, nl.RTN_BLACKHOLE, **proto)
    else:
        scope = _SCOPES[op.scope] if op.scope else nl.RT_SCOPE_UNIVERSE if op.via else nl.RT_SCOPE_LINK
        body = nl.rtmsg(op.dst.prefixlen, scope, nl.RTN_UNICAST, nl.RTNH_F_ONLINK if op.onlink else 0)
    if op.dst.prefixlen:
        body += nl.ip4(nl.RTA_DST, op.dst.network_address)
    if op.via:
        body += nl.ip4(nl.RTA_GATEWAY, op.via)
    if op.dev:
        body += nl.u32(nl.RTA_OIF, links(op.ns, op.dev))
    if op.src:
        body += nl.ip4(nl.RTA_PREFSRC, op.src)
    return Request(nl.RTM_NEWROUTE, nl.CREATE, body, _what(op), exists_ok=False)


_SCOPES = {"link": nl.RT_SCOPE_LINK, "host": nl.RT_SCOPE_HOST}


@encode.register
def _(op: DelRoute, links: Links, fds: dict[str, int]) -> Request:
    # As the ptp plugin deletes it: by destination and device, any protocol and scope (NOWHERE); a
    # gateway, where given, narrows it to that route (`ip route del DST via GW`).
    body = nl.rtmsg(op.dst.prefixlen, nl.RT_SCOPE_NOWHERE, 0, protocol=0) + nl.ip4(nl.RTA_DST, op.dst.network_address)
    if op.via:
        body += nl.ip4(nl.RTA_GATEWAY, op.via)
    if op.dev:
        body += nl.u32(nl.RTA_OIF, links(op.ns, op.dev))
    return Request(nl.RTM_DELROUTE, 0, body, _what(op), gone_ok=True)


@encode.register
def _(op: AddNeighbour, links: Links, fds: dict[str, int]) -> Request:
    body = (nl.ndmsg(nl.AF_INET, links(op.ns, op.dev), nl.NUD_PERMANENT)
            + nl.ip4(nl.NDA_DST, op.address) + nl.mac(nl.NDA_LLADDR, op.mac))
    return Request(nl.RTM_NEWNEIGH, nl.CREATE, body, _what(op), exists_ok=False)


@encode.register
def _(op: DelNeighbour, links: Links, fds: dict[str, int]) -> Request:
    body = nl.ndmsg(nl.AF_INET, links(op.ns, op.dev), 0) + nl.ip4(nl.NDA_DST, op.address)
    return Request(nl.RTM_DELNEIGH, 0, body, _what(op), gone_ok=True)


@encode.register
def _(op: AddFdb, links: Links, fds: dict[str, int]) -> Request:
    body = (nl.ndmsg(nl.AF_BRIDGE, links(op.ns, op.dev), nl.NUD_PERMANENT, nl.NTF_SELF)
            + nl.mac(nl.NDA_LLADDR, op.mac) + nl.ip4(nl.NDA_DST, op.dst))
    # NLM_F_REPLACE: an entry already there is replaced, so the kernel never answers EEXIST.
    return Request(nl.RTM_NEWNEIGH, nl.NLM_F_CREATE | nl.NLM_F_REPLACE, body, _what(op))


@encode.register
def _(op: DelFdb, links: Links, fds: dict[str, int]) -> Request:
    body = (nl.ndmsg(nl.AF_BRIDGE, links(op.ns, op.dev), 0, nl.NTF_SELF)
            + nl.mac(nl.NDA_LLADDR, op.mac) + nl.ip4(nl.NDA_DST, op.dst))
    return Request(nl.RTM_DELNEIGH, 0, body, _what(op), gone_ok=True)


def build(lab: str, ops: list[Op] | tuple[Op, ...], progress: Progress | None = None,
          say: Callable[[str], None] | None = None) -> None:
    """Create every object of the plan, write its files, start its daemons, and return once the
    lab is ready: every veth running and every daemon passing its readiness check. On failure
    raise PodlabError naming the object and the operation; what was made stays journalled, for
    the caller to destroy (lab.clean.teardown)."""
    journal = Journal(lab)
    daemons = Daemons(lab, ops)
    try:
        daemons.spawn_early()
        made = _make_namespaces(lab, journal, ops, progress)
        try:
            write_files(lab, ops)
            daemons.hand_over()   # the agent opens the pods' sockets on the other core meanwhile
            links = _links(ops, made, progress)
            _nft([op for op in ops if isinstance(op, ApplyNft)], progress)
            _wait_running(ops, made, links)
            _cni(lab, ops, say)
        finally:
            for handle in made.values():
                handle.close()
        daemons.network_ready(say)
    except BaseException:
        daemons.discard()
        raise


def _make_namespaces(lab: str, journal: Journal, ops: list[Op] | tuple[Op, ...],
                     progress: Progress | None) -> dict[str, netns.Created]:
    """The plan's new namespaces, each with its sysctls; journalled as intended first, then by
    identity once made (before it gets its name), so a crash at any point leaves nothing unnamed."""
    creates = [op for op in ops if isinstance(op, CreateNamespace)]
    if not creates:
        return {}      # a change that makes none (a pod deleted): no helper thread to start
    taken = [op.ns for op in creates if netns.exists(op.ns)]
    if taken:
        raise PodlabError(f"network namespace {taken[0]} already exists ({len(taken)} names taken): "
                          f"another lab or program uses it; pick another lab name with --name")
    sysctls: dict[str, list[netns.Sysctl]] = {}
    for op in ops:
        if isinstance(op, SetSysctls):
            sysctls.setdefault(op.ns, []).extend([(k, v, False) for k, v in op.settings]
                                                 + [(k, v, True) for k, v in op.if_present])
        elif isinstance(op, SetSysctl):
            sysctls.setdefault(op.ns, []).append((op.key, op.value, False))
    specs = [(op.ns, op.hostname, state.uts_path(lab, op.ns)) for op in creates]
    journal.record_many("netns", [{"name": ns, "uts": uts, "role": op.role}
                                  for (ns, _, uts), op in zip(specs, creates)])
    if progress:
        progress("namespaces", 0, len(specs))

    def made_one(name: str, net: netns.NsId, uts: netns.NsId) -> None:
        journal.record("netns-made", name=name, net=list(net), uts=list(uts))

    def mount_point(dev: int, ino: int) -> None:
        journal.record("mountpoint", dev=dev, ino=ino)

    made = netns.create(specs, sysctls, on_created=made_one, on_mount_point=mount_point)
    if progress:
        progress("namespaces", len(specs), len(specs))
    return made


def change(lab: str, ops: list[Op] | tuple[Op, ...], remove_namespaces: tuple[str, ...] | list[str],
           before_removal: Callable[[], None], after_build: Callable[[], None],
           gone_links: tuple[tuple[str, str], ...] | list[tuple[str, str]] = (), again: bool = False) -> float:
    """Change a running lab: remove the namespaces of pods (and nodes) that went, make the new ops (new
    namespaces, and their links, addresses, routes and neighbours in the namespaces already there),
    write the files; `before_removal` and `after_build` have the workload agent let go of the pods
    that go and serve the new ones; then the engine's daemons follow (daemons.change_daemons).
    Journalled like a build: `down` removes whatever a change made, even a change cut short.
    Returns the seconds the kernel work took: all of it but the agent's and the daemons' turns.

    `again`: the change was cut short and is made again (lab.converge). The caller names the new
    namespaces among those to remove (they may be half made); requests in the namespaces that stay
    replace what they make (it may be there already); deletions take what is gone for done anyway."""
    started = time.monotonic()
    journal = Journal(lab)
    # Only those removed: a 1000-pod lab's journal has ~5000 records.
    made_before = journal.made_namespaces(set(remove_namespaces)) if remove_namespaces else {}
    let_go = time.monotonic()
    before_removal()     # the agent stops the pods that go: their sockets would keep the namespaces alive
    faults.point("pods let go")
    agent = time.monotonic() - let_go
    if remove_namespaces and cni_paths.root(lab).exists():    # a lab with plugins (the runner: ~25 ms to import)
        from lab.cni import runner
        runner.delete(lab, remove_namespaces)    # kubelet's DEL comes before the sandbox goes
    mount_inodes = journal.mount_inodes() if remove_namespaces else set()
    uts_dir = str(state.lab_dir(lab) / "uts") + "/"
    for name in remove_namespaces:
        record = made_before.get(name)
        if record is not None:
            netns.remove_owned(name, ns_id(record), record.get("t"), mount_inodes)
            netns.remove_mount(uts_dir + name)
            journal.record("netns-removed", name=name)
    _wait_gone(gone_links)
    made = _make_namespaces(lab, journal, ops, None)
    touched = {op.ns for op in ops if hasattr(op, "ns") and op.ns and op.ns not in made}
    try:
        # One helper thread walks every namespace the change touches (a Deployment scaled down by 100
        # deletes neighbour entries in some 1,000 pods: a thread each cost 0.5 s).
        names = sorted(touched)
        socks = netns.run_in_each([(name, _netlink_socket) for name in names])
        for name, sock in zip(names, socks):
            if isinstance(sock, OSError):
                raise sock
            made[name] = netns.Created(name, os.open(netns.netns_path(name), os.O_RDONLY), sock, None)
        links = _links(ops, made, None, again=again)
        nft = [op for op in ops if isinstance(op, ApplyNft)]
        _nft(nft, None, replace=True)
        if nft:
            faults.point("nftables loaded")
        _wait_running(ops, made, links)
        _cni(lab, ops, None)
    finally:
        for handle in made.values():
            handle.close()
    write_files(lab, ops, atomic=True)
    faults.point("files written")
    kernel = time.monotonic() - started - agent
    after_build()        # the agent serves the new pods, whose namespaces exist now
    change_daemons(lab, ops)
    return kernel


def _netlink_socket() -> socket.socket:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)


def _cni(lab: str, ops: list[Op] | tuple[Op, ...], say: Callable[[str], None] | None) -> None:
    """The real plugins' part of a cni lab: each node prepared, then the pods' ADDs (lab.cni.runner)."""
    nodes = [op for op in ops if isinstance(op, CniNode)]
    adds = [op for op in ops if isinstance(op, CniAdd)]
    if not nodes and not adds:
        return
    from lab.cni import runner
    runner.prepare(lab, nodes)
    known = {op.node: op for op in nodes}
    for node in {op.node for op in adds} - set(known):
        recorded = runner.node_op(lab, node)      # a change adding pods to nodes that are set up
        if recorded is None:
            raise PodlabError(f"node {node} has no CNI runtime recorded in the lab's state")
        known[node] = recorded
    if say and adds:
        say(f"  CNI ADD of {len(adds)} pods on {len({op.node for op in adds})} nodes ...")
    runner.add(lab, known.values(), adds, say or (lambda _: None))


def _wait_gone(links: tuple[tuple[str, str], ...] | list[tuple[str, str]], timeout: float = 10.0) -> None:
    """Until the veths of removed pods' namespaces are gone from their nodes. The kernel frees a
    namespace (and destroys its veths, and with them their other ends) a moment after its last
    reference goes, in a worker of its own; a pod made again under its name needs that name free."""
    waiting = list(links)
    by_ns: dict[str, socket.socket] = {}
    deadline = time.monotonic() + timeout
    try:
        while waiting:
            for ns, _name in waiting:
                if ns not in by_ns:
                    by_ns[ns] = netns.socket_in(ns, socket.AF_NETLINK, socket.SOCK_RAW, 0)
                    by_ns[ns].bind((0, 0))
            waiting = [(ns, name) for ns, name in waiting if link_index(by_ns[ns], name) is not None]
            if waiting and time.monotonic() > deadline:
                raise PodlabError(f"{waiting[0][1]} in {waiting[0][0]} was still there {timeout:g} s after its pod's "
                                  "namespace was removed: something else holds that namespace")
            if waiting:
                time.sleep(0.005)
    finally:
        for sock in by_ns.values():
            sock.close()


def _wait_running(ops: list[Op] | tuple[Op, ...], made: dict[str, netns.Created], links: Links,
                  timeout: float = 10.0) -> None:
    """Until every link that carries the lab's packets is running. The kernel turns a veth's carrier
    on at once when both ends are up, but starts its queue later, in its link watcher; a packet
    sent before is dropped. A bridge gets its carrier from its ports and is started by the same
    watcher, which may put a bridge off by up to a second.

    The watcher takes veths (and vxlan devices) in the order their carriers came on (a FIFO list),
    so once the veth whose carrier came on last is running, every veth is: that is both ends of the
    pair brought up last (links.brought_up). Bridges with ports are asked for each. A few requests, not
    one per pod (a thousand-pod node answers a dump of its links in ~0.1 s)."""
    waiting: dict[str, list[int]] = {}

    def wait_for(ns: str, name: str) -> None:
        waiting.setdefault(ns, []).append(links(ns, name))

    peers: dict[tuple[str, str], tuple[str, str]] = {}
    bridges: list[tuple[str, str]] = []
    with_ports: set[tuple[str, str]] = set()
    for op in ops:   # one pass: a thousand-pod plan has some 20,000 ops
        kind = type(op)
        if kind is CreateVeth:
            peers[(op.ns, op.name)] = (op.peer_ns, op.peer)
            peers[(op.peer_ns, op.peer)] = (op.ns, op.name)
            if op.master:
                with_ports.add((op.ns, op.master))
        elif kind is SetMaster:
            with_ports.add((op.ns, op.master))
        elif kind is CreateBridge:
            bridges.append((op.ns, op.name))
        elif kind is CreateVxlan:
            wait_for(op.ns, op.name)
    last = next((link for link in reversed(links.brought_up) if link in peers), None)
    if last is not None:
        wait_for(*last)
        wait_for(*peers[last])
    for bridge in bridges:
        if bridge in with_ports:
            wait_for(*bridge)
    deadline = time.monotonic() + timeout
    pause = 0.001
    while waiting:
        for ns in list(waiting):
            running = links_running(made[ns].nl, waiting[ns])
            waiting[ns] = [i for i in waiting[ns] if i not in running]
            if not waiting[ns]:
                del waiting[ns]
        if not waiting:
            return
        if time.monotonic() > deadline:
            ns = next(iter(waiting))
            raise PodlabError(f"{sum(map(len, waiting.values()))} links were not running after {timeout:g} s "
                              f"(in {ns}, ifindex {waiting[ns][0]}, among others): is the machine overloaded?")
        time.sleep(pause)
        pause = min(0.02, pause * 2)


# From this phase on (links up, bridge ports, addresses, routes, neighbours, FDB) every op
# touches only objects of its own namespace, which all exist by then: each namespace's ops of
# all these phases go out together, in phase order, in one send(2).
_LOCAL_PHASES = PHASE[LinkUp]
# A link the kernel can create already up: a veth's peer cannot be (ENOTCONN), only `name`.
# Bridges are not: see _links.
_CREATED_UP = {CreateVeth: lambda op: op.name, CreateVxlan: lambda op: op.name}


def _again(request: Request) -> Request:
    """A request of a change made again, in a namespace that stayed: a route or neighbour entry it
    makes may be there already: it replaces (the end state is the plan's either way). Deletions take
    what is gone for done already (Request.gone_ok)."""
    if request.type in (nl.RTM_NEWNEIGH, nl.RTM_NEWROUTE) and request.flags & nl.NLM_F_EXCL:
        return replace(request, flags=(request.flags & ~nl.NLM_F_EXCL) | nl.NLM_F_REPLACE)
    return request


def _links(ops: list[Op] | tuple[Op, ...], made: dict[str, netns.Created], progress: Progress | None,
           again: bool = False) -> Links:
    rest = [op for op in ops if not isinstance(op, (CreateNamespace, SetSysctls, SetSysctl, ApplyNft, WriteFile,
                                                    StartDaemon, UpdateDaemon, CniNode, CniAdd))]
    created = {(op.ns, _CREATED_UP[type(op)](op)) for op in rest if type(op) in _CREATED_UP}
    up = {(op.ns, op.name) for op in rest if isinstance(op, LinkUp)} & created
    rest = [op for op in rest if not (isinstance(op, LinkUp) and (op.ns, op.name) in up)]
    links = Links(up)
    for name, handle in made.items():
        if handle.max_index is None:
            links.add_existing(name, handle.nl)
        else:
            links.add_namespace(name, handle.max_index)
    fds = {name: h.fd for name, h in made.items()}
    channels = {name: Channel(h.nl) for name, h in made.items()}
    # Bridges go up last, once every pod's end is up, and only then start snooping multicast.
    # The end state is the plan's; the order spares the kernel two costs that grow with the
    # square of a bridge's ports: each port that turns up makes the bridge re-walk all its ports
    # (with snooping on, re-arming two query timers on each), and each new pod's first IPv6
    # chatter (MLD reports, DAD) would be flooded to every port already forwarding. A bridge
    # coming up enables all its ports in one walk; its qdisc starts at once (it has carrier).
    # 1000 pods on one bridge: ~35% less time for the kernel.
    bridges: dict[str, list[str]] = {}
    for op in rest:
        if isinstance(op, CreateBridge):
            bridges.setdefault(op.ns, []).append(op.name)
    stages = groupby(rest, key=lambda op: min(PHASE[type(op)], _LOCAL_PHASES))
    for stage, group in stages:
        batch = list(group)
        # Within a stage no op depends on another namespace's op of that stage, so grouping
        # by namespace (stable: phase order is kept) keeps each send(2) as large as possible.
        batch.sort(key=lambda op: (stage == _LOCAL_PHASES and op.ns in bridges, op.ns))
        for ns, per_ns in groupby(batch, key=lambda op: op.ns):
            channel = channels[ns]
            for op in sorted(per_ns, key=lambda op: PHASE[type(op)]) if stage == _LOCAL_PHASES else per_ns:
                encoded = encode(op, links, fds)
                for request in encoded if isinstance(encoded, list) else (encoded,):
                    channel.queue(_again(request) if again and ns in links.existing else request)
            if stage == _LOCAL_PHASES:
                for bridge in bridges.get(ns, ()):
                    channel.queue(_snooping_on(ns, bridge, links))
            try:
                channel.flush()
            except NetlinkError as e:
                raise PodlabError(f"failed: {e}") from None
            faults.point("netlink batch")
        if progress:
            for phase, done in groupby(sorted(PHASE[type(op)] for op in batch)):
                count = len(list(done))
                progress(_PHASE_NAMES[phase], count, count)
    return links


def _nft(ops: list[ApplyNft], progress: Progress | None, replace: bool = False) -> None:
    """Load each namespace's tables in one transaction there, through libnftables in a thread that
    joins each namespace (lab.engine.nftables), or else one `nft -f -` run inside it (nft speaks
    netlink for us); the tables go away with the namespace, so nothing else needs undoing.
    `replace`: each table replaces the one of its name in the same transaction (made empty if
    missing, deleted, defined again), so a running lab's Services never see half a table;
    conntrack keeps established flows."""
    if not ops:
        return
    per_ns: dict[str, list[ApplyNft]] = {}
    for op in ops:
        per_ns.setdefault(op.ns, []).append(op)

    def text_of(ns: str) -> str:
        return "".join((f"table {op.table} {{}}\ndelete table {op.table}\n" if replace else "") + op.ruleset
                       for op in per_ns[ns])

    def failed(ns: str, why: str) -> str:
        return f"nft -f in {ns} could not load {', '.join(op.table for op in per_ns[ns])}: {why[:2000]}"

    names = sorted(per_ns)
    errors = nftables.load([(ns, text_of(ns)) for ns in names])
    if errors is not None:
        for ns, error in zip(names, errors):
            if error:
                raise PodlabError(failed(ns, error))
        if progress:
            progress(_PHASE_NAMES[9], len(ops), len(ops))
        return

    def load(ns: str) -> str | None:
        text = text_of(ns)
        try:
            r = subprocess.run(nsexec.command(["nft", "-f", "-"], ns), input=text, capture_output=True, text=True,
                               timeout=60)
        except FileNotFoundError:
            return "nft is not installed (apt-get install nftables)"
        except subprocess.TimeoutExpired:
            return f"nft -f in {ns} did not finish in 60 s"
        if r.returncode != 0:   # nsenter's own failures (the namespace is gone) are told here too
            return failed(ns, r.stderr.strip())
        return None

    for ns in names:   # one after another: a few ms each, and no fork from several threads
        error = load(ns)
        if error:
            raise PodlabError(error)
    if progress:
        progress(_PHASE_NAMES[9], len(ops), len(ops))


def destroy(lab: str) -> list[str]:
    """Remove every namespace this lab made, by its journal. Returns those removed.

    A name is removed only if the namespace there is the very one recorded when it was made
    (netns.remove_owned): a name recorded as intended but never made, or taken since by
    another program, is left alone, whatever it is called.
    """
    from concurrent.futures import ThreadPoolExecutor   # `down` only (with it, logging: ~5 ms a command)
    journal = Journal(lab)
    made = journal.made_namespaces()
    mount_inodes = journal.mount_inodes()
    uts_dir = str(state.lab_dir(lab) / "uts") + "/"

    def remove(entry: dict) -> str | None:
        name, uts = entry.get("name"), entry.get("uts")
        if not isinstance(name, str) or not _valid_netns_name(name):
            return None
        record = made.get(name)
        ident = ns_id(record) if record else None
        outcome = netns.remove_owned(name, ident, record.get("t") if record else None, mount_inodes)
        # The UTS mount lives in the lab's own directory; a record pointing elsewhere is not ours.
        if isinstance(uts, str) and uts.startswith(uts_dir) and "/../" not in uts:
            netns.remove_mount(uts)
        return name if outcome == "removed" else None

    entries, seen = [], set()
    for entry in reversed(journal.of_kind("netns")):     # each name once: threads never race on one
        if entry.get("name") not in seen:
            seen.add(entry.get("name"))
            entries.append(entry)
    # Each unmount waits for an RCU grace period (~1-2 ms, longer on a busy machine) and
    # barely uses the CPU; unmounts made at the same time share grace periods, so a pool of
    # threads takes a 1000-pod lab down in a fraction of the time one thread needs.
    with ThreadPoolExecutor(max_workers=min(UNMOUNT_THREADS, max(1, len(entries))),
                            thread_name_prefix="podlab-umount") as pool:
        outcomes = list(pool.map(remove, entries))
    return [name for name in outcomes if name]


def leftovers(lab: str) -> list[str]:
    """Namespaces this lab made that still exist (the very ones, by identity)."""
    return [name for name, record in Journal(lab).made_namespaces().items()
            if _valid_netns_name(name) and (ident := ns_id(record)) is not None
            and netns.identity(netns.netns_path(name)) == ident]


def _valid_netns_name(name: str) -> bool:
    try:
        netns.netns_path(name)
    except ValueError:
        return False
    return True
