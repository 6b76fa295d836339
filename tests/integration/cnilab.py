"""Helpers for the cni attachment's tests: conflists, a plugin of the user's own that misbehaves on
demand, what a node's host-local store holds, and the mounts a lab left."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from lab import state
from lab.cni import paths

CNI = "/usr/lib/cni"


def bridge_list(name: str = "cbr0", extra: list[dict] | None = None, version: str = "1.0.0", **bridge) -> str:
    """bridge + host-local over the node's block (a containerd template), then `extra` plugins."""
    first = {"type": "bridge", "bridge": "cni0", "isGateway": True, **bridge,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": "{{.PodCIDR}}"}]], "routes": [{"dst": "0.0.0.0/0"}]}}
    return json.dumps({"cniVersion": version, "name": name, "plugins": [first, *(extra or [])]}, indent=2)


# A plugin of the user's own: passes prevResult on, except for the pods its name says to fail:
# hang-*, noresult-*, badjson-*, error-* (code 7 with a msg), stderr-* (exit 1, words on stderr only).
FLAKY = r'''#!/usr/bin/env python3
import json, os, sys, time
if os.environ.get("CNI_COMMAND") == "VERSION":
    print(json.dumps({"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0"]})); sys.exit(0)
conf = json.load(sys.stdin)
pod = dict(kv.split("=", 1) for kv in os.environ.get("CNI_ARGS", "").split(";") if "=" in kv).get("K8S_POD_NAME", "")
if os.environ["CNI_COMMAND"] != "ADD":
    sys.exit(0)
if pod.startswith("hang-"):
    time.sleep(600)
if pod.startswith("noresult-"):
    sys.exit(0)
if pod.startswith("badjson-"):
    print("{not json"); sys.exit(0)
if pod.startswith("error-"):
    print(json.dumps({"cniVersion": "1.0.0", "code": 7, "msg": "flaky refuses " + pod, "details": "on purpose"}))
    sys.exit(1)
if pod.startswith("stderr-"):
    print("flaky: something broke", file=sys.stderr); sys.exit(1)
print(json.dumps(conf.get("prevResult", {"cniVersion": "1.0.0"})))
'''


def plugin_dir(tmp: Path, not_executable: str | None = None) -> Path:
    d = tmp / "cni-bin"
    d.mkdir(exist_ok=True)
    (d / "flaky").write_text(FLAKY)
    (d / "flaky").chmod(0o755)
    if not_executable:
        (d / not_executable).write_text("#!/bin/sh\nexit 0\n")
        (d / not_executable).chmod(0o644)
    return d


def reservations(lab: str, node: str, network: str = "cbr0", data_dir: str = paths.HOST_LOCAL_DATA_DIR) -> list[str]:
    """The addresses host-local holds for pods on a node (its store, minus its own files)."""
    store = paths.on_host(lab, node, data_dir) / network
    try:
        return sorted(n for n in os.listdir(store) if n[0].isdigit())
    except OSError:
        return []


def results(lab: str, node: str) -> list[str]:
    try:
        return sorted(os.listdir(paths.cache_dir(lab, node) / "results"))
    except OSError:
        return []


def mounts_under(path: Path) -> list[str]:
    inside = str(path)
    return [line.split()[4] for line in open("/proc/self/mountinfo") if line.split()[4].startswith(inside)]


def no_cni_residue(lab: str) -> None:
    assert not mounts_under(state.lab_dir(lab)), f"mounts left under {state.lab_dir(lab)}"
    assert not state.lab_dir(lab).exists()


def executable(path: Path) -> bool:
    return bool(path.stat().st_mode & stat.S_IXUSR)
