"""The cni attachment with the real plugins (Debian's containernetworking-plugins in /usr/lib/cni)
and a plugin of the user's own that misbehaves on demand: ADD/DEL as kubelet has containerd run
them, failures that leave the rest of the lab working, bad input refused before anything is made,
and nothing left after down or a crash."""
from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cnilab import CNI, bridge_list, mounts_under, no_cni_residue, plugin_dir, reservations, results

from lab import api, cli, state
from lab.cni import log, paths, status
from lab.errors import PodlabError

pytestmark = pytest.mark.skipif(not os.path.exists(f"{CNI}/bridge"), reason="needs containernetworking-plugins")
REPO = Path(__file__).resolve().parents[2]


def podlab(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return cli.main(list(args), out, err), out.getvalue(), err.getvalue()


def topology(conflist: str, cni_path: list[str], pods: str, extra: str = "") -> str:
    return (f"design: {{attach: cni, backend: host-gw}}\ncni:\n  conflist: {json.dumps(conflist)}\n"
            f"  cniPath: {json.dumps(cni_path)}\n  timeoutSeconds: 2\nnodes: [node1, node2]\n{extra}pods:\n{pods}")


PODS = """  - {name: a, node: node1, image: nginx}
  - {name: b, node: node1, image: nginx}
  - {name: c, node: node2, containers: [{name: web, image: nginx, ports: [{containerPort: 80, hostPort: 8080}]}]}
  - {name: hang-1, node: node1, image: nginx}
  - {name: noresult-1, node: node2, image: nginx}
  - {name: badjson-1, node: node1, image: nginx}
  - {name: error-1, node: node2, image: nginx}
  - {name: stderr-1, node: node2, image: nginx}
"""
FAILING = {"hang-1": "did not finish ADD within 2 s and was killed",
           "noresult-1": "exited 0 without a result",
           "badjson-1": "exited 0 and printed invalid JSON",
           "error-1": 'plugin type="flaky" name="cbr0" failed (add): flaky refuses error-1 (CNI error code 7)',
           "stderr-1": "netplugin failed: 'flaky: something broke'"}


@pytest.fixture(scope="module")
def flaky_lab(lab_from_yaml, tmp_path_factory):
    bins = plugin_dir(tmp_path_factory.mktemp("cni"))
    conf = bridge_list(extra=[{"type": "flaky"}, {"type": "portmap", "capabilities": {"portMappings": True}}])
    lab = lab_from_yaml(topology(conf, [CNI, str(bins)], PODS), prefix="cni")
    yield lab
    if state.lab_dir(lab.name).exists():
        api.down(lab.name)
    no_cni_residue(lab.name)


def test_failed_adds_leave_the_rest_of_the_lab_working(flaky_lab):
    lab = api.Lab(flaky_lab.name)
    code, out, err = podlab("get", "pods", "--lab", lab.name)
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    for pod in ("a", "b", "c"):
        assert rows[pod][2] == "Running", out
    for pod, words in FAILING.items():
        assert rows[pod][1:3] == ["0/1", "ContainerCreating"], out
        event = next(line for line in err.splitlines() if line.startswith(f"pod/{pod} on ")
                     and "Warning FailedCreatePodSandBox" in line)
        assert words in event and "failed to setup network for sandbox" in event, event
    code, out, _ = podlab("check", "--lab", lab.name)
    assert code == 1 and "CNI: pods without a network" in out and "0 failed" in out, out
    assert "PASS" not in out.splitlines()[-1]


def test_nothing_leaks_from_a_failed_add(flaky_lab):
    """The DEL after each failed ADD gave back host-local's address; only the attached pods hold one."""
    lab = api.Lab(flaky_lab.name)
    pods = status.read(lab.name)
    for node in ("node1", "node2"):
        held = reservations(lab.name, node)
        expected = sorted(pods[p]["ip"].split("/")[0] for p in pods if pods[p]["state"] == "ok" and pods[p]["node"] == node)
        assert held == expected
        assert len(results(lab.name, node)) == len(expected)
    hang = [e for e in log.entries(lab.name, "hang-1")]
    attempt = [("ADD", "bridge"), ("ADD", "flaky"), ("DEL", "portmap"), ("DEL", "flaky"), ("DEL", "bridge")]
    assert [(e["command"], e["plugin"]) for e in hang] == attempt * 2       # kubelet's retry, once
    assert hang[1]["exit"] is None and 1.9 < hang[1]["seconds"] < 4


def test_attached_pods_are_as_the_plugins_made_them(flaky_lab):
    lab = api.Lab(flaky_lab.name)
    pods = status.read(lab.name)
    a, c = lab.addresses.pod("a"), lab.addresses.pod("c")
    # host-local, in the order of the ADDs: the cluster DNS pod first (node1), then the pods in order
    assert (str(a.ip), str(c.ip)) == ("10.244.0.3", "10.244.1.2")
    assert a.veth == pods["a"]["veth"] and a.veth.startswith("veth") and len(a.veth) == 12
    cached = json.loads((paths.cache_dir(lab.name, "node1") / "results" /
                         f"cbr0-{pods['a']['containerId']}-eth0").read_text())
    assert cached["kind"] == "cniCacheV1" and cached["networkName"] == "cbr0"
    assert json.loads(base64.b64decode(cached["config"]))["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.244.0.0/24"}]]
    assert ["K8S_POD_NAME", "a"] in cached["cniArgs"]
    add = log.entries(lab.name, "a")[0]
    assert add["env"]["CNI_NETNS"] == f"/run/netns/{a.netns}" and add["env"]["CNI_IFNAME"] == "eth0"
    assert add["env"]["CNI_PATH"].startswith(CNI + ":")
    portmap = next(e for e in log.entries(lab.name, "c") if e["plugin"] == "portmap")
    assert json.loads(portmap["stdin"])["runtimeConfig"]["portMappings"] == [
        {"HostPort": 8080, "ContainerPort": 80, "Protocol": "tcp", "HostIP": ""}]


