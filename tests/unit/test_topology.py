"""Loading and validating topology files: defaults, expansion, placement, and every error message."""
from __future__ import annotations

import copy
import os
import re
import tempfile
import textwrap
from ipaddress import IPv4Network
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.errors import PodlabError, Problem, TopologyError
from lab.model import DesignChoice, Topology
from lab.naming import SAFE_ALPHABET
from lab.topology import load, loads, max_nodes, max_pods_per_node, resolve

POD_NAME = re.compile(rf"^[a-z0-9-]+-[{SAFE_ALPHABET}]{{10}}-[{SAFE_ALPHABET}]{{5}}$")


def yml(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def declared(topo: Topology) -> tuple:
    """The pods the file declares: all but the cluster DNS pod every cluster gets (placed last)."""
    from lab.services.schema import is_dns_pod
    assert [p for p in topo.pods if is_dns_pod(p)] == ([topo.pods[-1]] if topo.cluster_dns else [])
    return topo.pods[:-1] if topo.cluster_dns else topo.pods


def problems_of(text: str, **kwargs) -> list[Problem]:
    with pytest.raises(TopologyError) as caught:
        loads(yml(text), **kwargs)
    return caught.value.problems


def problem_at(text: str, path: str) -> Problem:
    found = problems_of(text)
    matching = [p for p in found if p.path == path]
    assert matching, f"no problem at {path}; got:\n" + "\n".join(map(str, found))
    return matching[0]


# ---------------------------------------------------------------------------------------
# Defaults and the model
# ---------------------------------------------------------------------------------------
def test_minimal_file_gets_every_default():
    topo = loads("name: demo\n")
    assert topo.name == "demo"
    assert topo.design == DesignChoice("bridge", "vxlan", "flannel")
    assert topo.pod_cidr == IPv4Network("10.244.0.0/16")
    assert topo.node_mask == 24
    assert topo.node_subnet == IPv4Network("192.168.56.0/24")
    assert topo.service_cidr == IPv4Network("10.96.0.0/12")
    assert topo.mtu == 1500 and topo.bridge == "cni0"
    assert [n.name for n in topo.nodes] == ["node1", "node2"]
    assert declared(topo) == () and topo.outside == () and topo.description == ""
    # What every cluster has: the cluster DNS (its pod on the first node) and so kube-proxy.
    assert topo.cluster_dns and topo.cluster_services and topo.pods[0].node == "node1"
    assert [(s.namespace, s.name) for s in topo.services] == [("default", "kubernetes"), ("kube-system", "kube-dns")]


def test_dns_false_leaves_a_cluster_without_services():
    topo = loads("name: demo\ndns: false\n")
    assert topo.pods == () and topo.services == () and not topo.cluster_dns and not topo.cluster_services
    with_services = loads("dns: false\nservices: []\n")
    assert [s.name for s in with_services.services] == ["kubernetes"] and with_services.pods == ()
    assert with_services.cluster_services and not with_services.cluster_dns


def test_dns_must_be_a_boolean():
    problem = problem_at("nodes: 2\ndns: 'off'\n", "dns")
    assert problem.line == 2
    assert "dns must be true or false, got a string ('off'); write dns: true or dns: false" in problem.message


def test_an_empty_mapping_is_a_cluster_too():
    assert [n.name for n in loads("{}").nodes] == ["node1", "node2"]


def test_empty_values_mean_the_default():
    topo = loads(yml("""
        name: demo
        network:
        pods:
        deployments:
        nodes:
        """))
    assert len(topo.nodes) == 2 and declared(topo) == ()


def test_lab_name_defaults_to_the_file_stem(tmp_path):
    path = tmp_path / "my-lab.yaml"
    path.write_text("nodes: 1\n")
    topo = load(path)
    assert topo.name == "my-lab"
    assert topo.source == str(path)


def test_an_invalid_file_stem_asks_for_a_name(tmp_path):
    path = tmp_path / "My Lab.yaml"
    path.write_text("nodes: 1\n")
    with pytest.raises(TopologyError) as caught:
        load(path)
    [problem] = caught.value.problems
    assert problem.path == "name" and "name: my-lab" in problem.message


def test_full_example_maps_to_the_model():
    topo = loads(yml("""
        name: demo
        description: two pods and a deployment
        mode: l3
        network:
          podCIDR: 172.16.0.0/16
          nodeCIDRMaskSize: 25
          nodeSubnet: 192.168.10.0/24
          serviceCIDR: 10.100.0.0/16
          mtu: 9000
          bridge: br-pods
        nodes:
          - node1
          - name: node2
        pods:
          - name: busybox
            image: docker.io/library/busybox:1.36
            command: [sleep, "3600"]
            labels: {run: busybox, app: a}
          - name: web
            node: node2
            namespace: shop
            hostNetwork: true
            containers:
              - name: web
                image: nginx
                ports: [80, {containerPort: 8443, name: https, protocol: TCP}, {containerPort: 80, protocol: UDP}]
              - name: side
                command: [python3, -m, http.server, "8080"]
        outside: [ecs, {name: bastion}]
        """))
    assert topo.design == DesignChoice("bridge", "host-gw", "flannel-host-gw")
    assert (topo.pod_cidr, topo.node_mask, topo.mtu, topo.bridge) == (IPv4Network("172.16.0.0/16"), 25, 9000, "br-pods")
    assert [o.name for o in topo.outside] == ["ecs", "bastion"]
    busybox, web = declared(topo)
    assert busybox.node == "node1" and busybox.deployment is None
    assert busybox.labels == (("app", "a"), ("run", "busybox"))  # sorted
    [container] = busybox.containers
    assert (container.name, container.image, container.command) == ("busybox", "docker.io/library/busybox:1.36",
                                                                    ("sleep", "3600"))
    assert container.workload == "command"
    assert web.node == "node2" and web.namespace == "shop" and web.host_network
    assert web.containers[0].ports == (80, 8443, 80)  # the same number over UDP is a different socket
    assert web.containers[1].image == "busybox"
    assert web.containers[1].command == ("python3", "-m", "http.server", "8080")


def test_routing_gateway_for_l3():
    assert loads("mode: l3\nrouting: gateway\n").design.backend == "vpc"


def test_nodes_as_a_count():
    assert [n.name for n in loads("nodes: 3").nodes] == ["node1", "node2", "node3"]


def test_merge_keys_and_anchors_work():
    topo = loads(yml("""
        deployments:
          - &web {name: web, replicas: 2, image: nginx, labels: {tier: front}}
          - <<: *web
            name: api
        """))
    assert [p.deployment for p in declared(topo)] == ["web", "web", "api", "api"]
    assert dict(topo.pods[2].labels)["tier"] == "front"


# ---------------------------------------------------------------------------------------
# Deployments: expansion, names, spread
# ---------------------------------------------------------------------------------------
DEPLOYMENTS = yml("""
    name: demo
    nodes: 3
    pods:
      - {name: a, image: busybox}
      - {name: b, image: busybox, node: node3}
      - {name: c, image: busybox}
    deployments:
      - name: nginx
        replicas: 4
        image: nginx
      - name: echo
        replicas: 3
        image: echoserver
        nodes: [node3, node1]
        labels: {app: echo, tier: back}
    """)


def test_deployments_expand_after_single_pods_with_kubectl_names():
    topo = loads(DEPLOYMENTS)
    names = [p.name for p in topo.pods]
    assert names[:3] == ["a", "b", "c"]
    replicas = declared(topo)[3:]
    assert [p.deployment for p in replicas] == ["nginx"] * 4 + ["echo"] * 3
    for pod in replicas:
        assert POD_NAME.match(pod.name), pod.name
        assert pod.name.startswith(pod.deployment + "-")
    assert len(set(names)) == len(names)
    nginx = replicas[0]
    assert ("app", "nginx") in nginx.labels  # default {app: <name>}
    assert dict(nginx.labels)["pod-template-hash"] == nginx.name.split("-")[1]
    assert dict(replicas[-1].labels)["tier"] == "back"
    assert nginx.containers[0].name == "nginx" and nginx.containers[0].workload == "http"


def test_generated_names_and_placement_are_deterministic():
    first, second = loads(DEPLOYMENTS), loads(DEPLOYMENTS)
    assert [(p.name, p.node) for p in first.pods] == [(p.name, p.node) for p in second.pods]
    renamed = loads(DEPLOYMENTS.replace("name: demo", "name: other"))
    assert [p.name for p in renamed.pods[3:]] != [p.name for p in first.pods[3:]]


def test_spread_is_round_robin_with_one_shared_counter():
    topo = loads(DEPLOYMENTS)
    nodes = [p.node for p in declared(topo)]
    # a: turn 0 -> node1; b is pinned; c: turn 1 -> node2;
    # nginx: turns 2..5 over all three nodes; echo: turns 6..8 over [node1, node3] (node order, not list order).
    assert nodes[:3] == ["node1", "node3", "node2"]
    assert nodes[3:7] == ["node3", "node1", "node2", "node3"]
    assert nodes[7:] == ["node1", "node3", "node1"]


def test_zero_replicas_make_no_pods():
    topo = loads("deployments: [{name: web, replicas: 0, image: nginx}]")
    assert declared(topo) == ()


def test_default_replicas_is_one():
    assert len(declared(loads("deployments: [{name: web, image: nginx}]"))) == 1


# ---------------------------------------------------------------------------------------
# Every validation rule: the path, the line and the fix are in the message
# ---------------------------------------------------------------------------------------
RULES = [
    # (test id, file, path, line, fragments of the message that tell how to fix it)
    ("unknown top key", "name: demo\nnodez: 3\n", "nodez", 2, ["did you mean 'nodes'", "allowed here"]),
    ("unknown network key", "network:\n  podCidr: 10.0.0.0/16\n", "network.podCidr", 2, ["did you mean 'podCIDR'"]),
    ("unknown pod key", "pods:\n  - name: a\n    imag: nginx\n", "pods[0].imag", 3, ["did you mean 'image'"]),
    ("unknown container key", "pods:\n  - name: a\n    containers:\n      - name: c\n        port: [80]\n",
     "pods[0].containers[0].port", 5, ["did you mean 'ports'"]),
    ("wrong type: number for a string", "name: 123\n", "name", 1, ["must be a string", 'quotes: name: "123"']),
    ("wrong type: quoted number", "deployments:\n  - name: a\n    image: nginx\n    replicas: '3'\n",
     "deployments[0].replicas", 4, ["must be an integer", "remove the quotes: replicas: 3"]),
    ("wrong type: command as a string", "pods:\n  - name: a\n    image: busybox\n    command: sleep 3600\n",
     "pods[0].command", 4, ["must be a list", 'command: [sleep, "3600"]']),
    ("wrong type: command argument", "pods:\n  - name: a\n    image: busybox\n    command: [sleep, 3600]\n",
     "pods[0].command[1]", 4, ["strings", '"3600"']),
    ("wrong type: hostNetwork", "pods:\n  - name: a\n    image: busybox\n    hostNetwork: 'yes'\n",
     "pods[0].hostNetwork", 4, ["true or false"]),
    ("wrong type: replicas bool", "deployments:\n  - name: a\n    image: x\n    replicas: true\n",
     "deployments[0].replicas", 4, ["must be an integer", "got true"]),
    ("wrong type: network", "network: 10.0.0.0/8\n", "network", 1, ["must be a mapping"]),
    ("wrong type: nodes", "nodes: {node1: {}}\n", "nodes", 1, ["a list or an integer"]),
    ("wrong type: pod", "pods:\n  - web\n", "pods[0]", 2, ["must be a mapping"]),
    ("missing pod name", "pods:\n  - image: nginx\n", "pods[0].name", 2, ["needs a name", "name: ..."]),
    ("missing node name", "nodes:\n  - {}\n", "nodes[0].name", 2, ["needs a name"]),
    ("missing container name", "pods:\n  - name: a\n    containers:\n      - image: nginx\n",
     "pods[0].containers[0].name", 4, ["needs a name"]),
    ("lab name", "name: My_Lab\n", "name", 1, ["lowercase", "at most 24", "name: my-lab"]),
    ("unknown mode", "mode: vxlna\n", "mode", 1, ["did you mean 'vxlan'", "l2, l3, vxlan"]),
    ("routing with another mode", "mode: vxlan\nrouting: host\n", "routing", 2, ["only to mode l3", "mode: l3"]),
    ("unknown routing", "mode: l3\nrouting: bgp\n", "routing", 2, ["host, gateway"]),
    ("host bits", "network:\n  podCIDR: 10.244.1.0/16\n", "network.podCIDR", 2,
     ["10.244.1.0/16 has host bits set; did you mean 10.244.0.0/16?"]),
    ("not a CIDR", "network:\n  nodeSubnet: 192.168.300.0/24\n", "network.nodeSubnet", 2,
     ["not an IPv4 network", "192.168.56.0/24"]),
    ("IPv6", "network:\n  serviceCIDR: fd00::/108\n", "network.serviceCIDR", 2, ["IPv6", "10.96.0.0/12"]),
    ("no prefix", "network:\n  podCIDR: 10.244.0.0\n", "network.podCIDR", 2, ["prefix length", "10.244.0.0/16"]),
    ("pod/node overlap", "network:\n  podCIDR: 10.0.0.0/8\n  nodeSubnet: 10.1.0.0/24\n", "network.nodeSubnet", 3,
     ["overlaps podCIDR 10.0.0.0/8", "network.podCIDR (line 2)", "disjoint"]),
    ("service overlap", "network:\n  serviceCIDR: 10.244.0.0/16\n", "network.serviceCIDR", 2,
     ["overlaps podCIDR 10.244.0.0/16", "the default", "disjoint"]),
    ("loopback", "network:\n  podCIDR: 127.0.0.0/16\n", "network.podCIDR", 2, ["loopback", "10.244.0.0/16"]),
    ("link-local", "network:\n  nodeSubnet: 169.254.1.0/24\n", "network.nodeSubnet", 2, ["link-local"]),
    ("nodeSubnet too small", "network:\n  nodeSubnet: 192.168.0.0/28\nnodes: 8\n", "network.nodeSubnet", 2,
     ["nodes start at host offset 11, so it needs 10 + 8 + 0 = 18 host addresses, but /28 has 16 - 2 = 14; "
      "use a /27 such as 192.168.0.0/27"]),
    ("multicast", "network:\n  podCIDR: 224.1.0.0/16\n", "network.podCIDR", 2, ["multicast"]),
    ("this network", "network:\n  nodeSubnet: 0.0.1.0/24\n", "network.nodeSubnet", 2, ["0.0.0.0/8"]),
    ("service range too large", "network:\n  serviceCIDR: 10.0.0.0/8\n", "network.serviceCIDR", 2, ["/12"]),
    ("node mask not longer", "network:\n  podCIDR: 10.244.0.0/16\n  nodeCIDRMaskSize: 16\n",
     "network.nodeCIDRMaskSize", 3, ["longer than the podCIDR's prefix (/16)", "17..30"]),
    ("node mask too long", "network:\n  nodeCIDRMaskSize: 31\n", "network.nodeCIDRMaskSize", 2, ["at most 30"]),
    ("mtu", "network:\n  mtu: 100\n", "network.mtu", 2, ["576..9000"]),
    ("bridge too long", "network:\n  bridge: averyveryverylongbridge\n", "network.bridge", 2, ["1-15", "IFNAMSIZ"]),
    ("bridge slash", "network:\n  bridge: br/0\n", "network.bridge", 2, ["no '/'"]),
    ("bridge dotdot", "network:\n  bridge: '..'\n", "network.bridge", 2, ["not '.' or '..'"]),
    ("bridge lo", "network:\n  bridge: lo\n", "network.bridge", 2, ["loopback", "cni0"]),
    ("node name too long", "nodes: [averyveryverylongnode]\n", "nodes[0]", 1,
     ["at most 15 characters: the kernel's limit for interface names (IFNAMSIZ)", "try 'averyveryverylo'"]),
    ("node name ../x", "nodes:\n  - node1\n  - name: ../x\n", "nodes[1].name", 3,
     ["not valid", "lowercase", "try 'x'"]),
    ("node name -rf", "nodes: ['-rf']\n", "nodes[0]", 1, ["starting and ending with a letter or digit", "try 'rf'"]),
    ("node name with space", "nodes: ['a b']\n", "nodes[0]", 1, ["try 'a-b'"]),
    ("node name non-ASCII", "nodes: [nöde1]\n", "nodes[0]", 1, ["lowercase letters a-z"]),
    ("node name upper case", "nodes: [Node1]\n", "nodes[0]", 1, ["try 'node1'"]),
    ("node entry type", "nodes: [node1, 7]\n", "nodes[1]", 1, ["a name or a mapping"]),
    ("outside name", "outside: [the_ecs]\n", "outside[0]", 1, ["IFNAMSIZ", "try 'the-ecs'"]),
    ("pod name", "pods:\n  - name: Web_1\n    image: nginx\n", "pods[0].name", 2, ["DNS-1123", "try 'web-1'"]),
    ("pod name too long", f"pods:\n  - name: {'a' * 64}\n    image: nginx\n", "pods[0].name", 2,
     ["64 characters", "at most 63"]),
    ("deployment name", "deployments:\n  - name: -web\n    image: nginx\n", "deployments[0].name", 2, ["DNS-1123"]),
    ("namespace", "pods:\n  - name: a\n    image: nginx\n    namespace: Prod\n", "pods[0].namespace", 4,
     ["DNS label", "try 'prod'"]),
    ("container name", "pods:\n  - name: a\n    containers:\n      - {name: My.App, image: nginx}\n",
     "pods[0].containers[0].name", 4, ["DNS label"]),
    ("container from image name", "pods:\n  - name: a\n    image: my_image\n", "pods[0].image", 3,
     ["'my_image'", "containers: [{name: app"]),
    ("duplicate container", "pods:\n  - name: a\n    containers:\n      - {name: c, image: nginx}\n"
     "      - {name: c, image: busybox}\n", "pods[0].containers[1].name", 5,
     ["already used in this pod by pods[0].containers[0].name (line 4)"]),
    ("duplicate node and pod", "nodes: [node1, web]\npods:\n  - name: web\n    image: nginx\n", "pods[0].name", 3,
     ["already used by nodes[1] (line 1)", "unique"]),
    ("duplicate pod and outside", "pods:\n  - name: ecs\n    image: nginx\noutside:\n  - ecs\n", "outside[0]", 5,
     ["already used by pods[0].name (line 2)"]),
    ("duplicate deployment", "deployments:\n  - {name: web, image: nginx}\n  - {name: web, image: nginx}\n",
     "deployments[1].name", 3, ["already used by deployments[0].name (line 2)"]),
    ("reserved underlay", "nodes: [node1, underlay]\n", "nodes[1]", 1, ["reserved", "underlay switch"]),
    ("reserved router", "outside:\n  - name: router\n", "outside[0].name", 2, ["reserved", "router"]),
    ("unknown node", "pods:\n  - name: a\n    image: nginx\n    node: nod2\n", "pods[0].node", 4,
     ["no node named 'nod2'", "did you mean 'node2'", "node1, node2"]),
    ("unknown deployment node", "deployments:\n  - name: a\n    image: nginx\n    nodes: [node1, node7]\n",
     "deployments[0].nodes[1]", 4, ["no node named 'node7'"]),
    ("empty deployment nodes", "deployments:\n  - name: a\n    image: nginx\n    nodes: []\n",
     "deployments[0].nodes", 4, ["remove it to use every node"]),
    ("negative replicas", "deployments:\n  - name: a\n    image: nginx\n    replicas: -2\n",
     "deployments[0].replicas", 4, ["use 0 or more"]),
    ("port range", "pods:\n  - name: a\n    containers:\n      - name: c\n        ports: [80, 0]\n",
     "pods[0].containers[0].ports[1]", 5, ["1..65535"]),
    ("port string", "pods:\n  - name: a\n    containers:\n      - name: c\n        ports: ['80']\n",
     "pods[0].containers[0].ports[0]", 5, ["remove the quotes: 80"]),
    ("port mapping without containerPort", "pods:\n  - name: a\n    containers:\n      - name: c\n"
     "        ports:\n          - {name: http}\n", "pods[0].containers[0].ports[0].containerPort", 6,
     ["needs a containerPort"]),
    ("port protocol", "pods:\n  - name: a\n    containers:\n      - name: c\n        ports:\n"
     "          - {containerPort: 53, protocol: udp}\n", "pods[0].containers[0].ports[0].protocol", 6,
     ["did you mean 'UDP'"]),
    ("port twice in a pod", "pods:\n  - name: a\n    containers:\n      - {name: c, ports: [80]}\n"
     "      - {name: d, ports: [80]}\n", "pods[0].containers[1].ports[0]", 5,
     ["80/TCP is already declared by pods[0].containers[0] (line 4)", "share one network namespace"]),
    ("no container", "pods:\n  - name: a\n", "pods[0]", 2, ["at least one container", "image: busybox"]),
    ("command without image", "pods:\n  - name: a\n    command: [sleep, '1']\n", "pods[0].command", 3,
     ["add 'image: busybox'"]),
    ("image and containers", "pods:\n  - name: a\n    image: nginx\n    containers: [{name: c}]\n", "pods[0].image", 3,
     ["not both"]),
    ("empty containers", "pods:\n  - name: a\n    containers: []\n", "pods[0].containers", 3,
     ["at least one container"]),
    ("label value type", "pods:\n  - name: a\n    image: nginx\n    labels: {version: 1.10}\n",
     "pods[0].labels.version", 4, ["strings", 'version: "1.1"']),
    ("label key", "pods:\n  - name: a\n    image: nginx\n    labels: {'-bad': x}\n", "pods[0].labels.-bad", 4,
     ["label key"]),
    ("no nodes", "nodes: []\n", "nodes", 1, ["at least one node", "nodes: 2"]),
    ("zero nodes", "nodes: 0\n", "nodes", 1, ["at least one node"]),
    ("too many nodes", "nodes: 1001\n", "nodes", 1, ["limit of 1000 nodes"]),
    ("too many pods", "deployments:\n  - {name: a, image: nginx, replicas: 15000}\n  - {name: b, image: nginx, "
     "replicas: 6000}\n", "deployments", 1, ["21000 pods", "at most 20000"]),
    ("duplicate key", "name: a\nnodes: 2\nname: b\n", "name", 3, ["duplicate key 'name' (first at line 1)"]),
    ("non-string key", "pods:\n  - name: a\n    image: nginx\n    labels: {1: a}\n", "pods[0].labels", 4,
     ["read as int", 'quote it: "1"']),
    ("yes/no key", "pods:\n  - name: a\n    image: nginx\n    labels:\n      on: x\n", "pods[0].labels", 5,
     ["read as bool", 'quote it: "on"']),
    ("yaml tag", "name: !secret demo\n", "name", 1, ["tag", "not supported"]),
    ("bad date", "description: 2001-13-45\n", "description", 1, ["put it in quotes"]),
]


@pytest.mark.parametrize("text,path,line,fixes", [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_each_rule_reports_path_line_and_fix(text, path, line, fixes):
    problem = problem_at(text, path)
    assert problem.line == line, str(problem)
    for fix in fixes:
        assert fix in problem.message, f"{fix!r} not in {problem.message!r}"
    assert f"{path} (line {line}):" in str(problem)


def test_every_problem_is_reported_at_once():
    text = yml("""
        name: demo
        mode: vxlna
        network:
          podCIDR: 10.244.1.0/16
          mtu: 70000
        nodes: [node1, Node-2]
        pods:
          - name: web
            image: nginx
            node: node9
        deployments:
          - name: api
            replica: 3
            image: nginx
        """)
    with pytest.raises(TopologyError) as caught:
        loads(text, source="five.yaml")
    error = caught.value
    assert [(p.path, p.line) for p in error.problems] == [
        ("mode", 2), ("network.podCIDR", 4), ("network.mtu", 5), ("nodes[1]", 6), ("pods[0].node", 10),
        ("deployments[0].replica", 13)]
    message = str(error)
    assert message.startswith("five.yaml: 6 problems; nothing was created")
    assert "did you mean 'replicas'" in message and "did you mean 'vxlan'" in message


def test_a_wrong_node_does_not_cascade():
    # One bad entry, one problem: the pods that name it are not reported again.
    found = problems_of("nodes: [node1, Node2]\npods:\n  - {name: a, image: nginx, node: Node2}\n")
    assert [p.path for p in found] == ["nodes[1]"]


# ---------------------------------------------------------------------------------------
# Capacity: seed 000's arithmetic
# ---------------------------------------------------------------------------------------
def test_seed_000_capacity_numbers():
    assert max_nodes(IPv4Network("172.16.0.0/16"), 25) == 512
    assert max_pods_per_node(25) == 125
    base = "network:\n  podCIDR: 172.16.0.0/16\n  nodeCIDRMaskSize: 25\n  nodeSubnet: 192.168.0.0/22\nnodes: {}\n"
    assert len(loads(base.format(512)).nodes) == 512
    problem = problem_at(base.format(513), "network.podCIDR")
    assert "513 nodes do not fit" in problem.message
    assert "65536 / 128 = 512" in problem.message
    assert "/15" in problem.message and "nodeCIDRMaskSize (26" in problem.message


def test_small_pod_cidr_capacity_message():
    problem = problem_at("network:\n  podCIDR: 172.16.0.0/24\n  nodeCIDRMaskSize: 25\nnodes: 3\n", "network.podCIDR")
    assert problem.line == 2
    assert "3 nodes do not fit: 172.16.0.0/24 has 256 addresses / 128 per node block (/25)" in problem.message
    assert "256 / 128 = 2 nodes at most" in problem.message
    assert "larger podCIDR" in problem.message and "longer nodeCIDRMaskSize" in problem.message


def test_pods_per_node_capacity_excludes_host_network_pods():
    text = yml("""
        network: {nodeCIDRMaskSize: 28}
        nodes: [node1]
        pods:
          - {name: host, image: busybox, hostNetwork: true}
        deployments:
          - {name: web, image: nginx, replicas: REPLICAS}
        """)
    assert len(loads(text.replace("REPLICAS", "12")).pods) == 14  # 16 - 3 = 13 fit, hostNetwork aside
    problem = problem_at(text.replace("REPLICAS", "13"), "nodes[0]")
    assert problem.line == 2
    assert "node1 gets 14 pods (the cluster DNS pod among them; 'dns: false' turns it off)" in problem.message
    assert "16 addresses - 3 (network, gateway .1, broadcast) = 13" in problem.message
    assert "nodeCIDRMaskSize: 27" in problem.message


def test_node_subnet_capacity():
    text = "network:\n  nodeSubnet: 192.168.56.0/28\nnodes: 4\noutside: [ecs]\n"
    problem = problem_at(text, "network.nodeSubnet")
    assert problem.line == 2
    assert "10 + 4 + 1 = 15" in problem.message and "16 - 2 = 14" in problem.message
    assert "192.168.56.0/27" in problem.message
    assert len(loads(text.replace("nodes: 4", "nodes: 3")).nodes) == 3


# ---------------------------------------------------------------------------------------
# Broken files: always a PodlabError, never a traceback
# ---------------------------------------------------------------------------------------
def test_yaml_syntax_error_has_a_line():
    [problem] = problems_of("name: demo\nnodes: [node1\npods: []\n")
    assert problem.path == "(document)" and problem.line is not None
    assert "YAML syntax error" in problem.message and "indentation" in problem.message


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_file(text):
    [problem] = problems_of(text)
    assert "empty" in problem.message and "nodes: 2" in problem.message


@pytest.mark.parametrize("text,kind", [("- a\n- b\n", "a list"), ("just text\n", "a string"), ("42\n", "an integer")])
def test_document_must_be_a_mapping(text, kind):
    [problem] = problems_of(text)
    assert "must be a mapping" in problem.message and kind in problem.message


def test_binary_junk(tmp_path):
    path = tmp_path / "junk.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(TopologyError) as caught:
        load(path)
    assert "not UTF-8" in str(caught.value)
    [problem] = problems_of("name: a\x00b\n")
    assert "not allowed in YAML" in problem.message and problem.line == 1


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(PodlabError, match="no such topology file"):
        load(tmp_path / "nope.yaml")
    with pytest.raises(PodlabError, match="is a directory"):
        load(tmp_path)


def test_more_documents_than_one():
    [problem] = problems_of("name: a\n---\nname: b\n")
    assert problem.line == 2


def test_alias_bomb_and_recursion_are_stopped():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        bomb += f"{level}: &{level} [" + ", ".join([f"*{previous}"] * 10) + "]\n"
    assert "more than" in str(problems_of(bomb)[0])
    assert any("nested more than" in p.message for p in problems_of("nodes: &n [*n]\n"))
    deep = "nodes: " + "[" * 2000 + "]" * 2000 + "\n"
    assert problems_of(deep)


def test_huge_replicas_are_refused_before_expansion():
    problem = problem_at("deployments:\n  - {name: a, image: nginx, replicas: 1000000000000}\n", "deployments")
    assert "at most 20000" in problem.message


# ---------------------------------------------------------------------------------------
# resolve: a path or a name in topologies/
# ---------------------------------------------------------------------------------------
def test_resolve(tmp_path, monkeypatch):
    shipped = tmp_path / "topologies"
    shipped.mkdir()
    (shipped / "vxlan.yaml").write_text("mode: vxlan\n")
    (shipped / "l3-gateway.yaml").write_text("mode: l3\n")
    assert resolve("vxlan", shipped) == shipped / "vxlan.yaml"
    assert resolve("vxlan.yaml", shipped) == shipped / "vxlan.yaml"
    own = tmp_path / "mine.yaml"
    own.write_text("nodes: 1\n")
    assert resolve(str(own), shipped) == own
    with pytest.raises(PodlabError) as caught:
        resolve("vxaln", shipped)
    assert "did you mean 'vxlan'" in str(caught.value) and "l3-gateway, vxlan" in str(caught.value)
    with pytest.raises(PodlabError, match="l3-gateway, vxlan"):
        resolve("../vxlan", shipped)


# ---------------------------------------------------------------------------------------
# Property: whatever the input, a Topology or a PodlabError
# ---------------------------------------------------------------------------------------
VALID = yaml.safe_load(yml("""
    name: demo
    description: a valid file to break
    mode: l3
    routing: gateway
    network:
      podCIDR: 10.244.0.0/16
      nodeCIDRMaskSize: 24
      nodeSubnet: 192.168.56.0/24
      serviceCIDR: 10.96.0.0/12
      mtu: 1500
      bridge: cni0
    nodes: [node1, {name: node2}]
    pods:
      - name: busybox
        node: node1
        image: busybox
        command: [sleep, "3600"]
        labels: {app: busybox}
      - name: web
        namespace: shop
        hostNetwork: false
        containers:
          - name: web
            image: nginx
            ports: [80, {containerPort: 8080, name: http, protocol: TCP}]
    deployments:
      - name: nginx
        replicas: 3
        image: nginx
        nodes: [node1, node2]
        labels: {app: nginx}
    outside: [ecs, {name: bastion}]
    """))
KEYS = ["name", "mode", "routing", "network", "nodes", "pods", "deployments", "outside", "podCIDR", "mtu", "bridge",
        "nodeCIDRMaskSize", "image", "command", "containers", "ports", "containerPort", "replicas", "labels", "node",
        "hostNetwork", "namespace", "protocol", "<<"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10 ** 12), 10 ** 12), st.floats(), st.text(max_size=30),
    st.sampled_from(["node1", "node2", "10.0.0.0/8", "10.244.0.0/33", "fd00::/64", "", "-rf", "../x", "a b",
                     "underlay", "router", "l2", "l3", "vxlan", "host", "x" * 300, "ü", "2001-13-45", "TCP"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8) | st.integers(), inner, max_size=4),
                      max_leaves=10)


def _spots(node, spots):
    """Every (container, key) place in the document where a value can be changed."""
    if isinstance(node, dict):
        for key in list(node):
            spots.append((node, key))
            _spots(node[key], spots)
    elif isinstance(node, list):
        for index in range(len(node)):
            spots.append((node, index))
            _spots(node[index], spots)
    return spots


def _mutate(data, document):
    for _ in range(data.draw(st.integers(1, 5))):
        spots = _spots(document, [])
        if not spots:
            break
        container, key = data.draw(st.sampled_from(spots))
        action = data.draw(st.sampled_from(["delete", "replace", "replace", "add", "swap"]))
        if action == "delete":
            del container[key]
        elif action == "replace":
            container[key] = data.draw(values)
        elif action == "swap":  # a value of another place, with another type
            other, other_key = data.draw(st.sampled_from(spots))
            container[key] = copy.deepcopy(other[other_key])
        elif isinstance(container, dict):
            container[data.draw(st.sampled_from(KEYS) | st.text(max_size=8))] = data.draw(values)
        else:
            container.insert(key, data.draw(values))
    return document


def _always_clean(text: str) -> None:
    try:
        result = loads(text, source="fuzz.yaml")
    except PodlabError as e:
        assert str(e)
        for problem in getattr(e, "problems", []):
            assert problem.message and problem.path
            assert problem.line is None or problem.line >= 1
    else:
        assert isinstance(result, Topology)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_documents_give_a_topology_or_a_podlab_error(data):
    document = _mutate(data, copy.deepcopy(VALID))
    _always_clean(yaml.safe_dump(document, allow_unicode=data.draw(st.booleans())))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_yaml_text_gives_a_topology_or_a_podlab_error(data):
    text = yaml.safe_dump(VALID)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 20))
        text = text[:at] + data.draw(st.text(max_size=10) | st.sampled_from(
            ["\n", ": ", "- ", "  ", "[", "{", "&a ", "*a", "!!int ", "!x ", "<<: ", "\t", "'", '"', "---\n", "? "])) \
            + text[at + cut:]
    _always_clean(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_random_text_gives_a_topology_or_a_podlab_error(text):
    _always_clean(text)


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_in_a_file_give_a_topology_or_a_podlab_error(data):
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "fuzz.yaml")
        Path(path).write_bytes(data)
        try:
            assert isinstance(load(path), Topology)
        except PodlabError as e:
            assert str(e)
