"""The engine: a failure halfway through `up` removes what was made and names what failed;
a name clash with a namespace podlab did not make creates nothing and leaves that namespace alone."""
from __future__ import annotations

import secrets
import subprocess

import pytest

from lab import api, state
from lab.engine import netns
from lab.netlink import writer
from lab.errors import PodlabError

from labcheck import assert_no_residue, root_netns_state

DESIGN = "mode: vxlan\nnodes: [node1, node2]\ndeployments: [{name: web, replicas: 4, image: nginx}]\n"


def topo(tmp_path, name):
    path = tmp_path / f"{name}.yaml"
    path.write_text(DESIGN)
    return api.load_topology(str(path), name)


def test_failure_midway_removes_everything_and_names_the_operation(tmp_path, monkeypatch):
    before = root_netns_state()
    name = f"fail-{secrets.token_hex(3)}"
    t = topo(tmp_path, name)
    real_flush = writer.Channel.flush
    calls = {"n": 0}

    def failing_flush(self):
        calls["n"] += 1
        if calls["n"] == 12:     # well into the links
            self._buffer = self._buffer[:1]
            self._pending = self._pending[:1]
            raise writer.NetlinkError(19, self._pending[0][1].what)
        return real_flush(self)
    monkeypatch.setattr(writer.Channel, "flush", failing_flush)
    with pytest.raises(PodlabError) as e:
        api.up(t)
    assert "No such device" in str(e.value) and "ip -n " in str(e.value)
    names = [op.ns for op in api.planner.build(t).ops if hasattr(op, "hostname")]
    assert_no_residue(name, names)
    assert root_netns_state() == before


def test_existing_namespace_of_another_program_is_left_alone(tmp_path):
    name = f"clash-{secrets.token_hex(3)}"
    foreign = f"{name}-node2"
    subprocess.run(["ip", "netns", "add", foreign], check=True)
    try:
        with pytest.raises(PodlabError, match="already exists"):
            api.up(topo(tmp_path, name))
        assert netns.exists(foreign)
        assert not netns.exists(f"{name}-node1")
        assert not state.lab_dir(name).exists()
    finally:
        subprocess.run(["ip", "netns", "del", foreign], check=True)


def test_down_of_a_lab_that_is_not_up_is_a_clear_error():
    with pytest.raises(PodlabError, match="not up"):
        api.down(f"nolab-{secrets.token_hex(3)}")


def test_mount_points_are_links_of_one_recorded_inode_that_vanishes_with_them(tmp_path):
    """netns.MountPoints: every mount point of a directory is a hard link of one unnamed inode,
    reported before the first link exists; a taken name is refused; the inode goes with its links."""
    seen: list[tuple[int, int]] = []
    points = netns.MountPoints(lambda dev, ino: seen.append((dev, ino)) or assert_empty(tmp_path))
    names = [tmp_path / f"m{i}" for i in range(5)]
    for path in names:
        points.make(str(path))
    with pytest.raises(FileExistsError):
        points.make(str(names[0]))
    points.close()
    stats = [p.stat() for p in names]
    assert seen == [(stats[0].st_dev, stats[0].st_ino)]               # one template, reported once
    assert {(s.st_dev, s.st_ino) for s in stats} == set(seen)
    assert stats[0].st_nlink == 5 and stats[0].st_size == 0
    for path in names:
        path.unlink()
    assert list(tmp_path.iterdir()) == []


def assert_empty(directory) -> None:
    assert list(directory.iterdir()) == [], "the template was reported after a link to it existed"
