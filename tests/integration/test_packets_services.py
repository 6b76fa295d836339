"""trace through a Service: kube-proxy's DNAT rewrites the destination on the way, and trace
follows the real packet (and a Service without endpoints is rejected, and named so)."""
from __future__ import annotations

import io
import json

import pytest
from packetlab import settled

from lab import cli
from lab.packets.explain import explain
from lab.packets.trace import trace

DESIGN = """
mode: vxlan
nodes: [node1, node2]
pods:
  - {name: a, node: node1, image: busybox}
  - {name: c, node: node2, image: echoserver, labels: {app: echo}}
services:
  - name: echo
    selector: {app: echo}
    ports: [{name: http, port: 80, targetPort: 8080}]
  - name: nobody
    selector: {app: none}
    ports: [{name: http, port: 80}]
"""


@pytest.fixture(scope="module")
def lab(lab_from_yaml):
    lab = lab_from_yaml(DESIGN, prefix="pksvc")
    settled(lab)
    return lab


def cluster_ip(lab, name: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["get", "services", "-o", "json", "--lab", lab.name], out, err) == 0, err.getvalue()
    return next(r["clusterIP"] for r in json.loads(out.getvalue()) if r["name"] == name)


def test_trace_follows_the_dnat_of_a_service(lab):
    ip = cluster_ip(lab, "echo")
    t = trace(lab, "a", ip, proto="tcp", port=80)
    print("\n" + t.text())
    assert t.verdict == "delivered" and t.replied, t.text()
    assert f"> {ip}:80 TCP [S]" in t.hops[0].summary
    last = t.hops[-1]
    assert (last.netns, last.iface, last.direction) == (lab.target("c").netns, "eth0", "in")
    assert "> 10.244.1.2:8080 TCP [S]" in last.summary
    assert any(n.startswith(f"node1 rewrote the destination {ip}:80 to 10.244.1.2:8080") for n in t.notes)
    # after the rewrite, the decisions are the ones for the endpoint
    out = next(h for h in t.hops if h.iface == "flannel.1" and h.direction == "out")
    assert out.decision.startswith("route 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink")
    assert any(n.startswith(f"{ip} is in the service CIDR") for n in explain(lab, "a", ip, proto="tcp").notes)


def test_a_service_without_endpoints_is_rejected_and_named(lab):
    t = trace(lab, "a", cluster_ip(lab, "nobody"), proto="tcp", port=80)
    print("\n" + t.text())
    assert t.verdict == "dropped" and t.where == "node1"
    assert t.reason.startswith("a filter rule rejected it: port unreachable (ICMP from 10.244.0.1)")
