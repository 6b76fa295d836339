"""The `calico:` section: Calico IPAM's block size and the BGP options, for the calico designs.

    calico:
      blockSize: 26            # the IP pool's blockSize (20..32): a node takes a block, and more as it fills
      asNumber: 64512          # the cluster's AS (BGP designs)
      nodeToNodeMesh: false    # with route reflectors instead of the full mesh
      routeReflectors: [node1]

The pool itself is network.podCIDR (Calico's default pool 192.168.0.0/16 is the calico designs'
default). Checked against the design: BGP options under a design without BGP are errors.
"""
from __future__ import annotations

from typing import Any

from lab.designs import Design
from lab.model import CalicoSettings
from lab.topology.checker import Checker, YamlPath
from lab.topology.schema import CALICO_SCHEMA
from lab.topology.wording import show

BGP_OPTIONS = ("asNumber", "nodeToNodeMesh", "routeReflectors")
MAX_AS = 2**32 - 1


def calico_settings(checker: Checker, top: dict[str, Any], design: Design | None,
                    node_names: list[str]) -> CalicoSettings | None:
    path: YamlPath = ("calico",)
    if design is None:
        return None
    if design.attachment.ipam != "calico":
        if "calico" in top:
            checker.add(path, f"calico: applies to the calico designs (design: calico or calico-vxlan); this file's "
                              f"design is {design.name}: remove calico: or change the design")
        return None
    given = checker.fields(path, top.get("calico") or {}, CALICO_SCHEMA, "calico") or {}
    defaults = CalicoSettings()
    block = given.get("blockSize", defaults.block_size)
    if not 20 <= block <= 32:
        checker.add(path + ("blockSize",), f"blockSize {block} is out of range: Calico's IPPool takes 20..32 "
                                          "(26, 64 addresses a block, is its default)")
    if not design.backend.bgp:
        for key in BGP_OPTIONS:
            if key in given:
                checker.add(path + (key,), f"{key} is a BGP option, and design {design.name} has no BGP (its "
                                           f"backend is {design.backend.name}): remove it or use design: calico")
        return CalicoSettings(block_size=block)
    asn = given.get("asNumber", defaults.as_number)
    if not 1 <= asn <= MAX_AS:
        checker.add(path + ("asNumber",), f"asNumber {asn} is out of range: an AS number is 1..{MAX_AS} "
                                          "(Calico's default is 64512, a private AS)")
    mesh = given.get("nodeToNodeMesh", defaults.node_to_node_mesh)
    reflectors: list[str] = []
    for i, name in enumerate(given.get("routeReflectors", [])):
        at = path + ("routeReflectors", i)
        if name not in node_names:
            checker.add(at, f"route reflector {show(name)} is not a node of this cluster (nodes: "
                            f"{', '.join(node_names[:8])}{', ...' if len(node_names) > 8 else ''})")
        elif name in reflectors:
            checker.add(at, f"route reflector {name} is named twice")
        else:
            reflectors.append(name)
    if not mesh and not given.get("routeReflectors"):
        checker.add(path + ("nodeToNodeMesh",), "with nodeToNodeMesh: false no node has a BGP peer: name the nodes "
                                                "that reflect routes in routeReflectors: [...]")
    if mesh and reflectors:
        checker.add(path + ("routeReflectors",), "route reflectors replace the full mesh: set nodeToNodeMesh: false "
                                                 "as well (Calico keeps the mesh otherwise)")
    return CalicoSettings(block, asn, mesh, tuple(reflectors))
