"""lab.engine.nsexec, the one way to run a program in a lab namespace: the argv it builds, the
bind-mount script run for real (with a stand-in `mount`), and no preexec_fn anywhere. No root."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.engine import nsexec

ROOT = Path(__file__).resolve().parents[2]


def test_no_python_runs_between_fork_and_exec_anywhere() -> None:
    """preexec_fn runs Python in the forked child, which can deadlock a threaded process."""
    sources = [p for top in ("lab", "tui") for p in sorted((ROOT / top).rglob("*.py"))]
    assert len(sources) > 50
    found = [f"{p.relative_to(ROOT)}:{n}" for p in sources
             for n, line in enumerate(p.read_text().splitlines(), 1) if "preexec_fn" in line]
    assert not found, f"use lab.engine.nsexec instead of preexec_fn: {found}"


def test_a_name_is_joined_under_run_netns_without_forking() -> None:
    assert nsexec.in_namespace("default-web-0") == ["nsenter", "--no-fork", "--net=/run/netns/default-web-0", "--"]


def test_an_absolute_path_is_taken_as_it_is() -> None:
    assert nsexec.in_namespace("/proc/1/ns/net")[2] == "--net=/proc/1/ns/net"


@pytest.mark.parametrize("name", ["", ".", "..", "../etc", "a/b"])
def test_names_may_not_point_outside_run_netns(name: str) -> None:
    with pytest.raises(ValueError, match="invalid network namespace name"):
        nsexec.in_namespace(name)


def test_the_uts_namespace_is_joined_only_if_its_file_exists(tmp_path: Path) -> None:
    uts = tmp_path / "uts"
    assert not any(a.startswith("--uts") for a in nsexec.in_namespace("pod", str(uts)))
    uts.touch()
    assert nsexec.in_namespace("pod", str(uts)) == ["nsenter", "--no-fork", "--net=/run/netns/pod",
                                                    f"--uts={uts}", "--"]


def test_dying_with_the_parent_comes_first() -> None:
    argv = nsexec.in_namespace("pod", die_with_parent=True)
    assert argv[:4] == ["setpriv", "--pdeathsig", "KILL", "--"] and argv[4] == "nsenter"


def test_mounts_get_a_private_mount_namespace_and_missing_targets_are_skipped(tmp_path: Path) -> None:
    src, dst = tmp_path / "resolv.conf", tmp_path / "etc-resolv.conf"
    dst.touch()
    argv = nsexec.in_namespace("pod", mounts=[(str(src), str(dst)), ("/x/hosts", str(tmp_path / "absent"))])
    after = argv[argv.index("--") + 1:]
    assert after[:5] == ["unshare", "--mount", "--propagation", "private", "--"]
    assert after[5:7] == ["sh", "-c"] and after[8:] == ["sh", "bind", str(src), str(dst), "--"]
    assert nsexec.in_namespace("pod", mounts=[(str(src), str(tmp_path / "absent"))]) == nsexec.in_namespace("pod")


def test_mount_paths_must_be_absolute(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="absolute"):
        nsexec.in_namespace("pod", mounts=[("resolv.conf", str(tmp_path))])


def _bind_script(tmp_path: Path, mounts: list[tuple[str, str]], fails: bool = False) -> tuple[list[str], dict]:
    """The sh part of the argv, and an environment whose `mount` only records its arguments."""
    argv = nsexec.in_namespace("pod", mounts=mounts)
    stub = tmp_path / "bin" / "mount"
    stub.parent.mkdir()
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {tmp_path}/mounted\n' + ("exit 32\n" if fails else ""))
    stub.chmod(0o755)
    return argv[argv.index("sh"):], {**os.environ, "PATH": f"{stub.parent}:{os.environ['PATH']}"}


def test_the_bind_script_mounts_each_pair_then_becomes_the_program(tmp_path: Path) -> None:
    targets = [tmp_path / "a target", tmp_path / "hosts"]
    for t in targets:
        t.touch()
    mounts = [("/pods/web/resolv.conf", str(targets[0])), ("/pods/web/$(hosts)", str(targets[1]))]
    script, env = _bind_script(tmp_path, mounts)
    r = subprocess.run([*script, sys.executable, "-c", "import os, sys; print(os.getppid(), sys.argv[1:])", "--", "x y"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{os.getpid()} ['--', 'x y']\n"   # exec'd, not forked; its arguments untouched
    assert (tmp_path / "mounted").read_text().splitlines() == [
        f"-n --bind /pods/web/resolv.conf {targets[0]}", f"-n --bind /pods/web/$(hosts) {targets[1]}"]


def test_a_failed_mount_runs_nothing_and_says_so_in_the_exit_status(tmp_path: Path) -> None:
    target = tmp_path / "resolv.conf"
    target.touch()
    script, env = _bind_script(tmp_path, [("/pods/web/resolv.conf", str(target))], fails=True)
    r = subprocess.run([*script, "touch", str(tmp_path / "ran")], capture_output=True, text=True, env=env)
    assert r.returncode == 32 and not (tmp_path / "ran").exists()


def test_command_is_the_prefix_then_the_program() -> None:
    assert nsexec.command(["ip", "addr"], "pod", die_with_parent=True) == \
        nsexec.in_namespace("pod", die_with_parent=True) + ["ip", "addr"]


def test_a_missing_program_is_a_file_not_found_error_not_a_late_exit_status(tmp_path: Path) -> None:
    """As subprocess raises without the tools in front, so callers can say 'command not found'."""
    with pytest.raises(FileNotFoundError) as e:
        nsexec.command(["no-such-program-here"], "pod")
    assert e.value.filename == "no-such-program-here"
    with pytest.raises(FileNotFoundError):
        nsexec.command(["/nonexistent/bin/app"], "pod")
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert nsexec.command(["tool"], "pod", path=str(tmp_path))[-1] == "tool"   # looked up in the child's PATH
    with pytest.raises(FileNotFoundError):
        nsexec.command(["tool"], "pod")
