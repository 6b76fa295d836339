"""Hostile input: podlab answers every topology file with a clear error or a working lab.

Hypothesis generates topology documents (mixing sensible and absurd values for every key) and
mutates the shipped topologies (keys dropped, values swapped for junk, text cut and spliced).
Every one is loaded, planned and rendered: the result is a Topology or a one-problem-per-line
PodlabError, never another exception. A bounded number of the invalid ones go through
`podlab up` for real (exit 1, one message, nothing created) and a bounded number of the
small valid ones are brought up for real, checked with `podlab check`, and taken down with
no residue. Names that could escape the state directory or inject options (`../x`, `-rf`,
`a b`, very long, non-ASCII) are refused for --name, topology names, pod names, exec targets
and --lab, without a traceback and without creating anything.
"""
from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from labcheck import diff_root_state, root_netns_state
from reliab import Design, podlab, residue, root  # noqa: F401  (root is a fixture)

from lab import api, commands, planner, render, topology
from lab.engine import netns
from lab.errors import PodlabError

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p for p in (REPO / "topologies").glob("*.yaml") if p.stem != "scale")
FIGURES = {"generated": 0, "generated_valid": 0, "mutated": 0, "mutated_valid": 0, "refused_up": 0,
           "brought_up": 0, "hostile_names": 0}
VALID_SMALL: list[tuple[int, str, str]] = []   # (size, mode, text) of small valid generated designs
INVALID: list[str] = []         # invalid ones, run through `podlab up` later
MAX_UP = 4
MAX_REFUSED = 25

JUNK = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                 st.text(max_size=30), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5),
                                                                                          st.integers(), max_size=2))
GOOD_NAMES = st.sampled_from(["node1", "node2", "n3", "web", "db", "api", "ecs", "cache"])
NAMES = st.one_of(GOOD_NAMES, GOOD_NAMES, GOOD_NAMES, st.sampled_from(["node1", "node2", "n3", "web", "db", "ecs", "a", "underlay", "router",
                                   "Node_1", "-x", "x" * 16, "../x", "a b", "ünï", "x/y", ""]),
                  st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True), st.text(max_size=20))
IMAGES = st.sampled_from(["nginx", "busybox", "echoserver", "agnhost", "pause", "netshoot", "nginx:1.25",
                          "redis", "", "NGINX", "-rf"])
CIDRS = st.sampled_from(["10.244.0.0/16", "10.128.0.0/16", "172.16.0.0/20", "10.244.0.0/33", "10.244.0.1/16",
                         "not-a-cidr", "0.0.0.0/0", "127.0.0.0/8", "192.168.56.0/24", "fd00::/64", "10.96.0.0/12"])


def maybe(strategy):
    """Mostly a sensible value, sometimes junk: enough valid files to bring up, enough broken ones."""
    return st.one_of(*([strategy] * 12), JUNK)



containers = st.lists(st.fixed_dictionaries({"name": maybe(NAMES)}, optional={
    "image": maybe(IMAGES), "ports": maybe(st.lists(st.integers(-1, 70000), max_size=2)),
    "command": maybe(st.sampled_from([["sleep", "600"], ["sh", "-c", "sleep 600"], "sleep 600", [], ["-rf"]]))}),
    max_size=3)
pods = st.lists(st.fixed_dictionaries({"name": maybe(NAMES)}, optional={
    "node": maybe(NAMES), "image": maybe(IMAGES), "containers": maybe(containers),
    "hostNetwork": maybe(st.booleans()), "labels": maybe(st.dictionaries(NAMES, NAMES, max_size=2))}), max_size=4)
deployments = st.lists(st.fixed_dictionaries({"name": maybe(NAMES)}, optional={
    "replicas": maybe(st.integers(-2, 5)), "image": maybe(IMAGES), "nodes": maybe(st.lists(NAMES, max_size=2))}),
    max_size=2)
network = st.fixed_dictionaries({}, optional={
    "podCIDR": maybe(CIDRS), "nodeCIDRMaskSize": maybe(st.integers(-1, 40)), "nodeSubnet": maybe(CIDRS),
    "serviceCIDR": maybe(CIDRS), "mtu": maybe(st.integers(0, 70000)), "bridge": maybe(NAMES)})
