"""Plan operations: pure data describing one kernel change each.

A Plan is an ordered list of these. Designs and add-ons produce them, `lab.commands` prints
them as ip/bridge/sysctl/nft commands and the daemons' command lines, and only `lab.engine`
turns them into netlink, files and processes.

`ns` is always the name of a lab namespace (as `ip netns` lists it). The plan is valid
when executed in PHASE order (stable), which lets the engine batch messages per namespace.
"""
from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network


@dataclass(frozen=True)
class CreateNamespace:
    ns: str
    hostname: str            # a UTS namespace comes with it, so `hostname` prints the pod or node name
    role: str                # node | pod | underlay | outside: for inspection and cleanup


@dataclass(frozen=True)
class CreateBridge:
    ns: str
    name: str
    mtu: int
    mac: str | None = None        # fixed, so static neighbour entries can name it


@dataclass(frozen=True)
class CreateVeth:
    """A veth pair; `name` lives in `ns`, `peer` is created straight into `peer_ns`."""
    ns: str
    name: str
    peer_ns: str
    peer: str
    mtu: int
    master: str | None = None     # bridge in `ns` that `name` is enslaved to
    alias: str | None = None      # human-readable owner of the host end, shown by `ip link`
    peer_mac: str | None = None   # fixed, so static neighbour entries can name it
    mac: str | None = None        # the host end's, likewise (ptp: the pods' gateway is this end)


@dataclass(frozen=True)
class CreateVxlan:
    ns: str
    name: str
    vni: int
    local: IPv4Address
    dev: str
    port: int
    mtu: int
    mac: str
    learning: bool = False


@dataclass(frozen=True)
class SetMaster:
    """Enslave an existing link to a bridge (l2 mode bridges a node's uplink into cni0)."""
    ns: str
    name: str
    master: str


@dataclass(frozen=True)
class LinkUp:
    ns: str
    name: str


@dataclass(frozen=True)
class SetHairpin:
    ns: str
    name: str


@dataclass(frozen=True)
class SetLinkConf:
    """A link's own IPv4 settings (net.ipv4.conf.<dev>.<key>) and ARP proxy delay
    (net.ipv4.neigh.<dev>.proxy_delay, ms): Calico's host veth answers ARP for every address."""
    ns: str
    dev: str
    conf: tuple[tuple[str, int], ...]
    proxy_delay: int | None = None


@dataclass(frozen=True)
class AddAddress:
    ns: str
    dev: str
    address: IPv4Interface


@dataclass(frozen=True)
class AddRoute:
    ns: str
    dst: IPv4Network
    via: IPv4Address | None = None
    dev: str | None = None
    onlink: bool = False
    blackhole: bool = False
    scope: str | None = None      # "link" or "host" where the plugin sets it; else the kernel's rule (via: global)
    src: IPv4Address | None = None   # preferred source address
    proto: int | None = None      # the route's protocol where the real daemon sets its own (Felix: 80); else boot


@dataclass(frozen=True)
class DelRoute:
    """Remove a route: one the kernel made (the ptp plugin deletes eth0's connected route), or in a
    running lab one the plan made for a node that left (its block's route on the other nodes)."""
    ns: str
    dst: IPv4Network
    dev: str | None = None
    via: IPv4Address | None = None


@dataclass(frozen=True)
class AddNeighbour:
    ns: str
    dev: str
    address: IPv4Address
    mac: str


@dataclass(frozen=True)
class DelNeighbour:
    """Remove a permanent neighbour entry (a running lab's pod that went: the entries other
    namespaces had written for it)."""
    ns: str
    dev: str
    address: IPv4Address


@dataclass(frozen=True)
class AddFdb:
    """A VXLAN forwarding entry: frames for `mac` go to the VTEP at `dst`."""
    ns: str
    dev: str
    mac: str
    dst: IPv4Address


@dataclass(frozen=True)
class DelFdb:
    """Remove a VXLAN forwarding entry (a running lab's node that left: the VTEP it was)."""
    ns: str
    dev: str
    mac: str
    dst: IPv4Address


@dataclass(frozen=True)
class SetSysctl:
    ns: str
    key: str                 # dotted, as sysctl(8) writes it: net.ipv4.ip_forward
    value: str


@dataclass(frozen=True)
class SetSysctls:
    """A namespace's baseline settings, set explicitly so a lab behaves the same on every host (a
    new namespace inherits the root namespace's IPv4 conf/all and conf/default: forwarding=1 on a
    Docker or Kubernetes host). `if_present` keys exist only with a kernel module loaded."""
    ns: str
    settings: tuple[tuple[str, str], ...]
    if_present: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ApplyNft:
    """Whole nftables tables (`nft -f` syntax) loaded into a namespace: kube-proxy's, portmap's."""
    ns: str
    table: str               # what it makes, e.g. "ip kube-proxy", for plans and messages
    ruleset: str
    # Kept by a daemon of the lab once loaded (kube-proxy's table: the agent's kube-proxy rewrites
    # each Service as its endpoints come and go): a change of a running lab loads it only into a
    # namespace it makes, and leaves the table the namespaces already have to that daemon.
    kept: bool = False


@dataclass(frozen=True)
class WriteFile:
    """A file the lab's processes read, written into the lab's state directory before they start:
    a daemon's configuration, or (with `pod`) a file the kubelet gives a pod's containers at
    `target`, as it gives them /etc/resolv.conf and /etc/hosts."""
    path: str                # "$LAB_DIR/..." (LAB_DIR: the lab's state directory, lab.state.lab_dir)
    content: str
    what: str                # for plans and messages
    show: bool = True        # False: a machine-readable file, which plans name but do not print
    pod: str | None = None
    target: str | None = None
    # Read again by a running daemon whenever it changes (dnsmasq's --hostsdir, through inotify):
    # replaced whole by a rename, so the daemon never reads it half written.
    live: bool = False


