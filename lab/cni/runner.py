"""A cni lab's pods attached and detached by the real plugins, as kubelets and containerd do it.

- prepare: each node's own /run and /var/lib (lab.engine.node_mountns) and its rendered conflist, the
  file containerd would write to /etc/cni/net.d.
- add: the pods' ADDs, the nodes in parallel (each node's kubelet works on its own) and one pod
  after another on a node (so host-local hands out addresses in the pods' order, as podlab's plan
  predicts). An ADD that fails is followed by a DEL (containerd tears a sandbox's network down when
  its setup failed), and the pod stays ContainerCreating with the error kubelet reports; the lab
  goes on.
- delete: DEL of the pods that go (before their namespaces are removed), best effort; with no
  namespace left, CNI_NETNS is empty and the plugins release what they hold.
- teardown: DEL for every attachment the journal and the caches know, then the mounts, for
  `down` and `clean`: from the lab's state alone, after a crash too.

Each ADD is journalled (pod, node, sandbox ID, network) before it starts. What each pod got is in
$LAB/cni/pods.json (lab.cni.status).
"""
from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import faults
from lab.cni import cache, gojson, paths, status
from lab.cni.conflist import Conflist, parse
from lab.cni.log import Log
from lab.cni.request import RuntimeConf
from lab.cni.runtime import Failure, Runtime
from lab.engine import netns, node_mountns
from lab.engine.journal import Journal
from lab.netlink.writer import link_index, links_running
from lab.ops import CniAdd, CniNode

Say = Callable[[str], None]
CONFLIST = "conflist.json"        # the node's rendered list, in its directory
SETTINGS = "runtime.json"         # and where its plugins are, how long each may take
MAX_NODE_WORKERS = 16
# kubelet retries a pod whose sandbox failed (RunPodSandbox again, after a back-off of seconds to
# minutes); podlab tries twice, the second right after the first's DEL, then leaves the pod
# ContainerCreating. Some failures pass on a retry: the bridge plugin 1.1.1 told isGateway for a
# cni0 that lost its last port fails once (it sets the MAC it read before a port was added, all
# zeros: "could not set bridge's mac: invalid argument") and succeeds the next time.
SANDBOX_ATTEMPTS = 2


def _quiet(_: str) -> None:
    pass


@dataclass
class Node:
    op: CniNode
    conf: Conflist
    runtime: Runtime


def capability_args(text: str) -> dict[str, Any]:
    """A CniAdd's capability arguments with go-cni's structs in their field order again."""
    raw = json.loads(text)
    if isinstance(raw.get("portMappings"), list):
        raw["portMappings"] = [gojson.Struct(p) for p in raw["portMappings"]]
    if isinstance(raw.get("bandwidth"), dict):
        raw["bandwidth"] = gojson.Struct(raw["bandwidth"])
    return raw


def runtime_conf(op: CniAdd, cni_path: tuple[str, ...], caps: dict[str, Any] | None = None) -> RuntimeConf:
    path = netns.netns_path(op.ns)
    return RuntimeConf(op.container_id, path if os.path.exists(path) else "", op.ifname, op.args,
                       caps if caps is not None else capability_args(op.capability_args), cni_path)


def prepare(lab: str, ops: Iterable[CniNode]) -> None:
    """Each node's directories, rendered conflist and mount namespace (those not made yet)."""
    ops = list(ops)
    journal = Journal(lab)
    todo: dict[str, Path] = {}
    for op in ops:
        root = paths.node_dir(lab, op.node)
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        (root / CONFLIST).write_text(op.config)
        (root / SETTINGS).write_text(json.dumps({"ns": op.ns, "cniPath": list(op.cni_path), "timeout": op.timeout}))
        if op.flannel_env:     # the node's /run/flannel/subnet.env, where the flannel plugin reads it
            (root / "run" / "flannel").mkdir(mode=0o755, parents=True, exist_ok=True)
            (root / "run" / "flannel" / "subnet.env").write_text(op.flannel_env)
        if not paths.mntns_file(lab, op.node).exists():
            todo[op.node] = root
    if todo:
        keep = sorted({d for op in ops for d in op.cni_path if paths.is_private(d)})
        journal.record("cni-nodes", nodes=sorted(todo))
        node_mountns.create(journal, paths.mnt_dir(lab), todo, keep)


