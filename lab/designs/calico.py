"""The calico attachment: Calico's CNI plugin and Felix, object for object.

No bridge, no address on the host side. Each pod gets a veth whose host end is `cali` + the first
11 hex characters of sha1("<namespace>.<pod>"), MAC ee:ee:ee:ee:ee:ee, proxy_arp=1 with
proxy_delay=0, forwarding=1, route_localnet=1 and rp_filter copied from the node's conf/default.
The pod holds its address as a /32 and reaches everything through 169.254.1.1, an address no
one holds: `169.254.1.1 dev eth0 scope link`, `default via 169.254.1.1 dev eth0`; the host end
answers its ARP by proxy. The node routes `<pod IP> dev caliX scope link` and holds a permanent
neighbour entry for the pod (Felix's). Addresses come from Calico IPAM (lab.calico_ipam).
(cni-plugin pkg/dataplane/linux/dataplane_linux.go; felix dataplane/linux/endpoint_mgr.go;
libcalico-go lib/backend/k8s/conversion/workload_endpoint_default.go; ../shared/reference/calico.md A1-A2.)
"""
from __future__ import annotations

import hashlib
from collections.abc import Collection
from ipaddress import IPv4Address, IPv4Network

from lab.addressing import AddressPlan, NodeAddr, PodAddr, interface, stable_mac
from lab.designs import wiring
from lab.designs.base import Attachment, Backend, Design
from lab.model import Topology
from lab.ops import AddAddress, AddNeighbour, AddRoute, CreateVeth, LinkUp, Op, SetLinkConf

GATEWAY = IPv4Address("169.254.1.1")
HOST_MAC = "ee:ee:ee:ee:ee:ee"
PREFIX = "cali"
# Felix sets rp_filter on each cali interface to the node's conf/default value: the lab's
# baseline (lab.designs.wiring.IPV4_BASELINE) leaves that at 0.
HOST_CONF = (("route_localnet", 1), ("proxy_arp", 1), ("forwarding", 1), ("rp_filter", 0))


def veth_name(namespace: str, pod: str) -> str:
    return PREFIX + hashlib.sha1(f"{namespace}.{pod}".encode()).hexdigest()[:11]


class CalicoAttachment(Attachment):
    def pod_prefixlen(self, topo: Topology, backend: Backend) -> int:
        return 32

    def gateway(self, block: IPv4Network) -> IPv4Address:
        return GATEWAY

    def veth_name(self, topo: Topology, namespace: str, pod: str) -> str:
        return veth_name(namespace, pod)

    def node_ops(self, design: Design, topo: Topology, addrs: AddressPlan, node: NodeAddr) -> list[Op]:
        """The node's default route, via its subnet's .1. Proxy ARP answers only for an address the
        node routes out of another interface: on a real node its default route covers 169.254.1.1.
        In a lab (but for the VPC router) no one holds .1, so nothing leaves the lab by it."""
        return [AddRoute(node.netns, wiring.DEFAULT, via=addrs.router_ip, dev="eth0")]

    def pod_ops(self, topo: Topology, addrs: AddressPlan, pod: PodAddr, node: NodeAddr) -> list[Op]:
        assert pod.veth is not None
        pod_mac = stable_mac(addrs.lab, pod.name, "eth0")   # Felix's permanent entry names it
        return [CreateVeth(node.netns, pod.veth, pod.netns, "eth0", addrs.pod_mtu,
                           alias=f"podlab {addrs.lab} pod {pod.name}", peer_mac=pod_mac, mac=HOST_MAC),
                LinkUp(node.netns, pod.veth), LinkUp(pod.netns, "eth0"),
                SetLinkConf(node.netns, pod.veth, HOST_CONF, proxy_delay=0),
                AddAddress(pod.netns, "eth0", interface(pod.ip, 32)),
                AddRoute(pod.netns, interface(GATEWAY, 32).network, dev="eth0", scope="link"),
                AddRoute(pod.netns, wiring.DEFAULT, via=GATEWAY, dev="eth0"),
                AddRoute(node.netns, interface(pod.ip, 32).network, dev=pod.veth, scope="link"),
                AddNeighbour(node.netns, pod.veth, pod.ip, pod_mac)]

    def static_neighbours(self, topo: Topology, addrs: AddressPlan, pods: Collection[str] | None = None) -> list[Op]:
        """pod -> 169.254.1.1 (which proxy ARP would answer with the host end's MAC)."""
        return [AddNeighbour(pod.netns, "eth0", GATEWAY, HOST_MAC) for pod in addrs.pods
                if not pod.host_network and (pods is None or pod.name in pods)]


CALICO = CalicoAttachment(
    name="calico", mirrors="Calico's CNI plugin and Felix (cali* veths, proxy ARP, Calico IPAM)",
    summary="a veth per pod, no bridge: /32 pods behind 169.254.1.1, which the node answers by proxy ARP",
    bridge=False, routed_same_node=True, ipam="calico", proxy_arp=True, node_default_route=True,
    network_defaults=(("podCIDR", "192.168.0.0/16"), ("nodeSubnet", "172.18.0.0/24")))
