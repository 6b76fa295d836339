"""Text for people: tables, the address plan, kubectl-like rows, a namespace's kernel state."""
from __future__ import annotations

import time
from typing import Any

from lab import designs
from lab.addressing import AddressPlan, PodAddr
from lab.model import Topology
from lab.ops import AgentReady, AnswersDns, BgpEstablished, StartDaemon, WriteFile
from lab.planner import Plan


def table(columns: list[str], rows: list[list[Any]]) -> str:
    cells = [columns] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def age(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def plan_text(plan: Plan) -> str:
    t, a = plan.topology, plan.addresses
    design = designs.of(t)
    lines = [f"lab {t.name}: {design.describe()}" + (f" — {t.description}" if t.description else ""),
             f"  attachment {design.attachment.name} — {design.attachment.mirrors}: {design.attachment.summary}",
             *_cni_lines(t),
             f"  backend {design.backend.name} — {design.backend.mirrors}: {design.backend.summary}",
             *_address_lines(t, a, design)]
    if a.static_neighbours:
        lines.append("neighbours: written as permanent entries (a lab this large would overflow the kernel's "
                     "shared ARP table)" + ("" if a.static_pod_pairs else
                                            "; pods of one node are too many to pair, so they ARP for each other"))
    lines.append("")
    node_rows = [[n.name, n.ip, ", ".join(map(str, n.blocks)), n.gateway, len([p for p in a.pods if p.node == n.name]),
                  n.netns] for n in a.nodes]
    blocks = "BLOCKS (CALICO IPAM)" if design.attachment.ipam == "calico" else "POD-CIDR"
    lines.append(table(["NODE", "IP", blocks, "GATEWAY", "PODS", "NETNS"], node_rows))
    lines.append("")
    shown = a.pods[:50]
    lines.append(table(["POD", "NODE", "IP", "HOST-VETH", "NETNS"],
                       [[p.name, p.node, f"{p.ip}/{p.prefixlen}" + (" (hostNetwork)" if p.host_network else ""),
                         p.veth or "-", p.netns] for p in shown]))
    if len(a.pods) > len(shown):
        lines.append(f"... and {len(a.pods) - len(shown)} more pods")
    if a.outside:
        lines += ["", table(["OUTSIDE HOST", "IP", "NETNS"], [[h.name, h.ip, h.netns] for h in a.outside])]
    if design.backend.router:
        lines += ["", f"VPC router {a.router_ip} in {a.underlay_netns}: one route per node pod CIDR"]
    elif t.cluster_services:
        lines += ["", f"nodes: default via {a.router_ip}, which no one holds in this design: kube-proxy needs "
                      "some route to DNAT a ClusterIP; a real node's gateway leads out, a lab's leads nowhere "
                      "(docs/designs.md)"]
    counts: dict[str, int] = {}
    kernel = [op for op in plan.ops if not isinstance(op, (WriteFile, StartDaemon))]
    for op in kernel:
        counts[type(op).__name__] = counts.get(type(op).__name__, 0) + 1
    files = sum(isinstance(op, WriteFile) for op in plan.ops)
    lines += ["", f"{len(kernel)} kernel operations: " + ", ".join(f"{v} {k}" for k, v in counts.items())]
    for d in (op for op in plan.ops if isinstance(op, StartDaemon)):
        where = (f"as container {d.container}" if d.container else f"in {d.ns}" if d.ns
                 else "in podlab's own namespaces")
        lines.append(f"daemon {d.name} {where}, {_readiness(d)}")
    lines += [f"{files} files written into the lab's state directory first",
              "(podlab plan --as-commands prints it all as ip/bridge/sysctl/nft commands, files and command lines)"]
    return "\n".join(lines)


def _cni_lines(t: Topology) -> list[str]:
    """A cni lab's network list, as the plan shows it (no root: the binaries are looked for by `up`)."""
    if t.cni is None:
        return []
    from lab.cni import conflist, template
    where = "inline" if t.cni.source == "inline" else t.cni.source
    templated = ", a template rendered per node (containerd's {{.PodCIDR}}, {{.PodCIDRRanges}}, {{.Routes}})" \
        if template.has_actions(t.cni.conflist) else ""
    try:
        text = t.cni.conflist if not templated else template.render(
            t.cni.conflist, template.Values.for_node([str(next(t.pod_cidr.subnets(new_prefix=t.node_mask)))]))
        described = conflist.parse(text).describe()
    except Exception as e:   # the loader checked it; say what went wrong rather than fail the plan
        described = f"(unreadable: {e})"
    return [f"  conflist {where}{templated}: {described}; plugins from {':'.join(t.cni.cni_path)}, "
            f"each killed after {t.cni.timeout:g} s"]


def _readiness(d: StartDaemon) -> str:
    if isinstance(d.ready, AnswersDns):
        return f"ready once it answers {d.ready.name} at {d.ready.server}"
    if isinstance(d.ready, BgpEstablished):
        return f"ready once its {d.ready.sessions} BGP sessions are Established and {len(d.ready.routes)} blocks learned"
    if isinstance(d.ready, AgentReady):
        return "ready once every pod's sockets listen"
    return "ready once started"


def _address_lines(t: Topology, a: AddressPlan, design: designs.Design) -> list[str]:
    ranges = f"node subnet {t.node_subnet}; service CIDR {t.service_cidr}; MTU {t.mtu} (pods {a.pod_mtu})"
    if design.attachment.ipam != "calico":
        return [f"pod CIDR {t.pod_cidr}, /{t.node_mask} per node; {ranges}", f"capacity: {a.capacity}"]
    per_block = 2 ** (32 - t.node_mask)
    taken = sum(len(n.blocks) for n in a.nodes)
    return [f"IP pool {t.pod_cidr} (Calico IPAM), blocks of /{t.node_mask}; {ranges}",
            f"capacity: {t.pod_cidr.num_addresses} addresses / {per_block} per block = {a.capacity.max_nodes} blocks; "
            f"a node takes a block, and another when its blocks are full ({taken} taken)"]


def _restarts(pod_status: dict[str, Any] | None, key: str = "containers") -> int:
    try:
        return sum(int(c.get("restarts", 0)) for c in (pod_status or {}).get(key, {}).values())
    except (AttributeError, TypeError, ValueError):
        return 0


def _initializing(pod_status: dict[str, Any], init: list[str]) -> str | None:
    """kubectl's STATUS while a pod's init containers have not all completed (its printer's rules:
    the first init container that has not exited 0 decides), or None once they have."""
    states = pod_status.get("initContainers", {})
    for i, name in enumerate(init):
        c = states.get(name) or {}
        if not isinstance(c, dict):
            c = {}
        reason = c.get("reason") or ""
        if c.get("state") == "Terminated" and c.get("exitCode") == 0:
            continue
        if c.get("state") == "Terminated":
            return f"Init:{reason}" if reason else f"Init:ExitCode:{c.get('exitCode')}"
        if c.get("state") == "Waiting" and reason and reason != "PodInitializing":
            return f"Init:{reason}"
        return f"Init:{i}/{len(init)}"
    return None


def _pod_state(pod_status: dict[str, Any] | None, containers: int, agent_alive: bool,
               init: list[str] | None = None) -> tuple[str, str, int]:
    if not agent_alive or pod_status is None:
        # Nothing serves the pod; the restarts counted so far stay visible, as kubectl keeps them.
        return f"0/{containers}", "Unknown", _restarts(pod_status) + _restarts(pod_status, "initContainers")
    cs = pod_status.get("containers", {})
    running = sum(1 for c in cs.values() if c.get("state") == "Running")
    initializing = _initializing(pod_status, init or [])
    if initializing:
        # While initializing, kubectl counts the init containers' restarts.
        return f"{running}/{containers}", initializing, _restarts(pod_status, "initContainers")
    restarts = _restarts(pod_status)
    waiting = [c.get("reason") for c in cs.values() if c.get("state") == "Waiting" and c.get("reason")]
    if running == containers:
        status = "Running"
    elif any(c.get("state") == "Error" for c in cs.values()):
        status = "Error"
    elif waiting:
        status = waiting[0]      # kubectl: the first container waiting with a reason (PodInitializing, ...)
    else:
        status = "CrashLoopBackOff" if restarts else "ContainerCreating"
    return f"{running}/{containers}", status, restarts


def pod_rows(lab: Any, agent_status: dict[str, Any], agent_alive: bool) -> list[dict[str, Any]]:
    from lab import ages
    now = time.time()
    rows = []
    sandboxes = None
    if lab.design.attachment.runs_plugins:
        from lab.cni import status as cni_status
        sandboxes = cni_status.read(lab.name)
    pending = getattr(lab.addresses, "pending", ())
    # Each pod's age from its own making (lab.ages): its namespace's, or a change's for those without one.
    added = ages.added_by_changes(lab.name, [p.name for p in lab.topology.pods if p.host_network]
                                  + [p.name for p in pending])
    made = ages.namespaces_made(a.netns for a in lab.addresses.pods if not a.host_network)
    for pod, addr in zip(lab.topology.pods, lab.addresses.pods):
        ready, status, restarts = _pod_state(agent_status.get("pods", {}).get(pod.name), len(pod.containers),
                                             agent_alive, [c.name for c in pod.init_containers])
        born = added.get(pod.name) if pod.host_network else made.get(addr.netns)
        row = {"name": pod.name, "ready": ready, "status": status, "restarts": restarts,
               "age": now - (born or lab.created), "ip": str(addr.ip), "node": pod.node, "netns": addr.netns,
               "namespace": pod.namespace, "hostNetwork": pod.host_network,
               "containers": [c.name for c in pod.containers]}
        if sandboxes is not None and not pod.host_network:
            state, message = cni_status.sandbox_state(sandboxes, pod.name)
            if message is not None:   # no network: kubelet never starts its containers
                row.update(ready=f"0/{len(pod.containers)}", status=state, ip="<none>", message=message)
        rows.append(row)
    # Last, after the pods that have an address (callers zip the rows with lab.addresses.pods): the
    # pods waiting for one, as kubectl shows a pod whose sandbox the CNI plugin cannot set up.
    for p in pending:
        rows.append({"name": p.name, "ready": f"0/{p.containers}", "status": "ContainerCreating", "restarts": 0,
                     "age": now - added.get(p.name, lab.created), "ip": "<none>", "node": p.node, "netns": "<none>",
                     "namespace": p.namespace, "hostNetwork": False, "containers": [],
                     "message": p.reason})
    return rows


def replicaset_rows(lab: Any, agent_status: dict[str, Any]) -> list[dict[str, Any]]:
    """kubectl get rs: each ReplicaSet's desired pods, those it has, those Ready (both generations of a
    Deployment that is rolling; an old one kept at 0 after). AGE: its oldest pod's (lab.ages); one
    with no pod left, the lab's (podlab keeps no creation time of its own for a ReplicaSet)."""
    from lab import ages, workloads
    now = time.time()
    ready = workloads.ready_pods(agent_status)
    netns = {p.name: p.netns for p in lab.addresses.pods}
    made = ages.namespaces_made(netns.values())
    have: dict[tuple[str, str | None], list[str]] = {}
    for pod in lab.topology.pods:
        if pod.deployment is not None:
            have.setdefault((pod.deployment, pod.template_hash), []).append(pod.name)
    rows = []
    for rs in lab.topology.replicasets:
        pods = have.get((rs.deployment, rs.template_hash), [])
        born = min((made[netns[p]] for p in pods if netns.get(p) in made), default=lab.created)
        rows.append({"name": rs.name, "namespace": rs.namespace, "desired": rs.replicas, "current": len(pods),
                     "ready": sum(p in ready for p in pods), "age": now - born, "revision": rs.revision,
                     "deployment": rs.deployment, "pods": pods})
    return rows


def deployment_rows(lab: Any, agent_status: dict[str, Any]) -> list[dict[str, Any]]:
    """kubectl get deployments: READY (ready/desired), UP-TO-DATE (pods of the newest template), AVAILABLE."""
    from lab import workloads
    now = time.time()
    ready = workloads.ready_pods(agent_status)
    rows = []
    for d in lab.topology.deployments:
        pods = [p for p in lab.topology.pods if p.deployment == d.name]
        rows.append({"name": d.name, "namespace": d.namespace, "ready": f"{sum(p.name in ready for p in pods)}/"
                     f"{d.replicas}", "upToDate": sum(p.template_hash == d.template_hash for p in pods),
                     "available": sum(p.name in ready for p in pods), "age": now - lab.created,
                     "strategy": d.strategy.type})
    return rows


def node_rows(lab: Any) -> list[dict[str, Any]]:
    from lab import ages
    now = time.time()
    # kubectl prints a cordoned node's status as Ready,SchedulingDisabled (spec.unschedulable).
    cordoned = set(lab.scheduling.cordoned) if getattr(lab, "scheduling", None) else set()
    made = ages.namespaces_made(n.netns for n in lab.addresses.nodes)   # a node without its namespace: NotReady
    return [{"name": n.name, "status": ("Ready" if n.netns in made else "NotReady")
             + (",SchedulingDisabled" if n.name in cordoned else ""), "age": now - made.get(n.netns, lab.created),
             "ip": str(n.ip), "podCIDR": str(n.block), "netns": n.netns} for n in lab.addresses.nodes]


def lab_status(lab: Any, agent_status: dict[str, Any], agent_alive: bool) -> dict[str, Any]:
    pods = pod_rows(lab, agent_status, agent_alive)
    return {"name": lab.name, "design": lab.design.name,
            "nodes": len(lab.addresses.nodes), "pods": len(pods),
            "ready": sum(1 for p in pods if p["status"] == "Running"), "agent": agent_alive,
            "restarts": sum(p["restarts"] for p in pods),
            "agentRestarts": int(agent_status.get("agentRestarts", 0) or 0) if isinstance(agent_status, dict) else 0,
            "age": time.time() - lab.created, "source": lab.meta.get("source")}


def agent_down(lab: str, agent_status: dict[str, Any]) -> str:
    """What to tell when a lab's workload agent is not running."""
    was = f" (it was pid {agent_status['pid']})" if isinstance(agent_status, dict) and agent_status.get("pid") else ""
    return (f"the workload agent of lab {lab} is not running{was}: its pods serve nothing and their containers "
            f"are stopped; 'sudo podlab restart-agent {lab}' starts it again")


def snapshot_text(target: Any, snap: Any) -> str:
    lines = [f"{target.kind} {target.name} — network namespace {snap.netns}", "", "interfaces:"]
    for l in snap.links:
        extra = []
        if l.master:
            extra.append(f"master {l.master}")
        if l.peer_index:
            extra.append(f"peer if{l.peer_index}" + (" in another namespace" if l.peer_netnsid is not None else ""))
        if l.vxlan:
            v = l.vxlan
            extra.append(f"vxlan id {v['id']} local {v['local']} dev {v['dev']} dstport {v['port']}"
                         + ("" if v["learning"] else " nolearning"))
        if l.alias:
            extra.append(f"({l.alias})")
        addrs = " ".join(a.address for a in snap.addresses if a.dev == l.name)
        lines.append(f"  {l.index}: {l.name:<12} {l.kind or '-':<8} {l.state:<20} mtu {l.mtu:<5} {l.mac or ''}")
        if addrs or extra:
            lines.append(f"      {addrs} {' '.join(extra)}".rstrip())
    lines += ["", "routes (main table):"]
    for r in snap.routes_in("main"):
        lines.append("  " + " ".join(x for x in [r.type if r.type != "unicast" else "", r.dst,
                                                 f"via {r.gateway}" if r.gateway else "",
                                                 f"dev {r.dev}" if r.dev else "", "onlink" if r.onlink else "",
                                                 f"scope {r.scope}" if r.scope != "global" else ""] if x))
    if snap.neighbours:
        lines += ["", "neighbours:"]
        lines += [f"  {n.address} dev {n.dev} lladdr {n.mac} {n.state}" for n in snap.neighbours]
    fdb = [f for f in snap.fdb if f.dst or (f.mac and not f.mac.startswith(("33:33", "01:00:5e")))]
    if fdb:
        lines += ["", "forwarding database (bridge fdb):"]
        lines += [f"  {f.mac} dev {f.dev}" + (f" dst {f.dst}" if f.dst else "") + (f" master {f.master}" if f.master else "")
                  + (" self" if f.self else "") + (" permanent" if f.permanent else "") for f in fdb]
    if snap.sysctls:
        lines += ["", "sysctls: " + ", ".join(f"{k}={v}" for k, v in snap.sysctls.items())]
    return "\n".join(lines)


def next_steps(lab: Any, pod: PodAddr, other: PodAddr) -> str:
    flag = f" --lab {lab.name}" if lab.name != "default" else ""
    steps = [
        (f"sudo podlab exec {pod.name}{flag} -- ip addr", "the pod's eth0 and its IP"),
        (f"sudo podlab curl {pod.name} {other.ip}{flag}", "the page names the pod that served it"),
        (f"sudo podlab ping {pod.name} {other.name}{flag}", "ttl shows the routing hops"),
        (f"sudo podlab inspect {pod.node}{flag}", "the node's bridge, routes, neighbours, VXLAN FDB"),
        (f"sudo podlab check{flag}", "the network model again, after you break something"),
        ("podlab plan l3-vpc-router --as-commands", "how another design is built (no root)"),
        (f"sudo podlab down{flag}", "remove everything"),
    ]
    width = max(len(cmd) for cmd, _ in steps) + 3
    return "\n".join(["", "what to try next:"] + [f"  {cmd:<{width}}# {why}" for cmd, why in steps])