@dataclass(frozen=True)
class AnswersDns:
    """Ready once a DNS server in `ns` answers `name` at `server` (a readiness probe)."""
    ns: str
    server: IPv4Address
    name: str


@dataclass(frozen=True)
class AgentReady:
    """Ready once the workload agent reports every pod's sockets listening (its agent.json)."""


@dataclass(frozen=True)
class BgpEstablished:
    """Ready once the BIRD behind `socket` has every one of its `sessions` Established and the
    kernel of `ns` holds each of `routes` as learned by BGP (proto bird)."""
    ns: str
    socket: str                           # BIRD's control socket, "$LAB_DIR/..."
    sessions: int
    routes: tuple[IPv4Network, ...]


@dataclass(frozen=True)
class CniNode:
    """A node that runs real CNI plugins (the cni attachment): its own /run and /var/lib in a mount
    namespace of its own (lab.engine.node_mountns), and its network list, rendered from the conflist
    template with the node's values as containerd writes /etc/cni/net.d/10-containerd-net.conflist."""
    ns: str                       # the node's network namespace: the plugins' host
    node: str
    config: str                   # the rendered conflist
    cni_path: tuple[str, ...]
    timeout: float                # seconds a plugin may take before it is killed
    flannel_env: str = ""         # /run/flannel/subnet.env as flanneld writes it, for a list with the flannel plugin


@dataclass(frozen=True)
class CniAdd:
    """A pod attached by its node's plugins, as kubelet's RunPodSandbox has containerd do it: ADD of
    the chain (lab.cni.runtime), its result cached, DEL when the pod goes."""
    ns: str                       # the pod's network namespace (CNI_NETNS=/run/netns/<ns>)
    node: str
    node_ns: str
    pod: str
    container_id: str             # CNI_CONTAINERID: the sandbox's ID
    ifname: str                   # CNI_IFNAME
    args: tuple[tuple[str, str], ...]   # CNI_ARGS
    capability_args: str          # JSON: what runtimeConfig is cut from
    network: str = ""             # the node's list's name (for plans: the cache file's name)
    cni_path: tuple[str, ...] = ()


Readiness = AnswersDns | AgentReady | BgpEstablished


@dataclass(frozen=True)
class StartDaemon:
    """A process the lab runs, and when it counts as ready. `up` returns once every one is.

    kind "agent": the workload agent, the lab's container runtime (it runs in podlab's own
    namespaces and enters each pod itself); "container": a pod's container that the agent
    starts (the cluster DNS server); "process": a daemon the engine starts in `ns` once the
    network is set up (BIRD, as calico-node runs it)."""
    name: str
    kind: str
    ns: str | None
    argv: tuple[str, ...]    # "$LAB_DIR" stands for the lab's state directory, as in WriteFile
    config: tuple[str, ...]  # the WriteFile paths it reads
    ready: Readiness | None
    package: str             # the Debian package with argv[0], named when it is missing
    container: str | None = None   # kind "container": "<pod>/<container>"
    # How a running one is told to read its configuration again, in place (a running lab's change):
    # the command `reconfigure` sent on its control socket `control` ("$LAB_DIR/..."), which speaks
    # BIRD's CLI protocol (lab.bgp.birdc), as birdc does. None: it cannot be.
    control: str | None = None
    reconfigure: str | None = None


@dataclass(frozen=True)
class UpdateDaemon:
    """A running lab's daemon that stays, in a change: told to read its rewritten configuration
    (`reconfigure`: its own command, e.g. BIRD's `configure`), then waited for until it is ready as
    the new plan's `daemon` says (BIRD: the sessions and routes the new node list gives it)."""
    daemon: StartDaemon
    reconfigure: bool


Op = (CreateNamespace | CreateBridge | CreateVeth | CreateVxlan | SetMaster | LinkUp | SetHairpin | SetLinkConf
      | AddAddress | AddRoute | DelRoute | AddNeighbour | DelNeighbour | AddFdb | DelFdb | SetSysctls | SetSysctl
      | ApplyNft | WriteFile | StartDaemon | UpdateDaemon | CniNode | CniAdd)

# Execution order. Within a phase, ops on different namespaces are independent.
PHASE: dict[type, int] = {
    CreateNamespace: 0,
    SetSysctls: 1,           # before the design's own SetSysctl, which may change a baseline value
    SetSysctl: 1,
    CreateBridge: 2,
    CreateVeth: 3,
    CreateVxlan: 4,
    SetMaster: 4,
    LinkUp: 5,
    SetHairpin: 6,
    SetLinkConf: 6,
    AddAddress: 7,
    AddRoute: 8,
    DelRoute: 8,             # in plan order among the routes: after the routes that needed it
    AddNeighbour: 8,
    DelNeighbour: 8,
    AddFdb: 8,
    DelFdb: 8,
    ApplyNft: 9,             # after routes: `fib daddr type local` and DNAT need the addresses in place
    CniNode: 9,              # the plugins run once the nodes are wired (portmap's rules, routes to other blocks)
    CniAdd: 9,
    WriteFile: 10,
    StartDaemon: 11,         # once the network is set up; the engine starts the agent's interpreter early
    UpdateDaemon: 11,
}


def ordered(plan: list[Op]) -> list[Op]:
    """The plan in execution order (stable within a phase)."""
    return sorted(plan, key=lambda op: PHASE[type(op)])
