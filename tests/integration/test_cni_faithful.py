"""Faithfulness: one design built twice, by podlab's own attachment and by the real plugins, and the
kernel state compared object by object (tests/integration/kernelstate.py says what is written out
first: names, MACs and what derives from them, which the plugins choose at random). docs/cni.md
lists what remains: nothing for ptp against kindnet's conflist; for bridge, the pods' eth0
accept_dad (IPv6 duplicate address detection), which the plugin turns off and podlab leaves on."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from cnilab import CNI
from kernelstate import differences, state

pytestmark = pytest.mark.skipif(not os.path.exists(f"{CNI}/bridge"), reason="needs containernetworking-plugins")
TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"

# dns: false: a cni lab ADDs the cluster DNS pod first (its address must be the planned one, whatever
# the user's pods' ADDs do), a built-in design makes it last, so each would give the others other addresses.
PODS = """dns: false
nodes: [node1, node2]
pods:
  - {name: a, node: node1, image: nginx}
  - {name: b, node: node1, image: nginx}
  - {name: c, node: node2, image: nginx}
deployments:
  - {name: web, replicas: 3, image: nginx}
"""
BRIDGE_LIST = """cni:
  conflist: |
    {"cniVersion": "1.0.0", "name": "cbr0", "plugins": [
      {"type": "bridge", "bridge": "cni0", "isGateway": true, "hairpinMode": true,
       "ipam": {"type": "host-local", "ranges": [[{"subnet": "{{.PodCIDR}}"}]], "routes": [{"dst": "0.0.0.0/0"}]}}]}
"""


def _both(lab_from_yaml, builtin: str, plugins: str) -> list[str]:
    # One document name for both, so the Deployment's pods get the same names in each lab.
    a = lab_from_yaml(f"name: same\ndesign: {builtin}\n{PODS}", prefix="fa")
    b = lab_from_yaml(f"name: same\ndesign: {{attach: cni, backend: host-gw}}\n{plugins}{PODS}", prefix="fb")
    assert [p.name for p in a.addresses.pods] == [p.name for p in b.addresses.pods]
    time.sleep(0.5)       # IPv6 link-local addresses settle (their DAD) in both
    return differences(state(a), state(b))


def test_bridge_attachment_is_the_bridge_plugin(lab_from_yaml):
    diffs = _both(lab_from_yaml, "flannel-host-gw", BRIDGE_LIST)
    pods = {"a", "b", "c"} | {d.split()[0] for d in diffs if d.startswith("web-")}
    allowed = {f"{p} sysctls: only in the {side}: ('net.ipv6.conf.eth0.accept_dad', '{v}')"
               for p in pods for side, v in (("first", "1"), ("second", "0"))}
    assert set(diffs) <= allowed, "\n".join(d for d in diffs if d not in allowed)
    assert len([d for d in diffs if d.startswith(("a ", "c "))]) == 4


def test_ptp_attachment_is_kindnets_conflist(lab_from_yaml):
    conflist = (TOPOLOGIES / "cni" / "10-kindnet.conflist").resolve()
    diffs = _both(lab_from_yaml, "kindnet", f"cni:\n  conflist: {conflist}\n")
    assert diffs == [], "\n".join(diffs)
