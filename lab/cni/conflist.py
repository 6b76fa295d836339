"""A CNI network configuration list, loaded and checked as libcni loads one (libcni/conf.go:
ConfListFromBytes, ConfFromBytes; pkg/utils: ValidateNetworkName) — every problem at once, in
words a person can act on: JSON errors with their line and column, a list without plugins, a
plugin without a type. A `.conf` (one plugin, no `plugins` key) is a list of that one plugin, as
go-cni and libcni's ConfListFromConf make it. Pure: the plugins' binaries are lab.cni.plugins'.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from lab.errors import PodlabError

NETWORK_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")
# The capabilities the CNI conventions name (CONVENTIONS.md); a plugin may declare others.
KNOWN_CAPABILITIES = ("portMappings", "ipRanges", "bandwidth", "dns", "ips", "mac", "infinibandGUID", "deviceID",
                      "aliases", "cgroupPath", "io.kubernetes.cri.pod-annotations")


class ConflistError(PodlabError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class Conflist:
    name: str
    cni_version: str                 # "" when the list gives none (libcni then asks plugins for 0.1.0)
    plugins: tuple[dict[str, Any], ...]
    disable_check: bool
    text: str                        # the bytes libcni keeps (and caches): the list as loaded

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(p["type"] for p in self.plugins)

    def ipam_types(self) -> tuple[str, ...]:
        """The IPAM plugins the chain delegates to (run by the main plugins, found in CNI_PATH too)."""
        out: list[str] = []
        for p in self.plugins:
            ipam = p.get("ipam")
            if isinstance(ipam, dict) and isinstance(ipam.get("type"), str) and ipam["type"] not in out:
                out.append(ipam["type"])
        return tuple(out)

    def describe(self) -> str:
        return f"{self.name} ({' + '.join(self.types)}, cniVersion {self.cni_version or 'not given'})"


def decode(text: str) -> Any:
    """JSON text to a value; ConflistError naming the line and column of a syntax error."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        line = text.splitlines()[e.lineno - 1] if 0 < e.lineno <= len(text.splitlines()) else ""
        shown = f": {line.strip()[:80]!r}" if line.strip() else ""
        raise ConflistError([f"not JSON: {e.msg} at line {e.lineno}, column {e.colno}{shown}"]) from None


def parse(text: str) -> Conflist:
    """The list libcni would load from `text`; ConflistError listing every problem."""
    raw = decode(text)
    if not isinstance(raw, dict):
        raise ConflistError([f"a conflist is a JSON object with name, cniVersion and plugins, not {_kind(raw)}"])
    problems: list[str] = []
    name = raw.get("name")
    if name is None:
        problems.append('no "name": a network list needs one (e.g. "name": "cbr0"); it names host-local\'s store '
                        "and the cached results")
    elif not isinstance(name, str):
        problems.append(f'"name" must be a string, not {_kind(name)}')
    elif not NETWORK_NAME.fullmatch(name):
        problems.append(f'"name" {name!r} is not a valid network name: letters, digits, "_", "." and "-", starting '
                        "with a letter or digit (libcni's ValidateNetworkName)")
    version = raw.get("cniVersion", "")
    if not isinstance(version, str):
        problems.append(f'"cniVersion" must be a string such as "1.0.0", not {_kind(version)}')
        version = ""
    disable_check = raw.get("disableCheck", False)
    if not isinstance(disable_check, bool):
        problems.append(f'"disableCheck" must be true or false, not {_kind(disable_check)}')
    if "plugins" in raw:
        plugins = raw["plugins"]
        if not isinstance(plugins, list):
            problems.append(f'"plugins" must be a list of plugin configurations, not {_kind(plugins)}')
            plugins = []
        elif not plugins:
            problems.append('"plugins" is empty: a list needs at least one plugin, e.g. '
                            '[{"type": "bridge", "ipam": {"type": "host-local", ...}}]')
    elif "type" in raw:
        plugins = [{k: v for k, v in raw.items() if k not in ("name", "cniVersion")}]   # a .conf
    else:
        problems.append('no "plugins": a conflist lists its plugins in order, e.g. "plugins": [{"type": "bridge", '
                        '...}, {"type": "portmap", "capabilities": {"portMappings": true}}]')
        plugins = []
    for i, plugin in enumerate(plugins):
        problems += [f"plugins[{i}]: {p}" for p in _plugin_problems(plugin)]
    if problems:
        raise ConflistError(problems)
    return Conflist(name, version, tuple(plugins), disable_check, text)


def _plugin_problems(plugin: Any) -> list[str]:
    if not isinstance(plugin, dict):
        return [f"a plugin configuration is a JSON object with a type, not {_kind(plugin)}"]
    out = []
    kind = plugin.get("type")
    if kind is None or kind == "":
        out.append('no "type": every plugin names its binary, e.g. "type": "bridge" (found in cniPath)')
    elif not isinstance(kind, str):
        out.append(f'"type" must be a string naming the plugin binary, not {_kind(kind)}')
    elif "/" in kind:
        out.append(f'"type" {kind!r} contains "/": a type is a binary\'s name, looked up in cniPath '
                   "(libcni refuses paths: invalid plugin name)")
    caps = plugin.get("capabilities")
    if caps is not None:
        if not isinstance(caps, dict) or not all(isinstance(v, bool) for v in caps.values()):
            out.append('"capabilities" must map capability names to true or false, e.g. {"portMappings": true}')
    ipam = plugin.get("ipam")
    if ipam is not None and not isinstance(ipam, dict):
        out.append(f'"ipam" must be an object such as {{"type": "host-local", ...}}, not {_kind(ipam)}')
    elif isinstance(ipam, dict) and ipam and not isinstance(ipam.get("type"), str):
        out.append('"ipam" has no "type": name the IPAM plugin, e.g. "type": "host-local"')
    return out


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def capabilities(plugin: dict[str, Any]) -> tuple[str, ...]:
    """The capabilities a plugin declares (true), in the order given."""
    return tuple(k for k, v in (plugin.get("capabilities") or {}).items() if v is True)
