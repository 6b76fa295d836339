"""A tiny run of the benchmark code, so it does not rot. The full benchmark is `make bench`.

N=5: podlab (nginx and idle pods), the floor, the report; Mininet at N=2 only where Debian's
package is installed, and only if it cleans up exactly (the root namespace's links, addresses,
routes and the sysctls compared before and after).
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from labcheck import root_netns_state

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _bench_run():
    spec = importlib.util.spec_from_file_location("podlab_bench_run", BENCH / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bringup_section_and_report_at_n5(tmp_path):
    bench = _bench_run()
    before = root_netns_state()
    opts = bench.options(["--quick", "--sizes", "5", "--only", "bringup", "--no-mininet", "--out", str(tmp_path)])
    results = bench.run(opts)
    median = results["bringup"]["sizes"]["5"]["median"]
    for who in ("podlab", "podlab_idle", "floor"):
        assert median[who]["up"] > 0 and median[who]["down"] >= 0 and median[who]["settle"] >= 0
    assert json.loads((tmp_path / "results.json").read_text())["bringup"]["sizes"]["5"]
    text = (tmp_path / "RESULTS.md").read_text()
    assert "Bring-up and teardown" in text and "| 5 |" in text
    assert results["root_namespace_unchanged"] is True
    assert root_netns_state() == before


def test_floor_removes_exactly_what_it_made():
    bench = _bench_run()
    f = bench.floor.Floor(5)
    try:
        f.up()
        assert len(f.mounts) == 2 * (5 + 2)          # netns + uts mount of underlay, node1 and 5 pods
        assert all(Path(p).exists() for p in f.mounts)
    finally:
        made = list(f.mounts)
        f.down()
    assert not any(Path(p).exists() for p in made)


def test_mininet_peer_at_n2_cleans_up_exactly():
    bench = _bench_run()
    if not bench.mininet_available():
        pytest.skip("Debian's mininet package is not installed")
    before = root_netns_state()
    out = bench.mininet_cycle(2, "--pingall")
    assert out["pingall"]["loss_percent"] == 0
    assert out["residue"] == [] and out["root_links_same"] is True
    assert root_netns_state() == before
