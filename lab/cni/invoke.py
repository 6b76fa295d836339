"""One plugin run, as libcni's RawExec runs it (pkg/invoke/raw_exec.go), inside a node.

The plugin runs in the node's network namespace (the node is its host: CNI's "runtime's
networking domain") and the node's own mount namespace (its /run and /var/lib, lab.cni.paths),
with the environment and stdin lab.cni.request made. Its output is read as libcni reads it: a
non-zero exit is an error whose JSON (code, msg, details) is on stdout, or failing that its
stderr; an ADD that exits 0 must print a result. A plugin that outlives its timeout is killed
with its process group (it is our child, and the leader of a session of its own). Every run is
returned whole, for the log.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

ERR_INTERNAL = 999          # libcni's code for what the runtime, not the plugin, found wrong
ERR_TIMEOUT = 999


@dataclass
class Invocation:
    command: str
    plugin: str                       # its type
    path: str
    env: dict[str, str]
    stdin: str
    started: float
    stdout: str = ""
    stderr: str = ""
    exit: int | None = None           # None: killed at the timeout
    seconds: float = 0.0
    error: dict[str, Any] | None = None   # {code, msg, details}: what libcni makes of a failure
    result: Any = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None


def argv(plugin_path: str, node_netns: str, mntns: str | None) -> list[str]:
    prefix = ["nsenter", "--no-fork", f"--net={node_netns}"] + ([f"--mount={mntns}"] if mntns else [])
    return prefix + ["--", plugin_path]


def run(kind: str, plugin_path: str, env: dict[str, str], stdin: str, node_netns: str, mntns: str | None,
        timeout: float, wants_result: bool) -> Invocation:
    inv = Invocation(env["CNI_COMMAND"], kind, plugin_path, env, stdin, time.time())
    started = time.monotonic()
    try:
        proc = subprocess.Popen(argv(plugin_path, node_netns, mntns), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, cwd="/", start_new_session=True, text=True)
    except OSError as e:
        inv.seconds = time.monotonic() - started
        inv.error = {"code": ERR_INTERNAL, "msg": f"cannot run {plugin_path}: {e.strerror or e}"}
        return inv
    try:
        inv.stdout, inv.stderr = proc.communicate(stdin, timeout=timeout)
        inv.exit = proc.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)   # the plugin and what it started (host-local, iptables)
        except ProcessLookupError:
            pass
        inv.stdout, inv.stderr = proc.communicate()
        inv.exit = None
    inv.seconds = time.monotonic() - started
    if inv.exit is None:
        inv.error = {"code": ERR_TIMEOUT, "msg": f"plugin {kind} did not finish {inv.command} within {timeout:g} s "
                                                 "and was killed"}
    elif inv.exit != 0:
        inv.error = plugin_error(inv.exit, inv.stdout, inv.stderr)
    elif wants_result:
        inv.result, problem = decode_result(inv.stdout)
        if problem:
            inv.error = {"code": ERR_INTERNAL, "msg": f"plugin {kind} exited 0 {problem}"}
    return inv


def plugin_error(status: int, stdout: str, stderr: str) -> dict[str, Any]:
    """libcni's pluginErr: the error JSON on stdout, else stderr, else the exit status."""
    if not stdout.strip():
        if not stderr.strip():
            return {"code": ERR_INTERNAL, "msg": f"netplugin failed with no error message: exit status {status}"}
        return {"code": ERR_INTERNAL, "msg": f"netplugin failed: {stderr.strip()!r}"}
    try:
        raw = json.loads(stdout)
        if not isinstance(raw, dict):
            raise ValueError("not an object")
    except ValueError as e:
        return {"code": ERR_INTERNAL, "msg": f"netplugin failed but error parsing its diagnostic message "
                                             f"{stdout.strip()[:300]!r}: {e}"}
    out: dict[str, Any] = {"code": raw.get("code", 0), "msg": str(raw.get("msg", ""))}
    if raw.get("details"):
        out["details"] = str(raw["details"])
    return out


def decode_result(stdout: str) -> tuple[Any, str | None]:
    if not stdout.strip():
        return None, "without a result (nothing on stdout): an ADD must print its result as JSON"
    try:
        result = json.loads(stdout)
    except json.JSONDecodeError as e:
        return None, f"and printed invalid JSON ({e.msg} at line {e.lineno}, column {e.colno}): {stdout.strip()[:200]!r}"
    if not isinstance(result, dict):
        return None, f"and printed {type(result).__name__} JSON, not a result object: {stdout.strip()[:200]!r}"
    return result, None