def test_host_port_through_portmaps_rules(flaky_lab):
    lab = api.Lab(flaky_lab.name)
    node2 = lab.addresses.node("node2")
    for src in ("a", "node1"):
        code, out, _ = podlab("curl", src, f"{node2.ip}:8080", "--lab", lab.name)
        assert code == 0 and "host c!" in out
    rules = subprocess.run(["ip", "netns", "exec", node2.netns, "iptables-save", "-t", "nat"], capture_output=True,
                           text=True).stdout
    assert "CNI-HOSTPORT-DNAT" in rules and "--dport 8080" in rules


def test_cni_check_and_log_commands(flaky_lab):
    code, out, _ = podlab("cni", "check", "a", "--lab", flaky_lab.name)
    assert code == 0 and "a: CHECK passed" in out
    code, out, _ = podlab("cni", "log", "error-1", "--lab", flaky_lab.name)
    assert "ADD   flaky" in out and "exit 1" in out and '"code": 7' in out.replace('"code":7', '"code": 7')


def test_down_dels_every_pod(lab_from_yaml, tmp_path_factory):
    lab = lab_from_yaml(topology(bridge_list(), [CNI], "  - {name: a, node: node1, image: nginx}\n"
                                 "  - {name: b, node: node2, image: nginx}\n"), prefix="cnidown")
    store = paths.on_host(lab.name, "node1", paths.HOST_LOCAL_DATA_DIR) / "cbr0"
    assert reservations(lab.name, "node1") == ["10.244.0.2", "10.244.0.3"]     # the cluster DNS pod's, a's
    said: list[str] = []
    from lab.cni import runner
    runner.teardown(lab.name, said.append)      # what down does first, looked at before the state goes
    assert reservations(lab.name, "node1") == [] and results(lab.name, "node1") == [] and store.exists()
    assert any("CNI DEL for 3 pods" in s for s in said), said     # a, b and the DNS pod
    assert not mounts_under(paths.mnt_dir(lab.name))
    api.down(lab.name)
    no_cni_residue(lab.name)


@pytest.mark.parametrize("case", ["missing", "not-executable", "version", "not-json", "no-plugins"])
def test_bad_lists_are_refused_before_anything_is_made(case, tmp_path):
    bins = plugin_dir(tmp_path, not_executable="lazy")
    conf, words = {
        "missing": (bridge_list(extra=[{"type": "flannel"}]), ['plugin type "flannel" not found in cniPath', "searched",
                                                                "bridge, dhcp"]),
        "not-executable": (bridge_list(extra=[{"type": "lazy"}]), ["lazy is not executable", "chmod +x"]),
        "version": (bridge_list(version="1.1.0"), ['not the conflist\'s cniVersion "1.1.0"', '"cniVersion": "1.0.0"']),
        "not-json": ('{"name": "x",\n "plugins": [}', ["not JSON", "line 2, column 14"]),
        "no-plugins": ('{"name": "x", "cniVersion": "1.0.0"}', ['no "plugins"']),
    }[case]
    path = tmp_path / "bad.yaml"
    path.write_text(topology(conf, [CNI, str(bins)], "  - {name: a, image: nginx}\n"))
    name = f"cnibad-{case}"[:24]
    with pytest.raises(PodlabError) as e:
        api.up(api.load_topology(str(path), name))
    for w in words:
        assert w in str(e.value), str(e.value)
    assert not state.lab_dir(name).exists()
    assert not [n for n in os.listdir("/run/netns") if n.startswith(name + "-")]


def test_clean_after_a_crash_dels_and_unmounts(tmp_path):
    path = tmp_path / "crash.yaml"
    path.write_text(topology(bridge_list(), [CNI], "  - {name: a, node: node1, image: nginx}\n"))
    name = "cnicrash"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PODLAB_CRASH_LOG": str(tmp_path / "points")}
    assert subprocess.run([sys.executable, "-m", "lab", "up", str(path), "--name", name], env=env,
                          capture_output=True).returncode == 0
    points = (tmp_path / "points").read_text().splitlines()
    at = next(line.split()[0] for line in points if line.endswith(" cni add"))
    podlab("down", name)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PODLAB_CRASH_AT": at}
    r = subprocess.run([sys.executable, "-m", "lab", "up", str(path), "--name", name], env=env, capture_output=True)
    assert r.returncode == -9
    assert mounts_under(paths.mnt_dir(name)) and reservations(name, "node1") == ["10.244.0.2", "10.244.0.3"]
    from lab import clean
    said: list[str] = []
    with state.locked(name):          # what `podlab clean` does with each orphan (others' labs left alone)
        assert clean.diagnose(name)
        clean.teardown(name, said.append)
    assert any("CNI DEL for 2 pods" in s for s in said), said     # a and the DNS pod
    no_cni_residue(name)
    assert not [n for n in os.listdir("/run/netns") if n.startswith(name + "-")]
