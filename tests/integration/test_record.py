"""A lab records itself: later commands read the document as `up` read it and the allocation it
was built with, not the file as it is now."""
from __future__ import annotations

import json
import shutil

from lab import api, state
from lab.api import TOPOLOGIES


def test_a_lab_reads_its_record_not_the_file_edited_since(tmp_path):
    path = tmp_path / "mine.yaml"
    shutil.copy(TOPOLOGIES / "default.yaml", path)
    topo = api.load_topology(str(path), name="rec")
    built = api.up(topo)
    try:
        before = {p.name: p.ip for p in built.addresses.pods}
        path.write_text(path.read_text().replace("replicas: 3", "replicas: 5").replace("busybox", "toolbox"))
        again = api.Lab("rec")
        assert {p.name: p.ip for p in again.addresses.pods} == before
        assert "busybox" in again.targets() and "toolbox" not in again.targets()
        record = json.loads((state.lab_dir("rec") / api.ALLOCATION_RECORD).read_text())
        assert {p[0] for p in record["pods"]} == set(before)
    finally:
        api.down("rec")
