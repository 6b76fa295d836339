"""Env from the pod's fields (the downward API): checked as the API server checks it, in manifests
and in podlab's documents, and filled in per pod in the workload agent's spec as the kubelet fills
it in when it starts the container."""
from __future__ import annotations

import hashlib
import json
import uuid

import pytest

from lab import manifests, planner, podenv, topology
from lab.cni import request
from lab.errors import PodlabError
from lab.ops import WriteFile
from lab.workloads import SPEC_FILE

POD = """\
apiVersion: v1
kind: Pod
metadata: {{name: envy}}
spec:
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c", "sleep 1000"]
    env:
    - name: {name}
      valueFrom: {value_from}
"""

DOC = """\
design: kindnet
nodes: [node1, node2]
deployments:
  - name: web
    replicas: 2
    labels: {app: web, tier: front}
    containers:
    - name: web
      image: busybox
      command: [sh, -c, 'echo "$POD_IP" > /tmp/ip; sleep 1000']
      env:
      - {name: GREETING, value: hello}
      - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
      - {name: HOST_IP, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}
      - {name: NODE_NAME, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
      - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
      - {name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
      - {name: POD_UID, valueFrom: {fieldRef: {fieldPath: metadata.uid}}}
      - {name: TIER, valueFrom: {fieldRef: {fieldPath: "metadata.labels['tier']"}}}
      - {name: SA, valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}}
pods:
  - {name: plain, node: node1, image: nginx}
"""


@pytest.mark.parametrize("name, value_from, where, says", [
    ("POD_IP", "{fieldRef: {fieldPath: status.phase}}", "env[0].valueFrom.fieldRef.fieldPath (line 11)",
     'Unsupported value: "status.phase": supported values: "metadata.name"'),
    ("L", "{fieldRef: {fieldPath: metadata.labels}}", "env[0].valueFrom.fieldRef.fieldPath (line 11)",
     "an env takes one key: metadata.labels['app']"),
    ("1BAD", "{fieldRef: {fieldPath: status.podIP}}", "env[0].name (line 10)", "must not start with a digit"),
    ("X", "{fieldRef: {fieldPath: status.podIP}, secretKeyRef: {name: a, key: b}}", "env[0].valueFrom (line 11)",
     "exactly one of"),
    ("Y", "{fieldRef: {path: x}}", "env[0].valueFrom.fieldRef.path (line 11)", "unknown field path"),
])
def test_a_manifests_bad_field_ref_names_its_document_path_and_line(name, value_from, where, says):
    with pytest.raises(PodlabError) as e:
        manifests.read(POD.format(name=name, value_from=value_from), "pod.yaml")
    assert f"pod.yaml: document 1, spec.containers[0].{where}" in str(e.value) and says in str(e.value)
    assert "nothing was changed" in str(e.value)


def test_a_secret_or_a_config_map_is_listed_as_not_emulated_and_left_out():
    found = manifests.read(POD.format(name="PASSWORD", value_from="{secretKeyRef: {name: db, key: pw}}"), "pod.yaml")
    assert not found.pods[0]["containers"][0].get("env")
    assert found.not_emulated == ["spec.containers[0].env[0].valueFrom"]


def test_a_documents_field_ref_is_checked_with_its_line():
    with pytest.raises(PodlabError, match=r"env\[1\]\.valueFrom\.fieldRef\.fieldPath \(line 13\): Unsupported value"):
        topology.loads(DOC.replace("fieldPath: status.podIP", "fieldPath: status.phase"), default_name="lab")
    with pytest.raises(PodlabError, match=r"env\[0\]\.valueFrom \(line 12\): may not be specified when `value`"):
        topology.loads(DOC.replace("{name: GREETING, value: hello}",
                                   "{name: GREETING, value: hello, valueFrom: {fieldRef: {fieldPath: metadata.name}}}"),
                       default_name="lab")


def test_each_pod_gets_its_own_values_in_the_agents_spec():
    topo = topology.loads(DOC, default_name="lab")
    plan = planner.build(topo)
    spec = json.loads(next(op.content for op in plan.ops if isinstance(op, WriteFile) and op.path.endswith(SPEC_FILE)))
    envs = {p["pod"]: dict(p["containers"][0].get("env", [])) for p in spec["pods"]}
    web = [p for p in topo.pods if p.deployment == "web"]
    assert len(web) == 2
    for pod in web:
        addr = next(a for a in plan.addresses.pods if a.name == pod.name)
        node = plan.addresses.node(pod.node)
        assert envs[pod.name] == {
            "GREETING": "hello", "POD_IP": str(addr.ip), "HOST_IP": str(node.ip), "NODE_NAME": pod.node,
            "POD_NAME": pod.name, "POD_NAMESPACE": "default", "POD_UID": request.pod_uid("lab", pod),
            "TIER": "front", "SA": "default"}
    assert envs["plain"] == {}


def test_the_uid_is_the_version_4_uuid_the_cni_plugins_saw_before():
    for pod in ("web-1", "nginx-5d4f7b9c8d-x2v9q", "a"):
        digest = hashlib.sha256(f"podlab/lab/default/{pod}/uid".encode()).hexdigest()[:32]
        assert podenv.pod_uid("lab", "default", pod) == str(uuid.UUID(digest, version=4))


def test_a_field_ref_is_part_of_the_template():
    """Another fieldPath, or the same entries in another order, is another pod template (a rollout);
    the golden plans hold that a template without field refs keeps the hash it had."""
    greeting = "      - {name: GREETING, value: hello}\n"
    swapped = DOC.replace(greeting, "").replace("      - {name: SA,", greeting + "      - {name: SA,")
    hashes = {t: next(p.template_hash for p in topology.loads(t, default_name="lab").pods if p.deployment == "web")
              for t in (DOC, DOC.replace("fieldPath: spec.nodeName", "fieldPath: status.hostIP"), swapped)}
    assert len(set(hashes.values())) == 3           # the order of the entries counts too, as in Kubernetes


@pytest.mark.parametrize("value_from, where, says", [
    ("{fieldRef: {apiVersion: v2, fieldPath: status.podIP}}", "valueFrom.fieldRef.apiVersion (line 11)",
     "unsupported version 'v2'"),
    ("{fieldRef: {fieldPath: 5}}", "valueFrom.fieldRef.fieldPath (line 11)", "fieldPath is a string"),
    ("[fieldRef]", "valueFrom (line 11)", "exactly one of fieldRef"),
])
def test_a_field_ref_the_api_server_refuses(value_from, where, says):
    with pytest.raises(PodlabError) as e:
        manifests.read(POD.format(name="V", value_from=value_from), "pod.yaml")
    assert f"env[0].{where}" in str(e.value) and says in str(e.value)


def test_a_null_value_from_is_none_as_the_api_server_reads_it():
    found = manifests.read(POD.format(name="V", value_from="null"), "pod.yaml")
    assert found.pods[0]["containers"][0]["env"] == [{"name": "V", "value": ""}] and not found.not_emulated
