"""A manifest's value that only the topology's checks refuse (a pod name, a port, a label key) is said
at the manifest's own document, path and line, as kubectl's API server says it of the object sent,
not at the lab's record, which the user never wrote; nothing is changed."""
from __future__ import annotations

import pytest
from reliab import podlab

from lab import api
from lab.engine.journal import Journal

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: Bad_Pod
spec:
  containers:
  - name: c
    image: nginx
    ports:
    - containerPort: 80
      hostPort: 99999
"""
OBJECTS = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web, "bad key!": y}
    spec:
      containers:
      - name: web
        image: nginx
        ports:
        - containerPort: 99999
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 0
"""


@pytest.fixture(scope="module")
def lab(lab_from_yaml, tmp_path_factory):
    made = lab_from_yaml("design: kindnet\nnodes: [node1, node2]\npods:\n  - {name: client, node: node1, image: busybox}\n",
                         "me")
    return made.name, tmp_path_factory.mktemp("manifest-errors")


def refused(name: str, path) -> str:
    before_pods, before_journal = [p.name for p in api.Lab(name).topology.pods], len(Journal(name).entries())
    code, out, err = podlab("apply", "--lab", name, "-f", str(path))
    assert code == 1 and "Traceback" not in err, out + err
    assert [p.name for p in api.Lab(name).topology.pods] == before_pods
    assert len(Journal(name).entries()) == before_journal
    assert "record" not in err, err
    return err


def test_a_pods_values_are_said_at_the_manifests_lines(lab):
    name, d = lab
    (d / "pod.yaml").write_text(POD)
    err = refused(name, d / "pod.yaml")
    assert f"podlab: {d / 'pod.yaml'}: 2 problems; nothing was changed" in err
    assert f"{d / 'pod.yaml'}: document 1, metadata.name (line 4): pod name 'Bad_Pod' is not valid" in err
    assert f"{d / 'pod.yaml'}: document 1, spec.containers[0].ports[0].hostPort (line 11): hostPort 99999" in err


def test_a_deployments_and_a_services_values_are_said_in_their_own_documents(lab):
    name, d = lab
    (d / "objects.yaml").write_text(OBJECTS)
    err = refused(name, d / "objects.yaml")
    path = d / "objects.yaml"
    assert f"{path}: document 1, spec.template.metadata.labels.bad key! (line 11): label key 'bad key!'" in err
    assert f"{path}: document 1, spec.template.spec.containers[0].ports[0].containerPort (line 17): port 99999" in err
    assert f"{path}: document 2, spec.ports[0].port (line 26): port 0 is out of range" in err