documents = st.fixed_dictionaries({}, optional={
    "name": maybe(NAMES), "description": maybe(st.text(max_size=40)),
    "mode": maybe(st.sampled_from(["vxlan", "l2", "l3", "L3", "calico"])),
    "routing": maybe(st.sampled_from(["host", "gateway", "bgp"])), "network": maybe(network),
    "nodes": maybe(st.one_of(st.lists(NAMES, max_size=4), st.integers(-1, 4))), "pods": maybe(pods),
    "deployments": maybe(deployments), "outside": maybe(st.lists(NAMES, max_size=2)),
    "extra": JUNK})



@st.composite
def plausible(draw) -> dict:
    """A design a trainee might write: mostly valid, so some get brought up for real."""
    nodes = draw(st.lists(st.sampled_from(["node1", "node2", "n3", "worker"]), min_size=1, max_size=3, unique=True))
    mode = draw(st.sampled_from(["vxlan", "l2", "l3"]))
    doc: dict = {"mode": mode, "nodes": nodes}
    if mode == "l3":
        doc["routing"] = draw(st.sampled_from(["host", "gateway"]))
    if draw(st.booleans()):
        doc["network"] = {"podCIDR": draw(st.sampled_from(["10.244.0.0/16", "10.128.0.0/16", "172.20.0.0/16"])),
                          "nodeCIDRMaskSize": draw(st.sampled_from([24, 25, 26])),
                          "mtu": draw(st.sampled_from([1400, 1500, 9000]))}
    names = draw(st.lists(st.sampled_from(["web", "db", "api", "cache", "client"]), max_size=3, unique=True))
    doc["pods"] = []
    for name in names:
        pod: dict = {"name": name}
        if draw(st.booleans()):
            pod["node"] = draw(st.sampled_from(nodes))
        if draw(st.booleans()):
            pod["image"] = draw(st.sampled_from(["nginx", "busybox", "echoserver"]))
        else:
            pod["containers"] = [{"name": "main", "image": draw(st.sampled_from(["nginx", "echoserver"]))},
                                 {"name": "side", "image": "busybox", "command": ["sleep", "3600"]}]
        doc["pods"].append(pod)
    if draw(st.booleans()):
        doc["deployments"] = [{"name": "app", "replicas": draw(st.integers(0, 2)), "image": "nginx"}]
    if draw(st.booleans()):
        doc["outside"] = ["ecs"]
    return doc


def judge(text: str) -> topology.Topology | None:
    """Load, plan and render: a Topology, or None after a clear PodlabError. Anything else fails."""
    try:
        topo = topology.loads(text, source="generated.yaml", default_name="generated")
    except PodlabError as e:
        message = str(e)
        assert message and "Traceback" not in message
        assert all(len(line) < 2000 for line in message.splitlines())
        return None
    plan = planner.build(topo)   # a valid topology always plans
    render.plan_text(plan)
    commands.render(plan.ops)
    return topo


def small(topo: topology.Topology) -> bool:
    return len(topo.nodes) <= 3 and len(topo.pods) <= 4 and len(topo.outside) <= 2


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(documents, plausible()))
def test_generated_topologies_get_an_error_or_a_plan(doc):
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    FIGURES["generated"] += 1
    topo = judge(text)
    if topo is None:
        if len(INVALID) < MAX_REFUSED:
            INVALID.append(text)
        return
    FIGURES["generated_valid"] += 1
    if small(topo):
        VALID_SMALL.append((len(topo.pods) + len(topo.nodes) + len(topo.outside), topo.design.backend, text))


def richest(candidates: list[tuple[int, str, str]], count: int) -> list[str]:
    """The biggest of the small valid designs, a different mode first where there is one."""
    chosen: list[str] = []
    modes: set[str] = set()
    for size, mode, text in sorted(candidates, reverse=True):
        if mode not in modes and text not in chosen:
            chosen.append(text)
            modes.add(mode)
    for size, mode, text in sorted(candidates, reverse=True):
        if len(chosen) < count and text not in chosen:
            chosen.append(text)
    return chosen[:count]


