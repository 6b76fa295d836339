"""When each of a lab's pods and nodes was made: what their AGE counts from, as kubectl's counts
from an object's creationTimestamp (a pod made by `apply` an hour after `up` is an hour younger
than the lab).

A pod's sandbox is its network namespace, made when the pod is (by `up` or a change) and gone with
it; a namespace's nsfs inode keeps the ctime of its making while it is mounted (the journal's
identities rely on it, lab.engine.netns.identity), so one stat(2) per pod says it, from the kernel:
~4 us a pod, nothing kept or parsed. A hostNetwork pod has no namespace of its own (it shares its
node's): its making is the last change the journal says added it, or else the lab's `up`. A node's
namespace says the node's.
"""
from __future__ import annotations

import os
from collections.abc import Iterable

from lab.engine.journal import Journal

# ip netns's directory, as lab.engine.netns.NETNS_DIR (not imported for it: that module loads libc
# and the netlink wire code, ~5 ms of every `get pods`).
NETNS_DIR = "/run/netns"


def namespaces_made(names: Iterable[str]) -> dict[str, float]:
    """When each namespace mounted at /run/netns/NAME was made; those not there are left out."""
    out: dict[str, float] = {}
    stat = os.stat
    for name in names:
        if "/" in name or name in ("", ".", ".."):     # names come from the record: never outside the dir
            continue
        try:
            out[name] = stat(f"{NETNS_DIR}/{name}").st_ctime
        except OSError:
            pass
    return out


def added_by_changes(lab: str, pods: Iterable[str]) -> dict[str, float]:
    """For each of `pods` that a change (apply, delete, scale, ...) added, when the last one did.
    Reads the journal: only for the few pods that have no namespace of their own."""
    wanted = set(pods)
    out: dict[str, float] = {}
    if not wanted:
        return out
    for entry in Journal(lab).of_kind("change"):
        added, t = entry.get("added"), entry.get("t")
        if isinstance(added, list) and isinstance(t, (int, float)):
            out.update((p, float(t)) for p in added if p in wanted)
    return out


def services_added(lab: str) -> dict[str, float]:
    """When a change (apply) last added each Service ("namespace/name") that it added; the Services
    `up` made are not in it (their AGE is the lab's)."""
    out: dict[str, float] = {}
    for entry in Journal(lab).of_kind("change"):
        added, t = entry.get("services_added"), entry.get("t")
        if isinstance(added, list) and isinstance(t, (int, float)):
            out.update((s, float(t)) for s in added if isinstance(s, str))
    return out
