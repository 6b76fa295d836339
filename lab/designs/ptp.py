"""The ptp attachment: the CNI ptp plugin, as kindnet and GKE's containerd template use it.

No bridge. Each pod gets its own veth to the node; eth0 holds the pod's address with the
block's mask but its connected route removed, so everything goes to the gateway:
`<gw> dev eth0 scope link src <pod>`, `<block> via <gw> src <pod>` and, from host-local's
routes, `default via <gw>`. Every host veth holds `<gw>/32` (the same address on each), and the
node routes `<pod IP> dev vethX scope host`. Pod -> pod on one node is routed by the node.
(containernetworking/plugins plugins/main/ptp/ptp.go: setupContainerVeth, setupHostVeth.)"""
from __future__ import annotations

from collections.abc import Collection

from lab.addressing import AddressPlan, NodeAddr, PodAddr, interface, stable_mac
from lab.designs import wiring
from lab.designs.base import Attachment
from lab.model import Topology
from lab.ops import AddAddress, AddNeighbour, AddRoute, CreateVeth, DelRoute, LinkUp, Op

HOST_END = "host-veth"   # the owner/device key of a host end's fixed MAC


class PtpAttachment(Attachment):
    def pod_ops(self, topo: Topology, addrs: AddressPlan, pod: PodAddr, node: NodeAddr) -> list[Op]:
        assert pod.veth is not None
        gw, block = node.gateway, node.block
        return [CreateVeth(node.netns, pod.veth, pod.netns, "eth0", addrs.pod_mtu,
                           alias=f"podlab {addrs.lab} pod {pod.name}",
                           peer_mac=wiring.fixed_mac(addrs, pod.name, "eth0"),
                           mac=wiring.fixed_mac(addrs, pod.name, HOST_END)),
                LinkUp(node.netns, pod.veth), LinkUp(pod.netns, "eth0"),
                # ipam.ConfigureIface: the address, then host-local's route while the prefix route stands
                AddAddress(pod.netns, "eth0", interface(pod.ip, pod.prefixlen)),
                AddRoute(pod.netns, wiring.DEFAULT, via=gw, dev="eth0"),
                DelRoute(pod.netns, block, "eth0"),
                AddRoute(pod.netns, interface(gw, 32).network, dev="eth0", scope="link", src=pod.ip),
                AddRoute(pod.netns, block, via=gw, dev="eth0", src=pod.ip),
                # setupHostVeth
                AddAddress(node.netns, pod.veth, interface(gw, 32)),
                AddRoute(node.netns, interface(pod.ip, 32).network, dev=pod.veth, scope="host")]

    def static_neighbours(self, topo: Topology, addrs: AddressPlan, pods: Collection[str] | None = None) -> list[Op]:
        """pod -> its gateway (the host end of its own veth), node -> pod on that veth."""
        lab = addrs.lab
        ops: list[Op] = []
        for pod in addrs.pods:
            if pod.host_network or (pods is not None and pod.name not in pods):
                continue
            assert pod.veth is not None
            node = addrs.node(pod.node)
            ops += [AddNeighbour(pod.netns, "eth0", node.gateway, stable_mac(lab, pod.name, HOST_END)),
                    AddNeighbour(node.netns, pod.veth, pod.ip, stable_mac(lab, pod.name, "eth0"))]
        return ops


PTP = PtpAttachment(
    name="ptp", mirrors="the CNI ptp plugin + host-local (kindnet, GKE's containerd template)",
    summary="a veth per pod and no bridge; every host veth holds the gateway /32, the node routes each pod",
    bridge=False, routed_same_node=True)