def _node(lab: str, op: CniNode, log: Log, pod_of: dict[str, str]) -> Node:
    conf = parse(op.config)

    def record(inv) -> None:
        pod = pod_of.get(inv.env.get("CNI_CONTAINERID", ""), "")
        log.append(inv, pod, op.node)

    runtime = Runtime(conf, op.cni_path, paths.cache_dir(lab, op.node), netns.netns_path(op.ns),
                      str(paths.mntns_file(lab, op.node)), record, op.timeout)
    return Node(op, conf, runtime)


def add(lab: str, nodes: Iterable[CniNode], adds: Iterable[CniAdd], say: Say = _quiet) -> dict[str, dict[str, Any]]:
    """ADD each pod; returns (and records) each pod's status."""
    nodes = {op.node: op for op in nodes}
    adds = list(adds)
    if not adds:
        return {}
    journal = Journal(lab)
    log = Log(lab)
    pod_of = {op.container_id: op.pod for op in adds}
    runtimes = {name: _node(lab, op, log, pod_of) for name, op in nodes.items()}
    by_node: dict[str, list[CniAdd]] = {}
    for op in adds:
        by_node.setdefault(op.node, []).append(op)
    journal.record_many("cni-add", [{"pod": op.pod, "node": op.node, "netns": op.ns, "containerId": op.container_id,
                                     "network": runtimes[op.node].conf.name, "ifname": op.ifname} for op in adds])

    def work(node: str) -> list[tuple[CniAdd, dict[str, Any]]]:
        n = runtimes[node]
        out = []
        for op in by_node[node]:
            rt = runtime_conf(op, n.op.cni_path)
            started = time.monotonic()
            for _ in range(SANDBOX_ATTEMPTS):
                result, failure = n.runtime.add(rt)
                if failure is None:
                    break
                cleanup = n.runtime.delete(rt)    # containerd: teardown after a failed setup
            if failure is not None:
                out.append((op, status.failed(op, n.conf.name, failure, cleanup)))
            else:
                out.append((op, status.attached(op, n.conf.name, result, time.monotonic() - started)))
        return out

    with ThreadPoolExecutor(max_workers=min(MAX_NODE_WORKERS, len(by_node)), thread_name_prefix="podlab-cni") as pool:
        done = [item for chunk in pool.map(work, sorted(by_node)) for item in chunk]
    cleaned = [op for op, s in done if s["state"] != "ok" and "cleanup" not in s]
    if cleaned:   # their failed ADD was undone by a DEL: nothing of theirs is left to detach
        journal.record_many("cni-del", [{"pod": op.pod, "node": op.node, "containerId": op.container_id, "ok": True}
                                        for op in cleaned])
    pods = {op.pod: s for op, s in done}
    status.update(lab, pods)
    faults.point("cni add")
    _wait_running(pods)
    failed = [p for p, s in pods.items() if s["state"] != "ok"]
    if failed:
        first = pods[failed[0]]["failure"]
        say(f"  CNI ADD failed for {len(failed)} of {len(pods)} pods (they stay ContainerCreating); "
            f"{failed[0]}: {first.get('message')}")
    return pods


def _wait_running(pods: dict[str, dict[str, Any]], timeout: float = 10.0) -> None:
    """Until each node's last attached pod's eth0 is running: the kernel starts veths' queues in the
    order their carriers came on, so once the last one runs, every earlier one does (cf.
    lab.engine.apply._wait_running); before that a packet sent into one is dropped."""
    last: dict[str, dict[str, Any]] = {}
    for s in pods.values():
        if s["state"] == "ok":
            last[s["node"]] = s
    deadline = time.monotonic() + timeout
    for s in last.values():
        try:
            sock = netns.socket_in(s["netns"], socket.AF_NETLINK, socket.SOCK_RAW, 0)
        except OSError:
            continue
        try:
            sock.bind((0, 0))
            index = link_index(sock, s.get("ifname", "eth0"))
            while index is not None and not links_running(sock, [index]) and time.monotonic() < deadline:
                time.sleep(0.005)
        finally:
            sock.close()


def delete(lab: str, pod_netns: Iterable[str], say: Say = _quiet) -> list[str]:
    """DEL the attachments of the pods whose namespaces these are (before those go). Best effort:
    a failed DEL is logged and said; the pod goes anyway. Nothing to do (and no journal read) in a
    lab without plugins."""
    if not paths.root(lab).exists():
        return []
    wanted = set(pod_netns)
    records = [r for r in attachments(lab) if r["netns"] in wanted]
    return _delete(lab, records, say)


