"""`podlab check` for Services: real requests from inside every pod, through kube-proxy's rules.

For every pod (hostNetwork ones use the node's resolver and address, so they are left out) and
every Service port:
  by address   a request to ClusterIP:port answers (nginx: the page names a backend pod; echo:
               /clientip or UDP "clientip" tells the address the backend saw; kube-dns: a DNS
               query; any other TCP port: the handshake completes). A port with no endpoints
               must be rejected at once (connection refused), as kube-proxy's rules do.
  by name      the pod's own resolver settings (its resolv.conf: the DNS Service, the search
               list, ndots) turn the Service's name into its ClusterIP, and a request there answers.
  source       an echo backend saw the pod's own address: nothing NATs pod -> ClusterIP -> pod.
  hairpin      each backend pod reaches its own Service and lands on itself; kube-proxy
               masquerades that (the backend sees its node's bridge address), or the pod would
               drop a packet from itself.
and every outside host reaches every NodePort on every node (masqueraded, as kube-proxy does).
The `kubernetes` Service is listed but not probed: its endpoint is an API server podlab does not run.
"""
from __future__ import annotations

import errno
import socket
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from lab.model import Pod
from lab.services import dnsclient, resolv, schema
from lab.services.endpoints import PortPlan, ServiceAddr, ServicePlan, now

if TYPE_CHECKING:
    from lab.api import Lab

TIMEOUT = 2.0
WORKERS = 16
MAX_RESPONSE = 64 * 1024


@dataclass(frozen=True)
class Result:
    src: str
    src_ip: str
    service: str              # namespace/name
    port: str                 # 10.96.0.2:80/TCP
    via: str                  # address | name | hairpin | nodeport
    kind: str                 # http | clientip | udp | dns | dns-tcp | connect | reject
    ok: bool
    backend: str | None = None        # the pod that answered, when the answer names it
    seen: str | None = None           # the source address the backend saw
    source_ok: bool | None = None     # None: the answer cannot tell
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.ok and self.source_ok is not False


@dataclass(frozen=True)
class _Job:
    src: str
    src_ip: str
    netns: str
    service: ServiceAddr
    pp: PortPlan
    via: str
    kind: str
    host: str                 # the address to send to ("" when a name did not resolve)
    port: int
    expect_source: tuple[str, ...]   # acceptable addresses for the backend to see ("" : anything)
    self_backend: str | None = None  # hairpin: the pod that must answer itself
    resolve_error: str | None = None


# ---------------------------------------------------------------------------------------
# What a backend serves on a port
# ---------------------------------------------------------------------------------------
def serves(pod: Pod, port: int, protocol: str) -> str | None:
    """How to talk to this pod on this port, from its containers' workloads (None: nothing known)."""
    for c in pod.containers:
        w = c.workload
        if protocol == "TCP" and w == "http" and port in (c.ports or (80,)):
            return "http"
        if w == "echo":
            tcp = c.ports[0] if c.ports else 8080
            udp = c.ports[1] if len(c.ports) > 1 else 8081
            if protocol == "TCP" and port == tcp:
                return "clientip"
            if protocol == "UDP" and port == udp:
                return "udp"
        if schema.is_dns_pod(pod) and port == 53:
            return "dns" if protocol == "UDP" else "dns-tcp"
        if protocol == "TCP" and w == "command" and port in c.ports:
            return "connect"
    return None


def kind_of(pp: PortPlan, pods: dict[str, Pod]) -> str | None:
    if not pp.backends:
        return "reject"
    kinds = {serves(pods[b.pod], b.port, pp.port.protocol) if b.pod in pods else None for b in pp.backends}
    if len(kinds) == 1 and None not in kinds:
        return kinds.pop()
    return "connect" if pp.port.protocol == "TCP" else None


# ---------------------------------------------------------------------------------------
# One request
# ---------------------------------------------------------------------------------------
def _socket(netns: str, kind: int) -> socket.socket:
    from lab.engine import netns as nsmod
    sock = nsmod.socket_in(netns, socket.AF_INET, kind)
    sock.settimeout(TIMEOUT)
    return sock