def _mutate(data, draw, depth: int = 0):
    """One random change somewhere in a parsed YAML document."""
    if isinstance(data, dict) and data and depth < 4:
        key = draw(st.sampled_from(sorted(data, key=str)))
        action = draw(st.sampled_from(["drop", "junk", "deeper", "rename", "dup"]))
        if action == "drop":
            data.pop(key)
        elif action == "junk":
            data[key] = draw(JUNK)
        elif action == "rename":
            data[draw(st.text(max_size=10))] = data.pop(key)
        elif action == "dup":
            data[key] = [data[key], data[key]]
        else:
            data[key] = _mutate(data[key], draw, depth + 1)
        return data
    if isinstance(data, list) and data and depth < 4:
        i = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["drop", "junk", "deeper", "double"]))
        if action == "drop":
            data.pop(i)
        elif action == "junk":
            data[i] = draw(JUNK)
        elif action == "double":
            data.append(data[i])
        else:
            data[i] = _mutate(data[i], draw, depth + 1)
        return data
    return draw(JUNK)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SHIPPED), st.data())
def test_mutated_shipped_topologies_get_an_error_or_a_plan(path, data):
    original = path.read_text()
    how = data.draw(st.sampled_from(["structure", "structure", "cut", "splice"]))
    if how == "structure":
        doc = yaml.safe_load(original)
        for _ in range(data.draw(st.integers(1, 3))):
            doc = _mutate(doc, data.draw)
        text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    elif how == "cut":
        text = original[:data.draw(st.integers(0, len(original)))]
    else:
        at = data.draw(st.integers(0, len(original)))
        text = original[:at] + data.draw(st.text(max_size=12)) + original[at:]
    FIGURES["mutated"] += 1
    if judge(text) is not None:
        FIGURES["mutated_valid"] += 1


def namespaces() -> set[str]:
    return set(os.listdir(netns.NETNS_DIR)) if os.path.isdir(netns.NETNS_DIR) else set()


def test_invalid_generated_topologies_are_refused_by_up_and_create_nothing(root, tmp_path):
    assert INVALID, "the generator produced no invalid topology (run with the generation tests)"
    before = namespaces()
    for i, text in enumerate(INVALID):
        path = tmp_path / f"bad{i}.yaml"
        path.write_text(text)
        code, out, err = podlab("up", str(path), "--name", f"bad-{secrets.token_hex(3)}")
        assert code == 1 and err.startswith("podlab: ") and "Traceback" not in err, err
        FIGURES["refused_up"] += 1
    assert namespaces() - before == set() or all(not n.startswith("bad-") for n in namespaces() - before)
    assert [p for p in root.iterdir() if not p.name.startswith(".")] == []


def test_valid_generated_topologies_come_up_and_go_without_residue(root, tmp_path):
    assert VALID_SMALL, "the generator produced no small valid topology"
    before = root_netns_state()
    for text in richest(VALID_SMALL, MAX_UP):
        d = Design.write(tmp_path, "gen", text.replace("{", "{{").replace("}", "}}"))
        code, out, err = podlab("up", str(d.path), "--name", d.name)
        try:
            assert code == 0, err
            code, out, err = podlab("check", "--lab", d.name)
            assert code == 0, out + err
            FIGURES["brought_up"] += 1
            FIGURES["brought_up_pods"] = FIGURES.get("brought_up_pods", 0) + len(api.Lab(d.name).addresses.pods)
        finally:
            if (root / d.name).exists():
                assert podlab("down", d.name)[0] == 0
        assert not residue(d, root)
    after = root_netns_state()
    assert after == before, diff_root_state(before, after)


HOSTILE_NAMES = ["../x", "../../etc", "-rf", "--all", "a b", "x/y", ".", "..", "", "a" * 300, "ünïcödé",
                 "lab\nx", "$(reboot)", "x;rm -rf /", "UPPER", "-", "a--", "\x00"]


