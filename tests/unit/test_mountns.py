"""lab.engine.mountns: a container's volumes at their mountPaths without creating anything on the
host. The plan from a made-up host, and the script run with stand-in tools that only record. No root."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from lab.engine import mountns
from lab.engine.mountns import Bind


class FakeHost(mountns.Host):
    def __init__(self, dirs: set[str], files: set[str] = frozenset(), mounts: list[str] = ("/",),
                 links: dict[str, str] | None = None):
        super().__init__()
        self.dirs, self.files, self.mounts, self.links = dirs | {"/"}, set(files), list(mounts), links or {}

    def kind(self, path):
        path = self.realpath(path)
        return "dir" if path in self.dirs else "file" if path in self.files else None

    def realpath(self, path):
        for link, to in self.links.items():
            if path == link or path.startswith(link + "/"):
                return to + path[len(link):]
        return path

    def mountpoints(self):
        return self.mounts


HOST = FakeHost({"/usr", "/usr/share", "/etc", "/tmp", "/run", "/proc", "/dev", "/dev/pts", "/data"},
                {"/etc/resolv.conf", "/etc/hosts"}, ["/", "/proc", "/dev", "/dev/pts", "/tmp"])
VOL = "/run/podlab/l/pods/web/volumes/html"
S = "/run/podlab/l/pods/web/mounts/nginx"


def steps(binds, host=HOST):
    return mountns.plan(binds, S, host).steps


def test_an_existing_directory_is_bind_mounted_in_place():
    assert steps([Bind(VOL, "/data")]) == ["bind", VOL, "/data"]
    assert steps([Bind(VOL, "/data/", read_only=True)]) == ["bind", VOL, "/data", "ro", "/data"]


def test_a_missing_mount_path_is_made_in_an_overlay_on_its_nearest_existing_ancestor():
    """Seed 001's /usr/share/nginx/html: /usr/share exists, nginx/html is made in the overlay's upper
    directory (in the lab's state directory), the volume bound there, the overlay moved over /usr/share."""
    plan = mountns.plan([Bind(VOL, "/usr/share/nginx/html")], S, HOST)
    assert plan.steps == [
        "overlay", "/usr/share", f"{S}/0/upper", f"{S}/0/work", f"{S}/0/merged",
        "mkdir", f"{S}/0/merged/nginx/html",
        "bind", VOL, f"{S}/0/merged/nginx/html",
        "move", f"{S}/0/merged", "/usr/share"]
    assert plan.dirs == [f"{S}/0/upper", f"{S}/0/work", f"{S}/0/merged"]
    assert all(p.startswith(S) for verb, p in zip(plan.steps, plan.steps[1:]) if verb == "mkdir")


def test_files_under_an_overlays_root_are_mounted_inside_it_before_it_moves():
    got = steps([Bind("/pod/resolv.conf", "/etc/resolv.conf", directory=False), Bind(VOL, "/etc/app/conf")])
    assert got == ["overlay", "/etc", f"{S}/0/upper", f"{S}/0/work", f"{S}/0/merged",
                   "bind", "/pod/resolv.conf", f"{S}/0/merged/resolv.conf",
                   "mkdir", f"{S}/0/merged/app/conf", "bind", VOL, f"{S}/0/merged/app/conf",
                   "move", f"{S}/0/merged", "/etc"]


def test_a_file_the_host_lacks_is_skipped_and_only_files_means_no_overlay():
    assert steps([Bind("/pod/hosts", "/nowhere/hosts", directory=False),
                  Bind("/pod/resolv.conf", "/etc/resolv.conf", directory=False)]) == \
        ["bind", "/pod/resolv.conf", "/etc/resolv.conf"]


def test_mounts_below_the_overlays_root_are_bound_again_inside_it():
    """An overlay on / shows the root filesystem alone: /proc, /dev (with /dev/pts), /tmp are bound
    again (recursively) into it, and the program is chroot'ed into it (a root cannot be moved over)."""
    got = steps([Bind(VOL, "/cache")])
    m = f"{S}/0/merged"
    assert got == ["overlay", "/", f"{S}/0/upper", f"{S}/0/work", m,
                   "mkdir", f"{m}/cache", "bind", VOL, f"{m}/cache",
                   "rbind", "/dev", f"{m}/dev", "rbind", "/proc", f"{m}/proc", "rbind", "/tmp", f"{m}/tmp",
                   "root", m]


def test_a_missing_path_on_another_filesystem_gets_an_overlay_of_its_own():
    """/tmp is a mount of its own: /tmp/x is made in an overlay of /tmp, not in the one of /."""
    m0, m1 = f"{S}/0/merged", f"{S}/1/merged"
    got = steps([Bind(VOL, "/cache"), Bind("/v2", "/tmp/x")])
    assert got[:10] == ["overlay", "/", f"{S}/0/upper", f"{S}/0/work", m0,
                        "overlay", "/tmp", f"{S}/1/upper", f"{S}/1/work", m1]
    assert ["mkdir", f"{m1}/x", "bind", "/v2", f"{m1}/x"] == got[got.index(f"{m1}/x") - 1:got.index(f"{m1}/x") + 4]
    assert got[-5:] == ["move", m1, m0 + "/tmp", "root", m0]


def test_one_overlay_per_filesystem_serves_every_missing_path_on_it():
    got = steps([Bind(VOL, "/usr/share/nginx/html"), Bind("/v2", "/usr/lib/x")])
    assert got.count("overlay") == 1 and got[1] == "/usr"


def test_a_volume_inside_another_gets_its_mount_point_made_in_that_volume():
    got = steps([Bind("/v2", "/data/sub"), Bind(VOL, "/data")])
    assert got == ["bind", VOL, "/data", "mkdir", "/data/sub", "bind", "/v2", "/data/sub"]


def test_symlinked_ancestors_are_followed_as_mount_would():
    host = FakeHost({"/usr", "/usr/bin"}, mounts=["/"], links={"/bin": "/usr/bin"})
    got = steps([Bind(VOL, "/bin/x")], host)
    assert got[:2] == ["overlay", "/usr/bin"] and got[-3:] == ["move", f"{S}/0/merged", "/usr/bin"]


@pytest.mark.parametrize("binds, message", [
    ([Bind(VOL, "/etc/hosts")], "is a file on this machine, not a directory"),
    ([Bind(VOL, "/etc/hosts/x")], "/etc/hosts is a file"),
    ([Bind("relative", "/data")], "absolute"),
])
def test_mounts_that_cannot_be_made_are_errors(binds, message):
    with pytest.raises(mountns.MountError, match=message):
        mountns.plan(binds, S, HOST)


@pytest.mark.parametrize("path", ["relative/x", "/", "//", "/a/../b", "/a:b", "/a,b", "/a\nb"])
def test_mount_path_problems(path):
    assert mountns.mount_path_problem(path)


def test_mountinfo_paths_are_unescaped():
    assert mountns._unescape(r"/mnt/with\040space") == "/mnt/with space"


def test_the_script_runs_each_step_then_becomes_the_program(tmp_path: Path):
    """With stand-in mount and chroot that record their arguments: each step becomes the command
    it should, with its paths as arguments, and the program gets its own arguments untouched."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for tool in ("mount", "chroot"):
        (bin_ / tool).write_text(f'#!/bin/sh\nprintf "{tool} %s\\n" "$*" >> {tmp_path}/log\n'
                                 + ('shift; exec "$@"\n' if tool == "chroot" else ""))
        (bin_ / tool).chmod(0o755)
    made = tmp_path / "merged" / "nginx" / "html"
    args = ["overlay", "/usr/share", "/u", "/w", str(tmp_path / "merged"), "mkdir", str(made),
            "bind", "/vol $(x)", str(made), "ro", str(made), "rbind", "/proc", "/m/proc",
            "move", "/m", "/usr/share", "root", "/m", "--", "echo", "a b", "--"]
    r = subprocess.run(["sh", "-c", mountns.SCRIPT, "sh", *args], capture_output=True, text=True,
                       env={**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}"})
    assert r.returncode == 0, r.stderr
    assert r.stdout == "a b --\n" and made.is_dir()
    assert (tmp_path / "log").read_text().splitlines() == [
        f"mount -n -t overlay overlay -o lowerdir=/usr/share,upperdir=/u,workdir=/w {tmp_path}/merged",
        f"mount -n --bind /vol $(x) {made}", f"mount -n -o remount,bind,ro {made}",
        "mount -n --rbind /proc /m/proc", "mount -n --move /m /usr/share", "chroot /m echo a b --"]


def test_a_failed_step_runs_nothing(tmp_path: Path):
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "mount").write_text("#!/bin/sh\nexit 32\n")
    (bin_ / "mount").chmod(0o755)
    r = subprocess.run(["sh", "-c", mountns.SCRIPT, "sh", "bind", "/a", "/b", "--", "touch", str(tmp_path / "ran")],
                       env={**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}"})
    assert r.returncode == 32 and not (tmp_path / "ran").exists()
