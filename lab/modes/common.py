"""The wiring every mode shares: namespaces, the underlay switch, node uplinks, node
bridges, pods attached to their node's bridge (the CNI bridge plugin), outside hosts."""
from __future__ import annotations

from lab.addressing import (STATIC_PAIRS_LIMIT, AddressPlan, NodeAddr, PodAddr, interface, pod_prefixlen,
                            stable_mac)
from lab.model import Topology
from lab.ops import (AddAddress, AddNeighbour, AddRoute, CreateBridge, CreateNamespace, CreateVeth, LinkUp, Op,
                     SetHairpin, SetSysctl)
from ipaddress import IPv4Network

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
        CreateBridge(ns, UNDERLAY_BRIDGE, topo.mtu, mac=_bridge_mac(addrs, "underlay", UNDERLAY_BRIDGE)),
        LinkUp(ns, UNDERLAY_BRIDGE)]
    for machine in (*addrs.nodes, *addrs.outside):
        ops += [CreateVeth(ns, machine.name, machine.netns, "eth0", topo.mtu, master=UNDERLAY_BRIDGE,
                           alias=f"podlab {addrs.lab} uplink of {machine.name}",
                           peer_mac=_mac(addrs, machine.name, "eth0")),
                LinkUp(ns, machine.name), LinkUp(machine.netns, "eth0")]
    return ops


def node_uplink_address(topo: Topology, addrs: AddressPlan, node: NodeAddr, dev: str = "eth0") -> list[Op]:
    return [AddAddress(node.netns, dev, interface(node.ip, addrs.underlay_prefixlen))]


def node_bridge(topo: Topology, addrs: AddressPlan, node: NodeAddr) -> list[Op]:
    """cni0 with the block's gateway, as the bridge plugin with isGateway sets it up."""
    mask = pod_prefixlen(topo)
    return [CreateBridge(node.netns, topo.bridge, addrs.pod_mtu, mac=_bridge_mac(addrs, node.name, topo.bridge)),
            LinkUp(node.netns, topo.bridge),
            AddAddress(node.netns, topo.bridge, interface(node.gateway, mask))]


def pods(topo: Topology, addrs: AddressPlan) -> list[Op]:
    """Each pod: a veth from its node's bridge to eth0 in the pod, its address, default via the gateway."""
    ops: list[Op] = []
    for pod in addrs.pods:
        if pod.host_network:
            continue
        node = addrs.node(pod.node)
        ops += [CreateVeth(node.netns, pod.veth, pod.netns, "eth0", addrs.pod_mtu, master=topo.bridge,
                           alias=f"podlab {addrs.lab} pod {pod.name}", peer_mac=_mac(addrs, pod.name, "eth0")),
                LinkUp(node.netns, pod.veth), SetHairpin(node.netns, pod.veth),
                LinkUp(pod.netns, "eth0"),
                AddAddress(pod.netns, "eth0", interface(pod.ip, pod.prefixlen)),
                AddRoute(pod.netns, DEFAULT, via=node.gateway)]
    return ops


def forwarding(netns: str) -> SetSysctl:
    return SetSysctl(netns, "net.ipv4.ip_forward", "1")


def outside_hosts(topo: Topology, addrs: AddressPlan, default_via_router: bool) -> list[Op]:
    ops: list[Op] = []
    for host in addrs.outside:
        ops.append(AddAddress(host.netns, "eth0", interface(host.ip, addrs.underlay_prefixlen)))
        if default_via_router:
            ops.append(AddRoute(host.netns, DEFAULT, via=addrs.router_ip))
    return ops


def base(topo: Topology, addrs: AddressPlan) -> list[Op]:
    """Everything but the node uplink addressing and the inter-node routes, which are the mode's."""
    ops = namespaces(topo, addrs) + underlay_switch(topo, addrs)
    for node in addrs.nodes:
        ops += node_bridge(topo, addrs, node)
    return ops + pods(topo, addrs) + static_neighbours(topo, addrs)


def _bridge_mac(addrs: AddressPlan, owner: str, device: str) -> str:
    """A bridge's MAC, always set, as the CNI bridge plugin sets the bridge's MAC to itself: left
    to the kernel, a bridge takes its ports' lowest MAC and changes it as ports come and go (a
    veth plugged out and back in), and every pod's ARP entry for the gateway turns stale."""
    return stable_mac(addrs.lab, owner, device)


def _mac(addrs: AddressPlan, owner: str, device: str) -> str | None:
    """A fixed MAC where static neighbour entries will name the device; else the kernel's random one."""
    return stable_mac(addrs.lab, owner, device) if addrs.static_neighbours else None


def static_neighbours(topo: Topology, addrs: AddressPlan) -> list[Op]:
    """In large labs, the entries ARP would learn, written as permanent ones (see
    addressing.SHARED_ARP_BUDGET): pod <-> gateway, pod <-> pod on one node (up to
    addressing.STATIC_PAIRS_LIMIT), node <-> node, hosts <-> the VPC router and, in a VPC
    subnet, machine <-> machine. In l2 mode pods on different nodes still ARP for each other."""
    if not addrs.static_neighbours:
        return []
    lab = addrs.lab
    ops: list[Op] = []
    on_node: dict[str, list[PodAddr]] = {}
    for pod in addrs.pods:
        if not pod.host_network:
            on_node.setdefault(pod.node, []).append(pod)
    nodes = {n.name: n for n in addrs.nodes}
    pod_mac = {p.name: stable_mac(lab, p.name, "eth0") for p in addrs.pods}
    for pod in addrs.pods:
        if pod.host_network:
            continue
        node = nodes[pod.node]
        ops += [AddNeighbour(pod.netns, "eth0", node.gateway, stable_mac(lab, node.name, topo.bridge)),
                AddNeighbour(node.netns, topo.bridge, pod.ip, pod_mac[pod.name])]
        if addrs.static_pod_pairs:
            ops += [AddNeighbour(pod.netns, "eth0", other.ip, pod_mac[other.name])
                    for other in on_node[pod.node] if other is not pod]
    if topo.mode == "l2":
        return ops
    gateway = topo.routing == "gateway"
    router_mac = stable_mac(lab, "underlay", UNDERLAY_BRIDGE)
    for machine in (*addrs.nodes, *addrs.outside):
        if gateway:
            ops += [AddNeighbour(machine.netns, "eth0", addrs.router_ip, router_mac),
                    AddNeighbour(addrs.underlay_netns, UNDERLAY_BRIDGE, machine.ip,
                                 stable_mac(lab, machine.name, "eth0"))]
    if not gateway:
        for node in addrs.nodes:
            ops += [AddNeighbour(node.netns, "eth0", peer.ip, stable_mac(lab, peer.name, "eth0"))
                    for peer in addrs.nodes if peer is not node]
    else:
        # One VPC subnet: traffic goes out via the router, but a reply to another machine of the
        # subnet (a pod answering a node or the outside host) leaves its node straight for it.
        machines = (*addrs.nodes, *addrs.outside)
        if len(machines) * (len(machines) - 1) <= STATIC_PAIRS_LIMIT:
            macs = {m.name: stable_mac(lab, m.name, "eth0") for m in machines}
            for m in machines:
                ops += [AddNeighbour(m.netns, "eth0", peer.ip, macs[peer.name]) for peer in machines if peer is not m]
    return ops