def test_hostile_names_are_refused_everywhere(root, tmp_path):
    before_ns, before_files = namespaces(), set(os.listdir(root))
    good = Design.write(tmp_path, "names", "nodes: [node1]\npods: [{{name: web, image: nginx}}]\n")
    assert podlab("up", str(good.path), "--name", good.name)[0] == 0
    try:
        for name in HOSTILE_NAMES:
            # Options take the name in their = form ('--name=-rf' is a value); a positional that starts
            # with '-' is an option to argparse, as for any Unix tool, so positionals get the others.
            positional = bool(name) and not name.startswith("-")
            attempts = [["up", str(good.path), f"--name={name}"], ["status", f"--lab={name}"],
                        ["get", "pods", f"--lab={name}"], ["check", f"--lab={name}"]]
            if positional:
                attempts += [["down", name], ["exec", name, f"--lab={good.name}", "--", "true"],
                             ["inspect", name, f"--lab={good.name}"], ["restart-agent", name],
                             ["ping", "web", name, f"--lab={good.name}", "-c", "1"]]
            as_topology = tmp_path / "hostile.yaml"
            as_topology.write_text(yaml.safe_dump({"name": name, "nodes": ["node1"]}))
            attempts.append(["up", str(as_topology)])
            as_pod = tmp_path / "hostile-pod.yaml"
            as_pod.write_text(yaml.safe_dump({"nodes": ["node1"], "pods": [{"name": name, "image": "nginx"}]}))
            attempts.append(["up", str(as_pod), "--name", f"hp-{secrets.token_hex(3)}"])
            for argv in attempts:
                try:
                    code, out, err = podlab(*argv)
                except SystemExit as e:      # argparse refused it: a usage message, exit 2
                    code, err = e.code, "usage"
                # An empty --lab= means "no lab given": the usual default applies.
                assert code in ((0, 1, 2) if name == "" else (1, 2)) and "Traceback" not in err, (argv, code, err)
                if code == 1:
                    assert err.startswith("podlab: ") and len(err) < 3000, err
                FIGURES["hostile_names"] += 1
        assert podlab("exec", "web", "--lab", good.name, "--", "true")[0] == 0, "the lab still works"
    finally:
        assert podlab("down", good.name)[0] == 0
    # Other programs (other tests, on a shared machine) may add namespaces meanwhile: look for ours.
    made = [n for n in namespaces() - before_ns
            if n.startswith(("hp-", good.name)) or any(h and n.startswith(h + "-") for h in HOSTILE_NAMES)]
    assert made == []
    assert set(os.listdir(root)) - before_files == set()
    assert not residue(good, root)


def test_feature_probes_agree_with_iproute2():
    """The in-process probes answer what `ip`/`tc` answer in a scratch namespace of their own
    (`unshare -n`: the root namespace is not touched by either)."""
    from lab.engine import features
    before = root_netns_state()
    features._cache.clear()
    for feature, command in (("vxlan", "ip link add probe0 type vxlan id 42 dstport 4789"),
                             ("netem", "tc qdisc add dev lo root netem delay 1ms")):
        truth = subprocess.run(["unshare", "-n", "sh", "-c", command], capture_output=True).returncode == 0
        assert features.available(feature) == truth, feature
    after = root_netns_state()
    assert after == before, diff_root_state(before, after)


def test_a_missing_kernel_feature_is_named_and_nothing_is_made(root, tmp_path, monkeypatch):
    from lab.engine import features
    monkeypatch.setattr(features, "_cache", {"vxlan": False})
    d = Design.write(tmp_path, "nofeat", "mode: vxlan\nnodes: [node1, node2]\n")
    code, out, err = podlab("up", str(d.path), "--name", d.name)
    assert code == 1 and "lacks vxlan" in err and "modprobe vxlan" in err and "Traceback" not in err
    assert not (root / d.name).exists() and not any(netns.exists(n) for n in d.netns)
    monkeypatch.setattr(features, "_cache", {"vxlan": False})
    d = Design.write(tmp_path, "l3ok", "mode: l3\nnodes: [node1]\n")   # l3 needs no vxlan
    assert podlab("up", str(d.path), "--name", d.name)[0] == 0
    assert podlab("down", d.name)[0] == 0


def test_kernel_limits_stop_up_before_anything_is_made(root, tmp_path):
    too_many = ("network: {podCIDR: 10.128.0.0/9, nodeCIDRMaskSize: 20}\nnodes: [node1]\n"
                "deployments: [{name: w, replicas: 1025, image: busybox}]\n")
    long_name = "nodes: [node1]\nnetwork: {bridge: averyverylongbridge}\n"
    for text, expected in ((too_many, "BR_MAX_PORTS"), (long_name, "IFNAMSIZ")):
        path, name = tmp_path / "limit.yaml", f"limit-{secrets.token_hex(3)}"
        path.write_text(text)
        code, out, err = podlab("up", str(path), "--name", name)
        assert code == 1 and expected in err and "nothing was created" in err, err
        assert not (root / name).exists() and not netns.exists(f"{name}-node1")


@pytest.fixture(scope="module", autouse=True)
def figures():
    """Printed once the module's tests are done (seen with -s): how much they tried. Not a test:
    it could not fail."""
    yield
    print(f"\nhostile input figures: {FIGURES}")
