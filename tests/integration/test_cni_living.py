"""A running cni lab changed as a kubelet would see it: apply, delete and scale call ADD and DEL;
DEL is idempotent when the pod's namespace is already gone; a changed conflist makes the pods again."""
from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from cnilab import CNI, bridge_list, reservations, results

from lab import api, cli
from lab.cni import log, request, runner, status
from lab.cni.runtime import Runtime

pytestmark = pytest.mark.skipif(not os.path.exists(f"{CNI}/bridge"), reason="needs containernetworking-plugins")

POD = """apiVersion: v1
kind: Pod
metadata: {name: extra}
spec:
  nodeName: node1
  containers: [{name: c, image: nginx}]
"""


def podlab(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return cli.main(list(args), out, err), out.getvalue(), err.getvalue()


def _topology(conflist: Path) -> str:
    return (f"design: {{attach: cni, backend: host-gw}}\ncni:\n  conflist: {conflist.name}\nnodes: [node1, node2]\n"
            "pods:\n  - {name: a, node: node1, image: nginx}\n"
            "deployments:\n  - {name: web, replicas: 2, image: nginx, nodes: [node2]}\n")


@pytest.fixture(scope="module")
def living(lab_from_yaml, tmp_path_factory):
    d = tmp_path_factory.mktemp("living")
    (d / "net.conflist").write_text(bridge_list(extra=[{"type": "portmap", "capabilities": {"portMappings": True}}]))
    lab = lab_from_yaml(_topology(d / "net.conflist").replace("conflist: net.conflist", f"conflist: {d}/net.conflist"),
                        prefix="cnilive")
    (d / "topology.yaml").write_text(_topology(d / "net.conflist"))
    return lab, d


def test_apply_adds_and_delete_dels(living, tmp_path):
    lab, _ = living
    (tmp_path / "pod.yaml").write_text(POD)
    code, out, err = podlab("apply", "-f", str(tmp_path / "pod.yaml"), "--lab", lab.name)
    assert code == 0, err
    # node1 holds the cluster DNS pod's, a's and now extra's
    assert reservations(lab.name, "node1") == ["10.244.0.2", "10.244.0.3", "10.244.0.4"]
    assert [e["command"] for e in log.entries(lab.name, "extra")] == ["ADD", "ADD"]
    code, out, err = podlab("check", "--lab", lab.name)
    assert code == 0, out
    code, out, err = podlab("delete", "pod", "extra", "--lab", lab.name)
    assert code == 0, err
    assert reservations(lab.name, "node1") == ["10.244.0.2", "10.244.0.3"] and len(results(lab.name, "node1")) == 2
    code, out, _ = podlab("cni", "log", "extra", "--lab", lab.name)     # the pod is gone, its log is not
    assert [line.split()[1] for line in out.splitlines() if line[:1].isdigit()] == ["ADD", "ADD", "DEL", "DEL"]
    assert "extra" not in status.read(lab.name)


def test_scale_dels_and_adds(living):
    lab, _ = living
    before = {p.name for p in api.Lab(lab.name).addresses.pods if p.node == "node2"}
    assert podlab("scale", "deployment", "web", "--replicas", "1", "--lab", lab.name)[0] == 0
    assert len(reservations(lab.name, "node2")) == 1
    assert podlab("scale", "deployment", "web", "--replicas", "3", "--lab", lab.name)[0] == 0
    now = api.Lab(lab.name)
    node2 = [p for p in now.addresses.pods if p.node == "node2"]
    assert len(node2) == 3 and reservations(lab.name, "node2") == sorted(str(p.ip) for p in node2)
    assert {p.name for p in node2} - before      # new pods, new names (and host-local's next addresses)
    assert "10.244.1.4" in {str(p.ip) for p in node2}
    code, out, _ = podlab("check", "--lab", lab.name)
    assert code == 0, out


def test_del_is_idempotent_when_the_namespace_is_gone(living):
    lab, _ = living
    op = runner.node_op(lab.name, "node1")
    conf = runner.parse(op.config)
    seen = []
    rt = request.RuntimeConf("f" * 64, "", "eth0", (("IgnoreUnknown", "1"), ("K8S_POD_NAME", "ghost")), {}, (CNI,))
    rtm = Runtime(conf, op.cni_path, runner.paths.cache_dir(lab.name, "node1"), f"/run/netns/{op.ns}",
                  str(runner.paths.mntns_file(lab.name, "node1")), seen.append)
    assert rtm.delete(rt) is None and rtm.delete(rt) is None
    assert [i.exit for i in seen] == [0, 0, 0, 0] and all(i.env["CNI_NETNS"] == "" for i in seen)


def test_a_changed_conflist_makes_the_pods_again(living):
    lab, d = living
    (d / "net.conflist").write_text(bridge_list(extra=[{"type": "portmap", "capabilities": {"portMappings": True}}],
                                                hairpinMode=True))
    code, out, err = podlab("apply", "-f", str(d / "topology.yaml"), "--lab", lab.name)
    assert code == 0 and "pod/a deleted" in out and "pod/a created" in out, out + err
    last_add = [e for e in log.entries(lab.name, "a") if e["command"] == "ADD" and e["plugin"] == "bridge"][-1]
    assert '"hairpinMode":true' in last_add["stdin"]
    code, out, _ = podlab("check", "--lab", lab.name)
    assert code == 0, out
