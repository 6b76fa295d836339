"""The wiring every design shares: namespaces, the underlay switch, node uplinks, outside hosts,
and the stable MACs that static neighbour entries name."""
from __future__ import annotations

from ipaddress import IPv4Network

from lab.addressing import AddressPlan, NodeAddr, interface, stable_mac
from lab.model import Topology
from lab.ops import AddAddress, AddNeighbour, AddRoute, CreateBridge, CreateNamespace, CreateVeth, LinkUp, Op, SetSysctl

UNDERLAY_BRIDGE = "br0"
DEFAULT = IPv4Network("0.0.0.0/0")


def namespaces(topo: Topology, addrs: AddressPlan) -> list[Op]:
    ops: list[Op] = [CreateNamespace(addrs.underlay_netns, "underlay", "underlay")]
    ops += [CreateNamespace(n.netns, n.name, "node") for n in addrs.nodes]
    ops += [CreateNamespace(p.netns, p.name, "pod") for p in addrs.pods if not p.host_network]
    ops += [CreateNamespace(h.netns, h.name, "outside") for h in addrs.outside]
    ops += [LinkUp(ns.ns, "lo") for ns in ops if isinstance(ns, CreateNamespace)]
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
