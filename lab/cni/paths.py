"""Where a cni lab keeps each node's CNI state, inside the lab's state directory.

Each node runs its plugins in a mount namespace of its own (lab.engine.node_mountns) whose /run and
/var/lib are the node's directories here, as a real node has its own disks:

  $LAB/cni/nodes/<node>/run/        the node's /run: /run/netns (the host's pod namespaces, bound in),
                                    /run/cni/tuning (tuning's backups), /run/flannel/subnet.env,
                                    kindnet's /run/cni-ipam-state
  $LAB/cni/nodes/<node>/var-lib/    the node's /var/lib: /var/lib/cni/networks (host-local's store),
                                    /var/lib/cni/results (the results cache, libcni's layout)
  $LAB/cni/mnt/<node>               the node's mount namespace, bound on a file (a private mount)
  $LAB/cni/log.jsonl                every plugin invocation (podlab cni log)
  $LAB/cni/pods.json                each pod's attachment: its result or the error kubelet would show
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath

from lab import state

# The node's own directories, as the plugins see them, and where they live.
PRIVATE = {"/run": "run", "/var/lib": "var-lib"}
CACHE_DIR = "/var/lib/cni"               # libcni's CacheDir, as the node sees it
HOST_LOCAL_DATA_DIR = "/var/lib/cni/networks"


def root(lab: str) -> Path:
    return state.lab_dir(lab) / "cni"


def node_dir(lab: str, node: str) -> Path:
    return root(lab) / "nodes" / node


def mnt_dir(lab: str) -> Path:
    return root(lab) / "mnt"


def mntns_file(lab: str, node: str) -> Path:
    return mnt_dir(lab) / node


def log_file(lab: str) -> Path:
    return root(lab) / "log.jsonl"


def pods_file(lab: str) -> Path:
    return root(lab) / "pods.json"


def is_private(view: str) -> bool:
    """Whether a path the plugins name is in the node's own /run or /var/lib."""
    p = PurePosixPath(view)
    return p.is_absolute() and ".." not in p.parts and any(
        p == PurePosixPath(top) or PurePosixPath(top) in p.parents for top in PRIVATE)


def on_host(lab: str, node: str, view: str) -> Path:
    """Where a path in the node's view (/var/lib/cni/networks/cbr0) is in the lab's state."""
    p = PurePosixPath(view)
    for top, local in PRIVATE.items():
        if p == PurePosixPath(top) or PurePosixPath(top) in p.parents:
            return node_dir(lab, node) / local / p.relative_to(top)
    raise ValueError(f"{view} is not in the node's own /run or /var/lib")


def cache_dir(lab: str, node: str) -> Path:
    return on_host(lab, node, CACHE_DIR)
