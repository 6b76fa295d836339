"""The bench's cni section at a small size: both contenders attach every pod, and the naive harness
removes every namespace it made (and its host-local store)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from labcheck import root_netns_state

BENCH = Path(__file__).resolve().parents[2] / "bench"
pytestmark = pytest.mark.skipif(not os.path.exists("/usr/lib/cni/bridge"), reason="needs containernetworking-plugins")


def _bench_run():
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("podlab_bench_run_cni", BENCH / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cni_section_at_six_pods(tmp_path):
    bench = _bench_run()
    before = root_netns_state()
    opts = bench.options(["--quick", "--only", "cni", "--out", str(tmp_path)])
    opts.cni_pods = 6
    results = bench.run(opts)
    c = results["cni"]
    assert c["runs"]["podlab"][0]["attached"] == 6 and c["runs"]["podlab"][0]["invocations"] == 12
    assert c["runs"]["naive"][0]["invocations"] == 12 and c["speedup"] > 0
    assert "through the real bridge + host-local + portmap" in (tmp_path / "RESULTS.md").read_text()
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert " nv" not in " " + left.replace("\n", " ")
    assert not list(Path("/tmp").glob("podlab-bench-naive-*"))
    assert results["root_namespace_unchanged"] is True and root_netns_state() == before
