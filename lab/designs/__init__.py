"""Designs: an attachment (how a pod joins its node) x a backend (how nodes reach each other's
pod blocks), registered by name, and the presets that carry the real CNI's name.

  base       what an Attachment and a Backend state (the rest of podlab reads only that)
  wiring     what every design shares: namespaces, the underlay switch, uplinks, outside hosts
  bridge     attachment: the CNI bridge plugin (flannel's delegate)
  ptp        attachment: the CNI ptp plugin (kindnet, GKE)
  calico     attachment: Calico's CNI plugin and Felix (cali* veths, proxy ARP, Calico IPAM)
  cni        attachment: the user's conflist run by the real plugin binaries (lab.cni)
  l2, hostgw, vpc, vxlan, bgp, calico_vxlan, nobackend   backends (bgp runs BIRD: lab.bgp)

To add a design: a module with one Attachment or Backend instance, a line in ATTACHMENTS or
BACKENDS, and a preset in PRESETS if a real CNI is that combination (docs/designs.md).
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from functools import lru_cache

from lab.addressing import AddressPlan
from lab.designs import wiring
from lab.designs.base import Attachment, Backend, Design
from lab.designs.bgp import BGP
from lab.designs.bridge import BRIDGE
from lab.designs.calico import CALICO
from lab.designs.calico_vxlan import CALICO_VXLAN
from lab.designs.cni import CNI
from lab.designs.hostgw import HOST_GW
from lab.designs.l2 import L2
from lab.designs.nobackend import NONE
from lab.designs.ptp import PTP
from lab.designs.vpc import VPC
from lab.designs.vxlan import VXLAN
from lab.errors import PodlabError
from lab.model import DesignChoice, Topology
from lab.ops import Op

__all__ = ["Attachment", "Backend", "Design", "ATTACHMENTS", "BACKENDS", "PRESETS", "DEFAULT_PRESET",
           "preset", "combine", "from_mode", "resolve", "of", "preset_of", "plan"]

ATTACHMENTS: dict[str, Attachment] = {a.name: a for a in (BRIDGE, PTP, CALICO, CNI)}
BACKENDS: dict[str, Backend] = {b.name: b for b in (L2, HOST_GW, VPC, VXLAN, BGP, CALICO_VXLAN, NONE)}

# name -> (attachment, backend, what it is)
PRESETS: dict[str, tuple[str, str, str]] = {
    "flannel": ("bridge", "vxlan", "flannel with its default VXLAN backend"),
    "flannel-host-gw": ("bridge", "host-gw", "flannel's host-gw backend"),
    "bridge-l2": ("bridge", "l2", "the bridge plugin on one flat L2 network"),
    "vpc-routes": ("bridge", "vpc", "the cloud VPC route model (seed 000)"),
    "kindnet": ("ptp", "host-gw", "kind's default CNI: ptp + host-local, kindnetd's routes"),
    "gke-routes": ("ptp", "vpc", "GKE's routes-based cluster: ptp + VPC routes"),
    "calico": ("calico", "bgp", "Calico's default: proxy-ARP pods, BIRD's full-mesh BGP between nodes"),
    "calico-vxlan": ("calico", "calico-vxlan", "Calico in VXLAN mode: Felix's vxlan.calico, no BIRD"),
}
DEFAULT_PRESET = "flannel"

# The topology file's older keys: mode (and routing for l3) name a preset.
MODE_ALIASES: dict[tuple[str, str | None], str] = {
    ("vxlan", None): "flannel", ("l2", None): "bridge-l2",
    ("l3", "host"): "flannel-host-gw", ("l3", "gateway"): "vpc-routes",
}


def combine(attach: str, backend: str, preset_name: str | None = None) -> Design:
    """The design of two named parts; PodlabError (listing the known names) if they do not fit."""
    if attach not in ATTACHMENTS:
        raise PodlabError(f"unknown attachment {attach!r}: known attachments are {', '.join(ATTACHMENTS)}")
    if backend not in BACKENDS:
        raise PodlabError(f"unknown backend {backend!r}: known backends are {', '.join(BACKENDS)}")
    a, b = ATTACHMENTS[attach], BACKENDS[backend]
    if b.needs_bridge and not a.bridge:
        fits = ", ".join(n for n, x in ATTACHMENTS.items() if x.bridge)
        raise PodlabError(f"backend {backend} bridges each node's uplink into the pods' bridge, and attachment "
                          f"{attach} has no bridge: use it with attachment {fits}")
    return Design(a, b, preset_name)


def preset(name: str) -> Design:
    if name not in PRESETS:
        raise PodlabError(f"unknown design {name!r}: known designs are {', '.join(PRESETS)} "
                          f"(or a mapping {{attach: {'|'.join(ATTACHMENTS)}, backend: {'|'.join(BACKENDS)}}})")
    attach, backend, _ = PRESETS[name]
    return combine(attach, backend, name)


def from_mode(mode: str, routing: str | None) -> Design:
    return preset(MODE_ALIASES[(mode, routing)])


@lru_cache(maxsize=None)
def resolve(choice: DesignChoice) -> Design:
    """What a design named in a topology means (its two parts, and what they state)."""
    return combine(choice.attach, choice.backend, choice.preset)


def of(topo: Topology) -> Design:
    return resolve(topo.design)


def preset_of(attach: str, backend: str) -> str | None:
    """The real CNI's name for a combination, if it is a preset."""
    return next((name for name, (a, b, _) in PRESETS.items() if (a, b) == (attach, backend)), None)


def plan(topo: Topology, addrs: AddressPlan, pods: Collection[str] | None = None) -> list[Op]:
    """The design's kernel operations: the shared wiring, the attachment's, the backend's. With
    `pods`, only those of these pods (lab.planner.part), in the order the whole plan has them."""
    design = of(topo)
    a, b = design.attachment, design.backend
    whole = pods is None
    these = addrs if pods is None else replace(addrs, pods=tuple(p for p in addrs.pods if p.name in pods))
    ops = wiring.namespaces(topo, these, a.bridge, machines=whole)
    if whole:
        ops += wiring.underlay_switch(topo, addrs)
        for node in addrs.nodes:
            ops += a.node_ops(design, topo, addrs, node)
    for pod in these.pods:
        if not pod.host_network:
            ops += a.pod_ops(topo, these, pod, addrs.node(pod.node))
    if addrs.static_neighbours:
        # The entries ARP would learn, written as permanent ones (see addressing.SHARED_ARP_BUDGET).
        ops += a.static_neighbours(topo, addrs, pods) + (b.static_neighbours(topo, addrs) if whole else [])
    if whole:
        ops += b.ops(topo, addrs, a) + wiring.outside_hosts(topo, addrs, default_via_router=b.router)
    return ops
