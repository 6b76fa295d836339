"""The wiring every design shares: namespaces, the underlay switch, node uplinks, outside hosts,
and the stable MACs that static neighbour entries name."""
from __future__ import annotations

from ipaddress import IPv4Network

from lab.addressing import AddressPlan, NodeAddr, interface, stable_mac
from lab.model import Topology
from lab.ops import (AddAddress, AddNeighbour, AddRoute, CreateBridge, CreateNamespace, CreateVeth, LinkUp, Op,
                     SetSysctl, SetSysctls)

UNDERLAY_BRIDGE = "br0"
DEFAULT = IPv4Network("0.0.0.0/0")

# What a new namespace gets from a kernel that does not inherit the root namespace's settings
# (net.core.devconf_inherit_init_net=2), written out for every namespace of a lab: by default a
# new namespace inherits the root's IPv4 conf/all and conf/default, which on a Docker or
# Kubernetes host forward packets and filter by reverse path. The design then sets what it needs
# (a node forwards; a VPC router forwards). No pod forwards unless its attachment says so.
_IPV4 = (("forwarding", "0"), ("rp_filter", "0"), ("accept_redirects", "1"), ("secure_redirects", "1"),
         ("send_redirects", "1"), ("accept_local", "0"), ("route_localnet", "0"), ("proxy_arp", "0"),
         ("arp_ignore", "0"), ("arp_announce", "0"), ("arp_filter", "0"))
IPV4_BASELINE = (tuple((f"net.ipv4.conf.all.{k}", v) for k, v in _IPV4) + (("net.ipv4.conf.all.accept_source_route", "0"),)
                 + tuple((f"net.ipv4.conf.default.{k}", v) for k, v in _IPV4)
                 + (("net.ipv4.conf.default.accept_source_route", "1"),))
# br_netfilter, where loaded (a Kubernetes host), passes every bridged frame through iptables and
# nftables in every namespace; bridges that need it (kube-proxy's, lab.services) turn it back on.
NO_BRIDGE_NETFILTER = tuple((f"net.bridge.bridge-nf-call-{t}", "0") for t in ("iptables", "ip6tables", "arptables"))


# The plugins (pkg/ip/link_linux.go SetupVeth, bridge's ensureBridge) turn router advertisements off on
# the host veths and the bridge ("we want to own the routes for this interface"); every link a node
# gets is made after its namespace, so the node's conf/default gives it to each. Where IPv6 is on.
NODE_IPV6 = (("net.ipv6.conf.default.accept_ra", "0"),)


def namespaces(topo: Topology, addrs: AddressPlan, node_bridges: bool, machines: bool = True) -> list[Op]:
    """Every namespace, set up as the kernel would not; `machines=False`: the pods' only."""
    made: list[CreateNamespace] = [CreateNamespace(addrs.underlay_netns, "underlay", "underlay")] if machines else []
    made += [CreateNamespace(n.netns, n.name, "node") for n in addrs.nodes] if machines else []
    made += [CreateNamespace(p.netns, p.name, "pod") for p in addrs.pods if not p.host_network]
    made += [CreateNamespace(h.netns, h.name, "outside") for h in addrs.outside] if machines else []
    bridged = {addrs.underlay_netns} | ({n.netns for n in addrs.nodes} if node_bridges else set())
    ops: list[Op] = list(made)
    extra = {"node": NODE_IPV6}
    ops += [SetSysctls(ns.ns, IPV4_BASELINE, (NO_BRIDGE_NETFILTER if ns.ns in bridged else ()) + extra.get(ns.role, ()))
            for ns in made]
    ops += [LinkUp(ns.ns, "lo") for ns in made]
    return ops


def underlay_switch(topo: Topology, addrs: AddressPlan) -> list[Op]:
    """The physical switch (or VPC subnet): one bridge, one port per node and outside host.

    Ports are named after the machine they lead to, so `bridge link` reads like a patch panel.
    """
    ns = addrs.underlay_netns
    ops: list[Op] = [
        # A VPC router never redirects hosts to each other: every packet must cross the route table.
        SetSysctl(ns, "net.ipv4.conf.all.send_redirects", "0"),
        SetSysctl(ns, "net.ipv4.conf.default.send_redirects", "0"),
        CreateBridge(ns, UNDERLAY_BRIDGE, topo.mtu, mac=bridge_mac(addrs, "underlay", UNDERLAY_BRIDGE)),
        LinkUp(ns, UNDERLAY_BRIDGE)]
    for machine in (*addrs.nodes, *addrs.outside):
        ops += [CreateVeth(ns, machine.name, machine.netns, "eth0", topo.mtu, master=UNDERLAY_BRIDGE,
                           alias=f"podlab {addrs.lab} uplink of {machine.name}",
                           peer_mac=fixed_mac(addrs, machine.name, "eth0")),
                LinkUp(ns, machine.name), LinkUp(machine.netns, "eth0")]
    return ops


def node_uplink_address(topo: Topology, addrs: AddressPlan, node: NodeAddr, dev: str = "eth0") -> list[Op]:
    return [AddAddress(node.netns, dev, interface(node.ip, addrs.underlay_prefixlen))]


def forwarding(netns: str) -> SetSysctl:
    return SetSysctl(netns, "net.ipv4.ip_forward", "1")


def routed_node(topo: Topology, addrs: AddressPlan, node: NodeAddr) -> list[Op]:
    """A node that routes between its pods and its uplink, whose address is on eth0."""
    return [forwarding(node.netns), *node_uplink_address(topo, addrs, node)]


def outside_hosts(topo: Topology, addrs: AddressPlan, default_via_router: bool) -> list[Op]:
    ops: list[Op] = []
    for host in addrs.outside:
        ops.append(AddAddress(host.netns, "eth0", interface(host.ip, addrs.underlay_prefixlen)))
        if default_via_router:
            ops.append(AddRoute(host.netns, DEFAULT, via=addrs.router_ip))
    return ops


def bridge_mac(addrs: AddressPlan, owner: str, device: str) -> str:
    """A bridge's MAC, always set, as the CNI bridge plugin sets the bridge's MAC to itself: left
    to the kernel, a bridge takes its ports' lowest MAC and changes it as ports come and go (a
    veth plugged out and back in), and every pod's ARP entry for the gateway turns stale."""
    return stable_mac(addrs.lab, owner, device)


def fixed_mac(addrs: AddressPlan, owner: str, device: str) -> str | None:
    """A fixed MAC where static neighbour entries will name the device; else the kernel's random one."""
    return stable_mac(addrs.lab, owner, device) if addrs.static_neighbours else None


def node_pairs_neighbours(addrs: AddressPlan) -> list[Op]:
    """Node <-> node entries, for backends whose nodes send to each other straight over the underlay."""
    lab = addrs.lab
    return [AddNeighbour(node.netns, "eth0", peer.ip, stable_mac(lab, peer.name, "eth0"))
            for node in addrs.nodes for peer in addrs.nodes if peer is not node]
