"""Services and cluster DNS: how a Service address becomes a pod address, and a name an address.

  schema     the topology file's `services:` section; ClusterIP and NodePort allocation; the DNS pod
  endpoints  which pods stand behind each Service port (the EndpointSlice controller's work)
  nft        kube-proxy's nftables table and the portmap plugin's hostPort table, as text
  planner    what they add to a plan: nftables tables, bridge netfilter, a node route, the DNS
             server's configuration and readiness, each pod's resolv.conf and hosts
  dns        dnsmasq as the cluster DNS server: its configuration and the records it answers
  resolv     the kubelet's /etc/resolv.conf and /etc/hosts for each pod, and mounting them for exec
  dnsclient  a small DNS client (queries from inside a pod, the resolver's search list)
  probe      `podlab check`'s Service rows: by address, by name, hairpin, source preserved
  cli        `podlab get services|endpoints`, `podlab nslookup`, `podlab plan`'s Services

The package plugs into a lab as an add-on (lab.addons): ADDON below is all the planner sees.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:   # the planner's modules are imported when a plan is made, not with the package
    from lab.addressing import AddressPlan
    from lab.model import Topology
    from lab.ops import Op


class _Services:
    name = "services"

    def ops(self, topo: Topology, addrs: AddressPlan) -> list[Op]:
        from lab.services import planner
        return planner.ops(topo, addrs)


ADDON = _Services()
