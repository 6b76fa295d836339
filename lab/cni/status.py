"""What each pod of a cni lab got from its plugins: $LAB/cni/pods.json, pod -> its attachment.

  state ok:     the result, and what podlab reads from it (the pod's address and prefix, the
                host end of its veth), which stand in for the plan's predictions (host-local, not
                podlab, chose them)
  state failed: the failure as kubelet's FailedCreatePodSandBox event shows it; the pod is
                ContainerCreating
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from ipaddress import IPv4Interface
from typing import Any

from lab.cni import paths
from lab.cni.runtime import Failure
from lab.ops import CniAdd


def attached(op: CniAdd, network: str, result: Any, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {"state": "ok", "node": op.node, "netns": op.ns, "containerId": op.container_id,
                           "network": network, "ifname": op.ifname, "seconds": round(seconds, 4), "result": result}
    ip, veth = address_of(result, op.ifname)
    if ip is not None:
        out["ip"] = str(ip)
    if veth is not None:
        out["veth"] = veth
    return out


def failed(op: CniAdd, network: str, failure: Failure, cleanup: Failure | None) -> dict[str, Any]:
    out = {"state": "failed", "node": op.node, "netns": op.ns, "containerId": op.container_id, "network": network,
           "ifname": op.ifname, "failure": failure.to_json()}
    if cleanup is not None:
        out["cleanup"] = cleanup.to_json()
    return out


def address_of(result: Any, ifname: str) -> tuple[IPv4Interface | None, str | None]:
    """The pod's first IPv4 address on `ifname`, and the host end of its veth (the last interface of
    the result outside the pod: bridge reports [cni0, vethX, eth0], ptp [vethX, eth0])."""
    if not isinstance(result, dict):
        return None, None
    interfaces = result.get("interfaces") or []
    veth = next((i.get("name") for i in reversed(interfaces) if isinstance(i, dict) and not i.get("sandbox")), None)
    for ip in result.get("ips") or []:
        if not isinstance(ip, dict):
            continue
        index = ip.get("interface")
        if index is not None and (not 0 <= index < len(interfaces) or interfaces[index].get("name") != ifname):
            continue
        try:
            address = IPv4Interface(ip.get("address", ""))
        except ValueError:
            continue
        return address, veth
    return None, veth


def read(lab: str) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(paths.pods_file(lab).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write(lab: str, pods: dict[str, dict[str, Any]]) -> None:
    target = paths.pods_file(lab)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = target.with_name(".pods.json.tmp")
    tmp.write_text(json.dumps(pods, separators=(",", ":")))
    os.replace(tmp, target)


def update(lab: str, pods: dict[str, dict[str, Any]]) -> None:
    _write(lab, {**read(lab), **pods})


def forget(lab: str, pods: list[str]) -> None:
    if pods:
        current = read(lab)
        _write(lab, {k: v for k, v in current.items() if k not in set(pods)})


def observed(plan_addresses: Any, lab: str) -> Any:
    """The address plan with each attached pod's address and host veth as the plugins made them."""
    pods = read(lab)
    if not pods:
        return plan_addresses
    changed = []
    for p in plan_addresses.pods:
        s = pods.get(p.name)
        if s is None or s.get("state") != "ok" or s.get("netns") != p.netns:
            changed.append(p)
            continue
        try:
            ip = IPv4Interface(s["ip"]) if "ip" in s else None
        except ValueError:
            ip = None
        changed.append(replace(p, ip=ip.ip if ip else p.ip, prefixlen=ip.network.prefixlen if ip else p.prefixlen,
                               veth=s.get("veth") or p.veth))
    return replace(plan_addresses, pods=tuple(changed))


def event(s: dict[str, Any]) -> str:
    """A failed pod as kubelet's FailedCreatePodSandBox event words it (containerd's error), with the code."""
    f = s.get("failure") or {}
    return (f'Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for sandbox '
            f'"{s.get("containerId", "")}": {f.get("message") or f.get("msg", "")} (CNI error code {f.get("code")})')


def sandbox_state(pods: dict[str, dict[str, Any]], pod: str) -> tuple[str, str | None]:
    """("ready", None), or ("ContainerCreating", the event) for a pod whose network is not set up."""
    s = pods.get(pod)
    if s is None:
        return "ContainerCreating", "the pod's CNI ADD has not run (yet)"
    if s.get("state") != "ok":
        return "ContainerCreating", event(s)
    return "ready", None