def _http(job: _Job, path: str) -> tuple[str, str]:
    """(status line, body) of GET path."""
    with _socket(job.netns, socket.SOCK_STREAM) as s:
        s.connect((job.host, job.port))
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: {job.host}\r\nUser-Agent: podlab-check\r\n\r\n".encode())
        data = b""
        while len(data) < MAX_RESPONSE and (chunk := s.recv(65536)):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0].decode("latin-1"), body.decode("utf-8", "replace")


def _attempt(job: _Job) -> Result:
    common = dict(src=job.src, src_ip=job.src_ip, service=job.service.key,
                  port=f"{job.service.ip}:{job.pp.port.port}/{job.pp.port.protocol}", via=job.via, kind=job.kind)
    if job.resolve_error:
        return Result(ok=False, error=job.resolve_error, **common)
    try:
        return _request(job, common)
    except socket.timeout:
        return Result(ok=False, error="timeout", **common)
    except OSError as e:
        if job.kind == "reject" and e.errno == errno.ECONNREFUSED:
            return Result(ok=True, **common)
        return Result(ok=False, error=e.strerror or str(e), **common)


def _request(job: _Job, common: dict[str, Any]) -> Result:
    if job.kind == "reject":
        if job.pp.port.protocol == "UDP":
            with _socket(job.netns, socket.SOCK_DGRAM) as s:
                s.connect((job.host, job.port))
                s.send(b"clientip")
                s.recv(1024)   # an ICMP port unreachable makes this raise ECONNREFUSED
        else:
            with _socket(job.netns, socket.SOCK_STREAM) as s:
                s.connect((job.host, job.port))
        return Result(ok=False, error="answered, but the Service has no endpoints: it should be rejected", **common)
    if job.kind == "http":
        status, body = _http(job, "/")
        backend = next((b.pod for b in job.pp.backends if b.pod and f"home page of host {b.pod}!" in body), None)
        if " 200" not in status or backend is None:
            return Result(ok=False, error=f"unexpected answer {status!r}", **common)
        if job.self_backend and backend != job.self_backend:
            return Result(ok=False, backend=backend, error="answered by another pod", **common)
        return Result(ok=True, backend=backend, **common)
    if job.kind in ("clientip", "udp"):
        if job.kind == "clientip":
            status, body = _http(job, "/clientip")
            if " 200" not in status:
                return Result(ok=False, error=f"unexpected answer {status!r}", **common)
        else:
            with _socket(job.netns, socket.SOCK_DGRAM) as s:
                s.connect((job.host, job.port))
                s.send(b"clientip")
                body = s.recv(1024).decode("utf-8", "replace")
        seen = body.strip().rpartition(":")[0] or None
        source_ok = seen in job.expect_source if job.expect_source else None
        return Result(ok=seen is not None, seen=seen, source_ok=source_ok,
                      error=None if source_ok is not False else f"the backend saw {seen}", **common)
    if job.kind == "dns":
        with _socket(job.netns, socket.SOCK_DGRAM) as s:
            answer = dnsclient.ask(s, job.host, job.service.fqdn, timeout=TIMEOUT, port=job.port)
        return Result(ok=answer.ok, error=None if answer.ok else answer.rcode, **common)
    if job.kind == "dns-tcp":
        message = dnsclient.query(job.service.fqdn, "A", 0x2b2b)
        with _socket(job.netns, socket.SOCK_STREAM) as s:
            s.connect((job.host, job.port))
            s.sendall(struct.pack("!H", len(message)) + message)
            data = b""
            while len(data) < 2 or len(data) < 2 + struct.unpack("!H", data[:2])[0]:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        answer = dnsclient.parse(data[2:], 0x2b2b)
        return Result(ok=answer.ok, error=None if answer.ok else answer.rcode, **common)
    with _socket(job.netns, socket.SOCK_STREAM) as s:   # connect: the handshake is the answer
        s.connect((job.host, job.port))
    return Result(ok=True, **common)


