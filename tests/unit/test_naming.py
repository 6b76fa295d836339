"""Generated names: kubectl-style pod names, veth names, namespace names."""
from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.naming import (SAFE_ALPHABET, deployment_pod_names, dns_label_problem, host_name_problem,
                        interface_name_problem, kube_name_problem, lab_name_problem, netns_name, pod_template_hash,
                        replicaset_name, suggest, veth_name)

SAFE = f"[{SAFE_ALPHABET}]"
POD_NAME = re.compile(rf"^[a-z0-9-]+-{SAFE}{{10}}-{SAFE}{{5}}$")
H = pod_template_hash("demo", '{"image":"nginx"}')    # a template's hash (lab.topology.pods.canonical_template)


def test_names_look_like_kubectl_get_pods():
    names = deployment_pod_names("demo", "nginx", H, 3)
    assert len(names) == 3
    for name in names:
        assert POD_NAME.match(name), name
        assert name.startswith("nginx-")
    hashes = {name.split("-")[1] for name in names}
    assert hashes == {H}  # one ReplicaSet: one template hash


def test_names_are_deterministic_and_depend_on_lab_deployment_and_template():
    assert deployment_pod_names("demo", "nginx", H, 5) == deployment_pod_names("demo", "nginx", H, 5)
    assert deployment_pod_names("demo", "nginx", H, 5) != deployment_pod_names("other", "nginx", H, 5)
    # The hash is the template's: another template (an image, an annotation) is another ReplicaSet,
    # the same template in another lab too.
    assert pod_template_hash("demo", '{"image":"nginx:1.25"}') != H
    assert pod_template_hash("other", '{"image":"nginx"}') != H
    assert pod_template_hash("demo", '{"image":"nginx"}') == H
    other = pod_template_hash("demo", '{"image":"nginx:1.25"}')
    assert not set(deployment_pod_names("demo", "nginx", other, 5)) & set(deployment_pod_names("demo", "nginx", H, 5))


def test_more_replicas_keep_the_names_of_fewer():
    # Scaling 3 -> 5 adds two pods and leaves the first three alone, like a trainee expects.
    assert deployment_pod_names("demo", "nginx", H, 5)[:3] == deployment_pod_names("demo", "nginx", H, 3)


def test_many_replicas_are_unique():
    names = deployment_pod_names("demo", "web", H, 20000)
    assert len(set(names)) == 20000
    assert all(POD_NAME.match(n) for n in names[:100])


def test_collisions_are_rehashed(monkeypatch):
    import lab.naming as naming

    real = naming._digest

    def every_first_attempt_collides(text: str) -> bytes:
        # "lab/deployment/index" is the first attempt; "lab/deployment/index/counter" a retry.
        return b"\0" * 32 if text.count("/") == 2 else real(text)

    monkeypatch.setattr(naming, "_digest", every_first_attempt_collides)
    names = naming.deployment_pod_names("d", "x", H, 4)
    assert len(set(names)) == 4
    assert names[0].endswith("-bbbbb")  # the zero digest encodes to the alphabet's first letter
    assert all(POD_NAME.match(n) for n in names)


def test_zero_replicas_and_negative():
    assert deployment_pod_names("demo", "nginx", H, 0) == []
    with pytest.raises(ValueError):
        deployment_pod_names("demo", "nginx", H, -1)


def test_long_deployment_names_keep_pod_names_within_63_characters():
    deployment = "a" * 60 + "-bc"
    names = deployment_pod_names("demo", deployment, H, 2)
    for name in names:
        assert len(name) <= 63
        assert POD_NAME.match(name)
    assert replicaset_name("nginx", H) == f"nginx-{H}"
    # Cutting must not leave a trailing '.' or '-' before the hash's dash.
    dotted = "a" * 45 + ".b" + "c" * 10
    assert not re.search(r"[.-]-", deployment_pod_names("demo", dotted, H, 1)[0])


@settings(max_examples=200, deadline=None)
@given(lab=st.from_regex(r"[a-z0-9]{1,24}", fullmatch=True),
       deployment=st.from_regex(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", fullmatch=True),
       replicas=st.integers(0, 30))
def test_any_valid_deployment_gives_valid_unique_pod_names(lab, deployment, replicas):
    names = deployment_pod_names(lab, deployment, pod_template_hash(lab, deployment), replicas)
    assert len(set(names)) == replicas
    for name in names:
        assert POD_NAME.match(name) and len(name) <= 63
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)  # a DNS label: usable as a hostname


def test_veth_name_is_the_cni_style_hash():
    import hashlib

    name = veth_name("demo", "nginx-abc")
    assert name == "veth" + hashlib.sha256(b"demo/nginx-abc").hexdigest()[:8]
    assert re.fullmatch(r"veth[0-9a-f]{8}", name)
    assert len(name) <= 15
    assert veth_name("demo", "a") != veth_name("other", "a")


def test_netns_name():
    assert netns_name("demo", "node1") == "demo-node1"


# ---------------------------------------------------------------------------------------
# The rules for names users write
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["node1", "a", "n-1", "a" * 15, "0"])
def test_valid_host_names(name):
    assert host_name_problem(name) is None


@pytest.mark.parametrize("name,fix", [
    ("a" * 16, "IFNAMSIZ"), ("../x", "try 'x'"), ("-rf", "try 'rf'"), ("a b", "try 'a-b'"), ("Node1", "try 'node1'"),
    ("nöde", "lowercase letters a-z"), ("node1\n", "try 'node1'"), ("", "is empty"), ("a.b", "try 'a-b'"),
])
def test_invalid_host_names(name, fix):
    problem = host_name_problem(name)
    assert problem is not None and fix in problem
    assert "at most 15 characters: the kernel's limit for interface names (IFNAMSIZ)" in problem


def test_kube_names_dns_labels_and_lab_names():
    assert kube_name_problem("web.v1") is None
    assert "64 characters" in kube_name_problem("a" * 64)
    assert dns_label_problem("web.v1") is not None
    assert lab_name_problem("demo") is None and lab_name_problem("a" * 24) is None
    assert "at most 24" in lab_name_problem("a" * 25)
    assert lab_name_problem("demo\n") is not None  # `$` would accept this; fullmatch does not
    assert "x" * 100 not in kube_name_problem("X" * 100_000)  # the message shows the name cut short


@pytest.mark.parametrize("name,ok", [
    ("cni0", True), ("br-pods", True), ("flannel.1", True), ("a_b", True), ("", False), ("a" * 16, False),
    (".", False), ("..", False), ("a/b", False), ("a:b", False), ("a b", False), ("brü", False), ("lo", False),
])
def test_interface_names_follow_the_kernel(name, ok):
    assert (interface_name_problem(name) is None) == ok


def test_suggest():
    assert suggest("My_Node 1", 15) == "my-node-1"
    assert suggest("node1", 15) is None  # already valid: nothing to suggest
    assert suggest("---", 15) is None
    assert len(suggest("x" * 40, 15)) == 15
