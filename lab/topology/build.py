"""Topology YAML text to a validated, frozen lab.model.Topology: every section checked, in order."""
from __future__ import annotations

from typing import Any

from lab import designs, naming
from lab.model import Node, OutsideHost, Pod, ReplicaSet, Topology
from lab.topology.calico import calico_settings
from lab.topology.capacity import (check_bridge_ports, check_node_blocks, check_node_subnet, check_pod_count,
                                   check_pods_per_node, check_pool)
from lab.topology.checker import Checker
from lab.topology.cni import cni_settings
from lab.topology.hosts import host_list, node_list
from lab.topology.names import check_unique_names, lab_name
from lab.topology.network import design_choice, network_settings
from lab.topology.placement import Scheduling, place
from lab.topology.pods import deployment_drafts, pod_drafts
from lab.topology.schema import OUTSIDE_SCHEMA, TOP_SCHEMA
from lab.topology.yaml_reader import Reader


def loads(text: str, source: str = "<string>", default_name: str | None = None,
          bound: Scheduling | None = None, conflist: str | None = None) -> Topology:
    """Validate topology YAML text; raise TopologyError listing every problem found. `bound`: a
    running lab's placement (its pods keep their nodes; lab.topology.placement). `conflist`: the
    text of the file cni.conflist names, as a lab recorded it (the user's file is not read again)."""
    checker = Checker(source)
    document = Reader(checker).read(text)
    topology = _build(checker, document, default_name or "lab", text, bound, conflist) \
        if document is not None else None
    if checker.problems or topology is None:
        raise checker.error()
    return topology


def _build(checker: Checker, document: dict[str, Any], default_name: str, text: str,
           bound: Scheduling | None, conflist: str | None = None) -> Topology | None:
    """Every section checked in turn, then the pods placed and the whole checked for fit;
    None when any problem was found (they are all in the checker)."""
    top = checker.fields((), document, TOP_SCHEMA, "the topology") or {}
    lab = lab_name(checker, top, default_name)
    design = design_choice(checker, top)
    parts = designs.resolve(design) if design is not None else None
    nodes = node_list(checker, top, document)
    calico = calico_settings(checker, top, parts, [n.name for n in nodes or []])
    net = network_settings(checker, top, parts, calico)
    cni = cni_settings(checker, top, parts, net, conflist)
    outside = host_list(checker, "outside", top.get("outside", []), OUTSIDE_SCHEMA, "outside host")
    pods = pod_drafts(checker, top.get("pods", []))
    deployments = deployment_drafts(checker, top.get("deployments", []))
    if nodes is None or not check_pod_count(checker, pods, deployments):
        return None
    node_names = [n.name for n in nodes]
    placement = place(checker, lab, node_names, pods, deployments, bound)
    placed = placement.pods
    # Imported here: lab.services.schema builds on this package's checker, so it imports lab.topology.
    from lab.services import schema as service_schema
    dns = top.get("dns", True)    # the cluster DNS, as every Kubernetes cluster has it; `dns: false` turns it off
    services, placed = service_schema.check(checker, lab, document, top, placed, node_names, net.service_cidr,
                                              parts, dns, bound)
    dns_replica = next((pod for pod, _ in placed if service_schema.is_dns_pod(pod)), None)
    dns_pod = dns_replica.name if dns_replica is not None else None
    replicasets = placement.replicasets + ([_replicaset_of(dns_replica)] if dns_replica is not None else [])
    check_unique_names(checker, nodes, placed, outside)
    if net.pod_cidr is not None and net.node_mask is not None:
        # A running lab's (`bound`) pods beyond a node's addresses are not an error of the document:
        # they wait for an address, Pending, as a kubelet's pods do when host-local has none
        # (lab.allocation). A new lab must fit.
        if calico is not None:
            if bound is None:
                check_pool(checker, net, nodes, placed, parts)
        elif check_node_blocks(checker, net, nodes) and bound is None:
            check_pods_per_node(checker, net, nodes, placed, dns_pod)
    if net.node_subnet is not None:
        check_node_subnet(checker, net.node_subnet, len(nodes), len(outside))
    if parts is not None:
        check_bridge_ports(checker, parts, nodes, placed, len(outside), dns_pod)
    if checker.problems or design is None:
        return None
    assert None not in (net.pod_cidr, net.node_mask, net.node_subnet, net.service_cidr, net.mtu)
    return Topology(
        name=lab, design=design, pod_cidr=net.pod_cidr, node_mask=net.node_mask,
        node_subnet=net.node_subnet, service_cidr=net.service_cidr, mtu=net.mtu, bridge=net.bridge,
        nodes=tuple(Node(n) for n in node_names), pods=tuple(pod for pod, _ in placed),
        outside=tuple(OutsideHost(o.name) for o in outside), services=services,
        cluster_services="services" in document or dns, cluster_dns=dns, description=top.get("description", ""),
        source=checker.source, text=text, calico=calico, cni=cni, deployments=tuple(placement.deployments),
        replicasets=tuple(replicasets),
    )


def _replicaset_of(pod: Pod) -> ReplicaSet:
    """The ReplicaSet of a pod podlab runs itself (the cluster DNS's): its one pod, its template podlab's."""
    template_hash = pod.template_hash or ""
    assert pod.deployment is not None and pod.ordinal is not None
    return ReplicaSet(naming.replicaset_name(pod.deployment, template_hash), pod.deployment, pod.namespace,
                      template_hash, 1, 1, (pod.ordinal,), None)
