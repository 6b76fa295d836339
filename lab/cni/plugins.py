"""The plugin binaries: found in cniPath as libcni finds them (pkg/invoke/find.go: the first
regular file of that name in the listed directories), checked executable, and asked which spec
versions they speak (CNI_COMMAND=VERSION, as libcni's ValidateNetworkList does before a list is
used). Each problem is said with what was searched and what was found there.

Debian's containernetworking-plugins 1.1.1 (built with libcni 1.1.2) speak 0.1.0 to 1.0.0: a list
written for spec 1.1.0 is refused here, before anything is made, rather than by every ADD.
"""
from __future__ import annotations

import difflib
import json
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from lab.cni.conflist import Conflist

DEFAULT_PATH = ("/usr/lib/cni",)
OTHER_PLACES = ("/opt/cni/bin", "/usr/libexec/cni", "/usr/lib/cni")   # where distributions put them
PACKAGE = "containernetworking-plugins"
VERSION_TIMEOUT = 10.0


@dataclass(frozen=True)
class Found:
    type: str
    path: str | None
    problem: str | None = None


def listing(directory: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(directory) if os.path.isfile(os.path.join(directory, n)))
    except OSError:
        return []


def find(kind: str, cni_path: Iterable[str]) -> Found:
    dirs = list(cni_path)
    for d in dirs:
        full = os.path.join(d, kind)
        if os.path.isfile(full):
            if not os.access(full, os.X_OK):
                return Found(kind, full, f"plugin {kind}: {full} is not executable (chmod +x {full})")
            return Found(kind, full)
    seen = []
    for d in dirs:
        names = listing(d)
        seen.append(f"{d}: {', '.join(names) if names else 'no such directory' if not os.path.isdir(d) else 'empty'}")
    hint = ""
    close = difflib.get_close_matches(kind, [n for d in dirs for n in listing(d)], n=1, cutoff=0.7)
    if close:
        hint = f"; did you mean {close[0]!r}?"
    elif all(not listing(d) for d in dirs):
        elsewhere = [p for p in OTHER_PLACES if p not in dirs and os.path.isfile(os.path.join(p, kind))]
        hint = (f"; {kind} is in {elsewhere[0]}: add it to cniPath" if elsewhere
                else f"; install the plugins with 'apt-get install {PACKAGE}' (they go to /usr/lib/cni)")
    return Found(kind, None, f'plugin type "{kind}" not found in cniPath (searched {"; ".join(seen)}){hint}')


@lru_cache(maxsize=None)
def _versions(path: str, mtime: float) -> tuple[tuple[str, ...] | None, str | None]:
    """The versions a binary supports, from its VERSION reply (libcni's GetVersionInfo)."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": "VERSION", "CNI_NETNS": "dummy",
           "CNI_IFNAME": "dummy", "CNI_PATH": "dummy"}
    try:
        r = subprocess.run([path], input='{"cniVersion":"1.1.0"}', capture_output=True, text=True, env=env,
                           timeout=VERSION_TIMEOUT, cwd="/")
    except subprocess.TimeoutExpired:
        return None, f"{path} did not answer CNI_COMMAND=VERSION within {VERSION_TIMEOUT:g} s"
    except OSError as e:
        return None, f"{path} cannot be run: {e.strerror or e}"
    try:
        reply = json.loads(r.stdout)
        versions = reply.get("supportedVersions")
        if isinstance(versions, list) and all(isinstance(v, str) for v in versions):
            return tuple(versions), None
        if r.returncode != 0 and reply.get("msg") == "unknown CNI_COMMAND: VERSION":
            return ("0.1.0",), None
    except (ValueError, AttributeError):
        pass
    shown = (r.stdout or r.stderr).strip()[:200]
    return None, f"{path} answered CNI_COMMAND=VERSION (exit {r.returncode}) with no version list: {shown!r}"


def versions(path: str) -> tuple[tuple[str, ...] | None, str | None]:
    try:
        mtime = os.stat(path).st_mtime
    except OSError as e:
        return None, f"{path}: {e.strerror}"
    return _versions(path, mtime)


def problems(conf: Conflist, cni_path: Iterable[str]) -> list[str]:
    """What keeps the list from running here: a missing or unusable binary (the chain's plugins and the
    IPAM plugins they delegate to), or a cniVersion a binary does not support."""
    cni_path = tuple(cni_path)
    out: list[str] = []
    wanted = conf.cni_version or "0.1.0"
    for kind in dict.fromkeys(conf.types + conf.ipam_types()):
        found = find(kind, cni_path)
        if found.problem:
            out.append(found.problem)
            continue
        assert found.path is not None
        supported, problem = versions(found.path)
        if problem:
            out.append(f"plugin {kind}: {problem}")
        elif supported is not None and wanted not in supported:
            best = max(supported, key=_version_key)
            out.append(f'plugin {kind} ({found.path}) supports CNI versions {", ".join(supported)}, not the '
                       f'conflist\'s cniVersion "{wanted}": write "cniVersion": "{best}" (incompatible CNI versions, '
                       "code 1, is what every ADD would answer)")
    return out


def _version_key(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in v.split("."))
    except ValueError:
        return (0,)


def report(cni_path: Iterable[str]) -> list[tuple[str, str, str]]:
    """(directory, plugin, versions or problem) for every binary in cniPath: `podlab cni plugins`."""
    rows = []
    for d in cni_path:
        for name in listing(d):
            full = os.path.join(d, name)
            if not os.access(full, os.X_OK):
                rows.append((d, name, "not executable"))
                continue
            supported, problem = versions(full)
            rows.append((d, name, ", ".join(supported) if supported else f"? {problem}"))
    return rows
