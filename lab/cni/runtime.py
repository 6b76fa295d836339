"""libcni's semantics over lab.cni.invoke (libcni/api.go @v1.1.2: AddNetworkList, DelNetworkList,
CheckNetworkList):

- ADD runs the plugins in order, each given the previous one's result as prevResult (the first
  none); the last result is the attachment's, cached (lab.cni.cache) once every plugin succeeded.
  The first failure ends it: `plugin type="bridge" name="cbr0" failed (add): <msg>`.
- DEL runs them in reverse, each given the cached result (for lists of spec 0.4.0 or later), and
  removes the cache entry once all succeeded.
- CHECK (spec 0.4.0 or later, unless the list says disableCheck) runs them in order with the cached
  result; a list of an older spec is refused as libcni refuses it.

The caller decides what follows a failure (containerd runs DEL after a failed ADD). Every run is
handed to `log`.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.cni import cache, plugins
from lab.cni.conflist import Conflist
from lab.cni.invoke import ERR_INTERNAL, Invocation, run
from lab.cni.request import RuntimeConf, plugin_stdin

CONTAINER_ID = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Failure:
    """What kubelet's FailedCreatePodSandBox event carries: libcni's message, and the plugin's code."""
    code: int
    msg: str              # the plugin's own msg
    message: str          # libcni's: plugin type="bridge" name="cbr0" failed (add): <msg>
    plugin: str | None = None
    details: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in (("code", self.code), ("msg", self.msg), ("message", self.message),
                                  ("plugin", self.plugin), ("details", self.details)) if v is not None}

    @staticmethod
    def from_json(raw: dict[str, Any]) -> "Failure":
        return Failure(int(raw.get("code", ERR_INTERNAL)), str(raw.get("msg", "")), str(raw.get("message", "")),
                       raw.get("plugin"), raw.get("details"))


def _version(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in (v or "0.1.0").split("."))
    except ValueError:
        return (0,)


def at_least(version: str, floor: str) -> bool:
    return _version(version) >= _version(floor)


def _description(conf: Conflist, plugin: dict[str, Any]) -> str:
    return f'type="{plugin.get("type")}" name="{conf.name}"'


def interface_problem(ifname: str) -> str | None:
    """libcni's ValidateInterfaceName."""
    if not ifname or len(ifname) > 15 or ifname in (".", "..") or any(c in ifname for c in "/: \t\n"):
        return f"interface name {ifname!r} is not valid (1-15 characters, not '.' or '..', no '/', ':' or space)"
    return None


class Runtime:
    """A node's runtime for one network list: where its plugins run and where it caches."""

    def __init__(self, conf: Conflist, cni_path: tuple[str, ...], cache_dir: Path, node_netns: str,
                 mntns: str | None, log: Callable[[Invocation], None], timeout: float = DEFAULT_TIMEOUT):
        self.conf, self.cni_path, self.cache_dir = conf, cni_path, cache_dir
        self.node_netns, self.mntns, self.log, self.timeout = node_netns, mntns, log, timeout

    def _exec(self, command: str, plugin: dict[str, Any], prev: Any, rt: RuntimeConf) -> tuple[Invocation | None, Failure | None]:
        found = plugins.find(plugin["type"], self.cni_path)
        what = {"ADD": "add", "DEL": "delete", "CHECK": "check"}[command]
        if found.problem or found.path is None:
            msg = found.problem or f"plugin {plugin['type']} not found"
            return None, Failure(ERR_INTERNAL, msg, f"plugin {_description(self.conf, plugin)} failed ({what}): {msg}",
                                 plugin["type"])
        inv = run(plugin["type"], found.path, rt.env(command), plugin_stdin(self.conf, plugin, prev, rt),
                  self.node_netns, self.mntns, self.timeout, wants_result=command == "ADD")
        self.log(inv)
        if inv.error is None:
            return inv, None
        e = inv.error
        return inv, Failure(int(e.get("code") or 0), e.get("msg", ""),
                            f"plugin {_description(self.conf, plugin)} failed ({what}): {e.get('msg', '')}",
                            plugin["type"], e.get("details"))

    def _validate(self, rt: RuntimeConf) -> Failure | None:
        if not CONTAINER_ID.fullmatch(rt.container_id):
            msg = f"invalid characters in containerID {rt.container_id!r}"
        elif (problem := interface_problem(rt.ifname)):
            msg = problem
        else:
            return None
        return Failure(ERR_INTERNAL, msg, msg)

    def add(self, rt: RuntimeConf) -> tuple[Any, Failure | None]:
        """The chain's result, or the failure that ended it."""
        if (bad := self._validate(rt)):
            return None, bad
        result = None
        for plugin in self.conf.plugins:
            inv, failure = self._exec("ADD", plugin, result, rt)
            if failure:
                return None, failure
            assert inv is not None
            result = inv.result
            if isinstance(result, dict) and "cniVersion" not in result:
                result["cniVersion"] = self.conf.cni_version   # libcni's fixupResultVersion
        cache.write(self.cache_dir, self.conf.name, rt.container_id, rt.ifname, self.conf.text, rt.args,
                    rt.capability_args, result)
        return result, None

    def cached(self, rt: RuntimeConf) -> Any:
        entry = cache.read(self.cache_dir, self.conf.name, rt.container_id, rt.ifname)
        return entry.result if entry else None

    def delete(self, rt: RuntimeConf) -> Failure | None:
        prev = self.cached(rt) if at_least(self.conf.cni_version, "0.4.0") else None
        for plugin in reversed(self.conf.plugins):
            _, failure = self._exec("DEL", plugin, prev, rt)
            if failure:
                return failure
        cache.delete(self.cache_dir, self.conf.name, rt.container_id, rt.ifname)
        return None

    def check(self, rt: RuntimeConf) -> Failure | None:
        if not at_least(self.conf.cni_version, "0.4.0"):
            msg = f'configuration version "{self.conf.cni_version}" does not support the CHECK command'
            return Failure(ERR_INTERNAL, msg, msg)
        if self.conf.disable_check:
            return None
        prev = self.cached(rt)
        for plugin in self.conf.plugins:
            _, failure = self._exec("CHECK", plugin, prev, rt)
            if failure:
                return failure
        return None
