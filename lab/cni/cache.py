"""The results cache, in libcni's format and layout (libcni/api.go @v1.1.2: cacheAdd, getCachedResult,
cacheDel): `<cacheDir>/results/<network>-<containerID>-<ifName>`, JSON of kind cniCacheV1 with the
conflist's bytes (base64, as Go encodes a []byte), the CNI_ARGS pairs, the capability arguments and
the chain's final result; directory 0700, file 0600. A node's cacheDir is its own /var/lib/cni (in
the lab's state: lab.cni.paths), where containerd keeps it on a real node.
"""
from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.cni import gojson

KIND = "cniCacheV1"


def path(cache_dir: Path, network: str, container_id: str, ifname: str) -> Path:
    return cache_dir / "results" / f"{network}-{container_id}-{ifname}"


def encode(network: str, container_id: str, ifname: str, config: str, cni_args: tuple[tuple[str, str], ...],
           capability_args: dict[str, Any], result: Any) -> str:
    cached = gojson.Struct(kind=KIND, containerId=container_id,
                           config=base64.b64encode(config.encode()).decode(), ifName=ifname, networkName=network)
    if cni_args:
        cached["cniArgs"] = [list(pair) for pair in cni_args]
    if capability_args:
        cached["capabilityArgs"] = capability_args
    if result:
        cached["result"] = gojson.maps(result)     # RawResult: a map
    return gojson.dumps(cached)


def write(cache_dir: Path, network: str, container_id: str, ifname: str, config: str,
          cni_args: tuple[tuple[str, str], ...], capability_args: dict[str, Any], result: Any) -> Path:
    target = path(cache_dir, network, container_id, ifname)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(encode(network, container_id, ifname, config, cni_args, capability_args, result))
    tmp.rename(target)
    return target


@dataclass(frozen=True)
class Cached:
    network: str
    container_id: str
    ifname: str
    config: str
    cni_args: tuple[tuple[str, str], ...]
    capability_args: dict[str, Any]
    result: dict[str, Any] | None


def decode(text: str) -> Cached | None:
    """A cache file's contents; None if it is not a cniCacheV1 record (libcni then ignores it)."""
    try:
        raw = json.loads(text)
        if raw.get("kind") != KIND:
            return None
        return Cached(raw["networkName"], raw["containerId"], raw["ifName"],
                      base64.b64decode(raw.get("config") or "").decode(),
                      tuple((a, b) for a, b in raw.get("cniArgs") or ()), raw.get("capabilityArgs") or {},
                      raw.get("result"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def read(cache_dir: Path, network: str, container_id: str, ifname: str) -> Cached | None:
    try:
        return decode(path(cache_dir, network, container_id, ifname).read_text())
    except OSError:
        return None


def delete(cache_dir: Path, network: str, container_id: str, ifname: str) -> None:
    path(cache_dir, network, container_id, ifname).unlink(missing_ok=True)


def entries(cache_dir: Path) -> list[Cached]:
    """Every cached attachment of a node (the DELs `down` and `clean` owe)."""
    out = []
    try:
        names = sorted(os.listdir(cache_dir / "results"))
    except OSError:
        return []
    for name in names:
        if name.startswith("."):
            continue
        try:
            cached = decode((cache_dir / "results" / name).read_text())
        except OSError:
            continue
        if cached is not None:
            out.append(cached)
    return out
