"""Read a topology YAML file into a validated, frozen lab.model.Topology.

Every check runs before anything touches the host, and every problem is reported at once
with its YAML path and line, so a trainee fixes a file in one pass instead of one error per
run. Whatever the input (a syntax error, binary junk, a list where a mapping belongs), the
result is a Topology or a PodlabError: never a traceback.

The work happens in three steps:
  1. yaml_reader.Reader turns the YAML into plain Python values and remembers the line of every
     key and list item (PyYAML's constructors drop the marks, so it walks the composed nodes).
  2. Checker.fields checks each mapping against a small schema table (allowed keys and types
     per level), then the section modules check meaning: names, CIDRs, references.
  3. Deployments are expanded into named pods and all pods are placed on nodes, then the
     capacity arithmetic (seed 000) is checked against the result.

  files        load a file, resolve a built-in topology name, list the built-in ones
  build        loads: the sections checked in order, and the Topology made from them
  yaml_reader  YAML text to plain values, with the line of every path
  checker      the Checker: problems collected with their path and line; the schema check
  schema       allowed keys and value types per level
  wording      how messages quote values and word their hints ("did you mean ...?")
  names        the lab's name; names unique across nodes, pods and outside hosts
  network      mode, routing and the network: section (CIDRs, overlaps, MTU, bridge)
  hosts        the nodes: and outside: sections
  pods         the pods: and deployments: sections, and labels
  containers   a pod's containers (and init containers), their ports
  volumes      a pod's volumes (emptyDir) and its containers' volume mounts
  placement    deployments expanded into pods, and pods put on nodes
  capacity     whether it all fits: node blocks, pods per node, bridge ports, nodeSubnet

The services: section is checked by lab.services.schema, with this package's Checker.
"""
from __future__ import annotations

from lab.topology.build import loads
from lab.topology.capacity import max_nodes, max_pods_per_node
from lab.topology.files import available_topologies, load, resolve
from lab.topology.placement import Scheduling, scheduling_of, without

__all__ = ["available_topologies", "load", "loads", "max_nodes", "max_pods_per_node", "resolve", "Scheduling",
           "scheduling_of", "without"]
