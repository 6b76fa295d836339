"""The one way podlab runs a program inside a lab's namespaces: an argv prefix of util-linux tools.

    subprocess.run(nsexec.command(["ip", "addr"], "pod-a", uts, mounts=...))

Each tool changes its own process and execs the next (nsenter joins the namespaces, unshare
makes a private mount namespace, where a fixed sh script mounts what lab.engine.mountns planned;
setpriv sets the parent-death signal), so nothing runs between
fork and exec but the C of subprocess: Python code there (subprocess's pre-exec hook) can
deadlock in a threaded process, and podlab's processes have threads. No tool forks: the process
subprocess starts is the program in the end (its PID, process group and exit status are its own).

Stdlib only (lab.engine.netns and mountns are too): the workload agent imports it.
"""
from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterable, Sequence

from lab.engine import mountns
from lab.engine.netns import netns_path

# Set first, so the child dies with its parent (the thread that forked it) while the tools after run too.
DIE_WITH_PARENT = ("setpriv", "--pdeathsig", "KILL", "--")

def namespace_path(netns: str) -> str:
    """A lab's namespace name means /run/netns/NAME (validated); an absolute path is taken as it is."""
    return netns if netns.startswith("/") else netns_path(netns)


def in_namespace(netns: str, uts: str | None = None, *, mounts: Iterable[tuple[str, str]] = (),
                 view: mountns.Plan | None = None, die_with_parent: bool = False) -> list[str]:
    """The argv prefix that runs `prefix + argv` in network namespace `netns` and UTS namespace
    file `uts` (skipped if that file is gone, as for a namespace made without one).

    `mounts`: (file, target) pairs bind-mounted over their targets in a mount namespace of the
    program's own (made private first, so nothing propagates to the host's), as a container
    runtime mounts a pod's resolv.conf and hosts. Targets the host lacks are skipped: nothing is
    created. `view`: instead, a container's whole view planned by lab.engine.mountns (its volumes
    too, and those files). `die_with_parent`: SIGKILL when the forking thread ends (PR_SET_PDEATHSIG).
    """
    prefix = list(DIE_WITH_PARENT) if die_with_parent else []
    prefix += ["nsenter", "--no-fork", f"--net={namespace_path(netns)}"]
    if uts and os.path.exists(uts):
        prefix.append(f"--uts={uts}")
    prefix.append("--")
    if view is None:
        view = mountns.plan([mountns.Bind(src, dst, directory=False) for src, dst in mounts], scratch="")
    return prefix + mountns.prefix(view)


def command(argv: Sequence[str], netns: str, uts: str | None = None, *, mounts: Iterable[tuple[str, str]] = (),
            view: mountns.Plan | None = None, die_with_parent: bool = False, path: str | None = None) -> list[str]:
    """in_namespace(...) + argv, once argv[0] is known to be a program. A missing one raises
    FileNotFoundError here, as subprocess would without the tools in front; after them it would
    only be nsenter's exit status 127. `path`: the PATH the child looks it up in (default: ours)."""
    if shutil.which(argv[0], path=path) is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv[0])
    return in_namespace(netns, uts, mounts=mounts, view=view, die_with_parent=die_with_parent) + list(argv)