# ---------------------------------------------------------------------------------------
# The jobs
# ---------------------------------------------------------------------------------------
def _resolve(lab: Lab, pod: Pod, netns: str, service: ServiceAddr) -> tuple[str, str | None]:
    """The Service's address as this pod's resolver finds it (short name in its own namespace)."""
    from lab.services.cli import _resolv_settings
    name = service.name if service.namespace == pod.namespace else f"{service.name}.{service.namespace}"
    try:
        nameserver, search, ndots = _resolv_settings(lab, pod.name)
        with _socket(netns, socket.SOCK_DGRAM) as s:
            found = dnsclient.lookup(s, nameserver, name, search, ndots, timeout=TIMEOUT)
    except OSError as e:
        return "", f"resolving {name}: {e.strerror or e}"
    if found.error:
        return "", f"resolving {name}: {found.error}"
    values = found.values()
    if not values:
        return "", f"{name} does not resolve ({found.tries[-1].rcode if found.tries else 'no answer'})"
    if str(service.ip) not in values:
        return values[0], f"{name} resolved to {', '.join(values)}, not the ClusterIP {service.ip}"
    return str(service.ip), None


def jobs(lab: Lab, splan: ServicePlan) -> tuple[list[_Job], list[str]]:
    pods = {p.name: p for p in lab.topology.pods}
    addrs = {p.name: p for p in lab.addresses.pods}
    gateway = {n.name: str(n.gateway) for n in lab.addresses.nodes}
    clients = [p for p in lab.topology.pods if resolv.uses_cluster_dns(lab.topology, p)]
    notes: list[str] = []
    out: list[_Job] = []
    names: dict[tuple[str, str], tuple[str, str | None]] = {}
    for svc in splan.services:
        if svc.headless:
            continue
        if (svc.namespace, svc.name) == schema.KUBERNETES:
            notes.append(f"{svc.key} ({svc.ip}) not probed: its endpoint is the API server "
                         f"({', '.join(f'{b.ip}:{b.port}' for p in svc.ports for b in p.backends)}), and podlab runs none")
            continue
        for pp in svc.ports:
            kind = kind_of(pp, pods)
            if kind is None:
                notes.append(f"{svc.key} {pp.port.port}/{pp.port.protocol} not probed: its backends serve nothing "
                             "podlab knows how to ask over UDP")
                continue
            backends = {b.pod for b in pp.backends if b.pod}
            for pod in clients:
                a = addrs[pod.name]
                expect = (str(a.ip),) + ((gateway[pod.node],) if pod.name in backends else ())
                base = dict(src=pod.name, src_ip=str(a.ip), netns=a.netns, service=svc, pp=pp, kind=kind,
                            port=pp.port.port, expect_source=expect if kind in ("clientip", "udp") else ())
                out.append(_Job(via="address", host=str(svc.ip), **base))
                key = (pod.name, svc.key)
                if key not in names:
                    names[key] = _resolve(lab, pod, a.netns, svc)
                host, problem = names[key]
                out.append(_Job(via="name", host=host, resolve_error=problem, **base))
            if kind in ("http", "clientip", "udp"):
                for b in pp.backends:
                    if b.pod is None or pods[b.pod].host_network:
                        continue
                    a = addrs[b.pod]
                    tries = min(60, max(10, 10 * len(pp.backends)))
                    for _ in range(tries):
                        out.append(_Job(src=b.pod, src_ip=str(a.ip), netns=a.netns, service=svc, pp=pp,
                                        via="hairpin", kind=kind, host=str(svc.ip), port=pp.port.port,
                                        expect_source=(gateway[b.node],) if b.node else (), self_backend=b.pod))
    return out, notes


def node_port_jobs(lab: Lab, splan: ServicePlan) -> list[_Job]:
    pods = {p.name: p for p in lab.topology.pods}
    out = []
    for host in lab.addresses.outside:
        for svc in splan.services:
            for pp in svc.ports:
                kind = kind_of(pp, pods) if pp.port.node_port else None
                if kind is None:
                    continue
                for node in lab.addresses.nodes:
                    out.append(_Job(src=host.name, src_ip=str(host.ip), netns=host.netns, service=svc, pp=pp,
                                    via="nodeport", kind=kind, host=str(node.ip), port=pp.port.node_port,
                                    expect_source=()))
    return out