def attachments(lab: str) -> list[dict[str, Any]]:
    """What the journal says was attached (ADD started) and not yet detached, latest per sandbox."""
    journal = Journal(lab)
    current: dict[tuple[str, str], dict[str, Any]] = {}
    for e in journal.entries():
        kind = e.get("kind")
        key = (str(e.get("node")), str(e.get("containerId")))
        if kind == "cni-add":
            current[key] = e
        elif kind == "cni-del":
            current.pop(key, None)
    return list(current.values())


def _delete(lab: str, records: list[dict[str, Any]], say: Say) -> list[str]:
    if not records:
        return []
    journal = Journal(lab)
    log = Log(lab)
    pod_of = {r["containerId"]: r["pod"] for r in records}
    by_node: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_node.setdefault(r["node"], []).append(r)
    problems: list[str] = []

    def work(node: str) -> list[str]:
        op = node_op(lab, node)
        if op is None:
            return []
        n = _node(lab, op, log, pod_of)
        gone = []
        for r in by_node[node]:
            cached = cache.read(paths.cache_dir(lab, node), r["network"], r["containerId"], r["ifname"])
            conf = n
            if cached is not None and cached.config != op.config:     # attached under an older list
                conf = _node(lab, CniNode(op.ns, node, cached.config, op.cni_path, op.timeout), log, pod_of)
            fake = CniAdd(r["netns"], node, op.ns, r["pod"], r["containerId"], r["ifname"],
                          tuple(cached.cni_args) if cached else (), "{}")
            rt = runtime_conf(fake, op.cni_path, dict(cached.capability_args) if cached else {})
            failure = conf.runtime.delete(rt)
            journal.record("cni-del", pod=r["pod"], node=node, containerId=r["containerId"],
                           ok=failure is None)
            if failure is not None:
                problems.append(f"{r['pod']}: {failure.message}")
            gone.append(r["pod"])
        return gone

    with ThreadPoolExecutor(max_workers=min(MAX_NODE_WORKERS, len(by_node)), thread_name_prefix="podlab-cni") as pool:
        gone = [p for chunk in pool.map(work, sorted(by_node)) for p in chunk]
    status.forget(lab, gone)
    if problems:
        say(f"  CNI DEL failed for {len(problems)} pods (best effort, as the spec asks): {problems[0]}")
    return gone


def node_op(lab: str, node: str) -> CniNode | None:
    """A node's runtime as prepare left it (its rendered list and the settings recorded beside it)."""
    root = paths.node_dir(lab, node)
    try:
        config = (root / CONFLIST).read_text()
        settings = json.loads((root / SETTINGS).read_text())
    except (OSError, ValueError):
        return None
    return CniNode(settings["ns"], node, config, tuple(settings["cniPath"]), float(settings["timeout"]))


def check(lab: str, pods: Iterable[str] | None = None) -> list[tuple[str, Failure | None]]:
    """CHECK each attached pod (all of them by default): libcni's CheckNetworkList."""
    records = attachments(lab)
    if pods is not None:
        wanted = set(pods)
        records = [r for r in records if r["pod"] in wanted]
    log = Log(lab)
    pod_of = {r["containerId"]: r["pod"] for r in records}
    out: list[tuple[str, Failure | None]] = []
    for r in records:
        op = node_op(lab, r["node"])
        if op is None:
            continue
        n = _node(lab, op, log, pod_of)
        cached = cache.read(paths.cache_dir(lab, r["node"]), r["network"], r["containerId"], r["ifname"])
        if cached is None:
            msg = "no cached result: the pod's ADD did not succeed, so there is nothing to check"
            out.append((r["pod"], Failure(999, msg, msg)))
            continue
        fake = CniAdd(r["netns"], r["node"], op.ns, r["pod"], r["containerId"], r["ifname"], tuple(cached.cni_args), "{}")
        out.append((r["pod"], n.runtime.check(runtime_conf(fake, op.cni_path, dict(cached.capability_args)))))
    return out


def teardown(lab: str, say: Say = _quiet) -> None:
    """DEL everything still attached, then unmount the nodes' namespaces: `down` and `clean`."""
    if not paths.root(lab).exists():
        return
    gone = _delete(lab, attachments(lab), say)
    left = [node.name for node in (paths.root(lab) / "nodes").glob("*")
            if any(cache.entries(paths.cache_dir(lab, node.name)))] if (paths.root(lab) / "nodes").exists() else []
    if gone:
        say(f"  CNI DEL for {len(gone)} pods" + (f"; cached results left on {', '.join(left)}" if left else ""))
    node_mountns.remove(Journal(lab), paths.mnt_dir(lab))
