"""The bridge attachment: the CNI bridge plugin with isGateway and hairpinMode, as flannel
delegates to it. cni0 holds the block's first address as the pods' gateway; each pod's veth
(host end `veth` + 8 hex, hairpin on) is a port of cni0; eth0 in the pod has `.2`, `.3`, ...
and `default via` the gateway. Pods of one node reach each other by switching alone."""
from __future__ import annotations

from collections.abc import Collection

from lab.addressing import AddressPlan, NodeAddr, PodAddr, interface, stable_mac
from lab.designs import wiring
from lab.designs.base import Attachment, Backend, Design
from lab.model import Topology
from lab.ops import AddAddress, AddNeighbour, AddRoute, CreateBridge, CreateVeth, LinkUp, Op, SetHairpin, SetLinkConf

# The bridge plugin's setupVeth (plugins/main/bridge/bridge.go, v1.1.1): the pod's eth0 announces itself
# by gratuitous ARP when it comes up or changes MAC (arp_notify=1). The plugin also turns IPv6 duplicate
# address detection off on it (accept_dad=0), which podlab leaves on: pods are IPv4 here, and without
# DAD's pause every new pod's IPv6 chatter starts at once, flooded over a bridge of a thousand ports
# (~0.5 s more for 1000 pods); docs/cni.md lists it among the differences.
ARP_NOTIFY = (("arp_notify", 1),)


class BridgeAttachment(Attachment):
    def pod_prefixlen(self, topo: Topology, backend: Backend) -> int:
        # On one broadcast domain every pod is on-link with every other pod.
        return topo.pod_cidr.prefixlen if backend.shared_segment else topo.node_mask

    def node_ops(self, design: Design, topo: Topology, addrs: AddressPlan, node: NodeAddr) -> list[Op]:
        mask = design.pod_prefixlen(topo)
        return [CreateBridge(node.netns, topo.bridge, addrs.pod_mtu,
                             mac=wiring.bridge_mac(addrs, node.name, topo.bridge)),
                LinkUp(node.netns, topo.bridge),
                AddAddress(node.netns, topo.bridge, interface(node.gateway, mask))]

    def pod_ops(self, topo: Topology, addrs: AddressPlan, pod: PodAddr, node: NodeAddr) -> list[Op]:
        assert pod.veth is not None
        return [CreateVeth(node.netns, pod.veth, pod.netns, "eth0", addrs.pod_mtu, master=topo.bridge,
                           alias=f"podlab {addrs.lab} pod {pod.name}",
                           peer_mac=wiring.fixed_mac(addrs, pod.name, "eth0")),
                LinkUp(node.netns, pod.veth), SetHairpin(node.netns, pod.veth),
                LinkUp(pod.netns, "eth0"),
                SetLinkConf(pod.netns, "eth0", ARP_NOTIFY),
                AddAddress(pod.netns, "eth0", interface(pod.ip, pod.prefixlen)),
                AddRoute(pod.netns, wiring.DEFAULT, via=node.gateway)]

    def static_neighbours(self, topo: Topology, addrs: AddressPlan, pods: Collection[str] | None = None) -> list[Op]:
        """pod <-> gateway, and pod <-> pod on one node (up to addressing.STATIC_PAIRS_LIMIT)."""
        lab = addrs.lab
        ops: list[Op] = []
        # With `pods`, the other pods hold entries for them on their nodes only.
        nodes = None if pods is None else {p.node for p in addrs.pods if p.name in pods}
        near = [p for p in addrs.pods if not p.host_network and (nodes is None or p.node in nodes)]
        on_node: dict[str, list[PodAddr]] = {}
        for pod in near:
            on_node.setdefault(pod.node, []).append(pod)
        pod_mac = {p.name: stable_mac(lab, p.name, "eth0") for p in near}
        for pod in near:
            mine = pods is None or pod.name in pods
            if mine:
                node = addrs.node(pod.node)
                ops += [AddNeighbour(pod.netns, "eth0", node.gateway, stable_mac(lab, node.name, topo.bridge)),
                        AddNeighbour(node.netns, topo.bridge, pod.ip, pod_mac[pod.name])]
            if addrs.static_pod_pairs:
                ops += [AddNeighbour(pod.netns, "eth0", other.ip, pod_mac[other.name])
                        for other in on_node[pod.node] if other is not pod and (mine or other.name in pods)]
        return ops


BRIDGE = BridgeAttachment(
    name="bridge", mirrors="the CNI bridge plugin (isGateway, hairpinMode) + host-local",
    summary="a node bridge (cni0) holding the gateway; every pod's veth is a port of it",
    bridge=True, routed_same_node=False)
