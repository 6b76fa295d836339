"""What Services and hostPorts add to a design's plan. Pure.

Per node, when the topology has a `services:` key: kube-proxy's nftables table, the bridge
netfilter switch it relies on, and a default route if the design gives the node none (a process
on the node connecting to a ClusterIP needs some route before nat-output can DNAT it; real
nodes have their subnet's gateway). Per node with hostPorts: the portmap table. And the cluster
DNS: dnsmasq's configuration, dnsmasq as a daemon, every pod's resolv.conf and hosts. And
kube-proxy.json, from which the workload agent keeps each node's kube-proxy table to the ready
endpoints once the lab runs (lab.services.kube_proxy).
"""
from __future__ import annotations

from ipaddress import IPv4Network

from lab import designs
from lab.addressing import AddressPlan
from lab.model import Topology
from lab import state
from lab.ops import AddRoute, ApplyNft, Op, SetSysctl, WriteFile
from lab.services import dns, endpoints, kube_proxy, nft, resolv

DEFAULT = IPv4Network("0.0.0.0/0")
# Pods on one node reach a ClusterIP through the node (routed) but the endpoint's answer comes
# back across the bridge (switched): only bridge netfilter lets conntrack see it and undo the
# DNAT. kubeadm's preflight demands it; here it is per namespace, so the host's stays as it is.
# Designs without a node bridge (ptp) route every packet through the node and need none of it.
BRIDGE_NF = "net.bridge.bridge-nf-call-iptables"
KUBE_PROXY_SPEC = state.in_lab_dir(kube_proxy.SPEC_FILE)


def ops(topo: Topology, addrs: AddressPlan) -> list[Op]:
    has_host_ports = any(p.host_port is not None for pod in topo.pods for c in pod.containers for p in c.port_specs)
    if not topo.cluster_services and not has_host_ports:
        return []
    splan = endpoints.plan(topo, addrs) if topo.cluster_services else None
    ruleset = nft.kube_proxy(splan, topo.pod_cidr) if splan else ""
    ip_of = {p.name: p.ip for p in addrs.pods}
    by_node: dict[str, list] = {}
    if has_host_ports:
        for pod in topo.pods:
            by_node.setdefault(pod.node, []).append((pod, ip_of[pod.name]))
    design = designs.of(topo)
    out: list[Op] = []
    for node in addrs.nodes:
        # With real plugins, hostPorts are portmap's (if the conflist has it), not podlab's table.
        host_ports = nft.host_ports(by_node.get(node.name, [])) if not design.attachment.runs_plugins else ""
        # With real plugins the list may well make a bridge (it does not matter to a node without one).
        if (design.attachment.bridge or design.attachment.runs_plugins) and (topo.cluster_services or host_ports):
            out.append(SetSysctl(node.netns, BRIDGE_NF, "1"))
        if topo.cluster_services:
            if design.node_sends_back():
                # The ICMP redirects the node would send for packets that leave by the interface
                # they came in by use up the per-host ICMP rate limit (the same inet_peer tokens)
                # that kube-proxy's reject (no endpoints) relies on. A real node sends them too.
                out += [SetSysctl(node.netns, "net.ipv4.conf.all.send_redirects", "0"),
                        SetSysctl(node.netns, "net.ipv4.conf.default.send_redirects", "0")]
            if not design.node_default_route:
                out.append(AddRoute(node.netns, DEFAULT, via=addrs.router_ip))
            out.append(ApplyNft(node.netns, f"ip {nft.TABLE}", ruleset, kept=True))
        if host_ports:
            out.append(ApplyNft(node.netns, f"ip {nft.HOSTPORT_TABLE}", host_ports))
    if splan:
        nodes = [n.netns for n in addrs.nodes]
        out.append(WriteFile(KUBE_PROXY_SPEC, kube_proxy.record(splan, topo.pod_cidr, nodes),
                             "kube-proxy's Services and their possible endpoints (the workload agent keeps "
                             "each node's table to the ready ones)", show=False))
        out += dns.ops(topo, addrs, splan) + resolv.files(topo, addrs, splan)
    return out