def _hairpin(results: list[Result], jobs_: list[_Job]) -> list[Result]:
    """Collapse each backend's hairpin attempts into one result: passed if one landed on itself."""
    out: list[Result] = []
    groups: dict[tuple[str, str, str], list[tuple[_Job, Result]]] = {}
    for job, r in zip(jobs_, results):
        if job.via != "hairpin":
            out.append(r)
        else:
            groups.setdefault((r.src, r.service, r.port), []).append((job, r))
    for (_src, _svc, _port), pairs in groups.items():
        landed = [r for job, r in pairs if _landed_on_self(job, r)]
        if landed:
            out.append(landed[0])
            continue
        errors = sorted({r.error or "answered by another pod" for _, r in pairs})
        first = pairs[0][1]
        out.append(Result(first.src, first.src_ip, first.service, first.port, "hairpin", first.kind, False,
                          error=f"never reached itself in {len(pairs)} tries ({'; '.join(errors)[:200]})"))
    return out


def _landed_on_self(job: _Job, r: Result) -> bool:
    if not r.ok:
        return False
    if job.kind == "http":
        return r.backend == job.self_backend
    return r.seen in job.expect_source   # masqueraded to the node's bridge: only hairpin traffic is


def run(lab: Lab) -> tuple[list[Result], list[str]]:
    splan = now(lab.topology, lab.addresses, lab.name)     # the ready pods: what kube-proxy sends to
    todo, notes = jobs(lab, splan)
    todo += node_port_jobs(lab, splan)
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = list(pool.map(_attempt, todo))
    return _hairpin(results, todo), notes


# ---------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------
def summary_rows(results: list[Result]) -> list[list[str]]:
    order: dict[tuple[str, str], dict[str, list[Result]]] = {}
    for r in results:
        order.setdefault((r.service, r.port), {}).setdefault(r.via, []).append(r)
    rows = []
    for (service, port), by_via in order.items():
        def cell(via: str) -> str:
            rs = by_via.get(via)
            if not rs:
                return "-"
            good = sum(r.passed for r in rs)
            return f"{'✓' if good == len(rs) else '✗'} {good}/{len(rs)}"
        sourced = [r for rs in by_via.values() for r in rs if r.via in ("address", "name") and r.source_ok is not None]
        kind = next(iter(by_via.values()))[0].kind
        source = f"{'✓' if all(r.source_ok for r in sourced) else '✗'} {sum(bool(r.source_ok) for r in sourced)}" \
                 f"/{len(sourced)}" if sourced else "-"
        rows.append([service, port, "rejected (no endpoints)" if kind == "reject" else kind,
                     cell("address"), cell("name"), source, cell("hairpin"), cell("nodeport")])
    return rows


def report_text(results: list[Result], notes: list[str], seconds: float) -> str:
    from lab import render
    lines = ["Services: every pod to every Service port, by address and by name, through kube-proxy's rules",
             "(SOURCE: the backend saw the pod's own address; HAIRPIN: each backend reached its own Service and "
             "landed on itself;", " NODEPORT: every outside host to the NodePort on every node)", ""]
    lines.append(render.table(["SERVICE", "PORT", "PROBE", "BY ADDRESS", "BY NAME", "SOURCE", "HAIRPIN", "NODEPORT"],
                              summary_rows(results)))
    lines += [f"({n})" for n in notes]
    failed = [r for r in results if not r.passed]
    if failed:
        lines += ["", "Service failures:"]
        lines += [f"  {r.src} -> {r.service} {r.port} by {r.via}: {r.error or 'failed'}" for r in failed[:60]]
        if len(failed) > 60:
            lines.append(f"  ... and {len(failed) - 60} more")
    verdict = "PASS" if not failed else "FAIL"
    lines += ["", f"{verdict}: {len(results) - len(failed)}/{len(results)} Service probes passed in {seconds:.2f} s"]
    return "\n".join(lines)


def to_json(results: list[Result]) -> list[dict[str, Any]]:
    return [asdict(r) | {"passed": r.passed} for r in results]
