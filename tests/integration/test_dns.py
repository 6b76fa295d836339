"""The cluster DNS, asked from inside pods: Service names (short through the search list, and
full), headless Services, SRV for named ports, pod records, the bare-name failure of seed 001,
the kubelet's resolv.conf under `podlab exec` (and the host's left as it is)."""
from __future__ import annotations

import io
import socket
from pathlib import Path

import pytest

from lab import cli
from lab.engine import netns
from lab.services import dnsclient

SERVICES_YAML = (Path(__file__).resolve().parents[2] / "topologies" / "services.yaml").read_text()
DNS_IP = "10.96.0.10"


@pytest.fixture(scope="module")
def lab(lab_from_yaml):
    return lab_from_yaml(SERVICES_YAML, prefix="dns")


def podlab(lab, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main([argv[0], "--lab", lab.name, *argv[1:]], out, err)
    return code, out.getvalue(), err.getvalue()


def ask(lab, pod: str, name: str, qtype: str = "A") -> dnsclient.Answer:
    """One query from inside the pod to the DNS Service's ClusterIP (kube-proxy DNATs it)."""
    sock = netns.socket_in(lab.addresses.pod(pod).netns, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        return dnsclient.ask(sock, DNS_IP, name, qtype, timeout=3)
    finally:
        sock.close()


def pods(lab, prefix: str):
    return [p for p in lab.addresses.pods if p.name.startswith(prefix)]


def svc_ip(lab, name: str) -> str:
    return str(next(s.cluster_ip for s in lab.topology.services if s.name == name))


def test_exec_sees_the_kubelets_resolv_conf_and_hosts_and_the_host_keeps_its_own(lab):
    host_resolv = Path("/etc/resolv.conf").read_text()
    host_mounts = Path("/proc/self/mountinfo").read_text()
    code, out, _ = podlab(lab, "exec", "busybox", "--", "cat", "/etc/resolv.conf")
    assert code == 0 and out == ("search default.svc.cluster.local svc.cluster.local cluster.local\n"
                                 f"nameserver {DNS_IP}\noptions ndots:5\n")
    code, out, _ = podlab(lab, "exec", "busybox", "--", "cat", "/etc/hosts")
    assert out.startswith("# Kubernetes-managed hosts file.") and f"{lab.addresses.pod('busybox').ip}\tbusybox" in out
    dns_pod = pods(lab, "kube-dns-")[0]
    code, out, _ = podlab(lab, "exec", dns_pod.name, "--", "cat", "/etc/resolv.conf")
    assert out == host_resolv      # the DNS pod asks the node's resolver (dnsPolicy Default, as kubeadm's CoreDNS)
    code, out, _ = podlab(lab, "exec", "node1", "--", "cat", "/etc/resolv.conf")
    assert out == host_resolv                     # nodes use the node's resolver (dnsPolicy Default)
    assert Path("/etc/resolv.conf").read_text() == host_resolv
    assert Path("/proc/self/mountinfo").read_text() == host_mounts


@pytest.mark.parametrize("name", ["nginx", "nginx.default", "nginx.default.svc", "nginx.default.svc.cluster.local"])
def test_service_names_resolve_through_the_search_list(lab, name):
    code, out, err = podlab(lab, "exec", "busybox", "--", "getent", "hosts", name)
    assert code == 0, err
    assert out.split() == [svc_ip(lab, "nginx"), "nginx.default.svc.cluster.local"]


def test_services_in_other_namespaces_and_from_every_node(lab):
    for client in ("busybox", "web-hostport"):       # node1 (the DNS pod's node) and node2
        code, out, _ = podlab(lab, "exec", client, "--", "getent", "hosts", "kube-dns.kube-system")
        assert code == 0 and out.split()[0] == DNS_IP
    code, _, _ = podlab(lab, "exec", "busybox", "--", "getent", "hosts", "kube-dns")   # not in default
    assert code == 2


def test_full_answers_ttl_and_reverse(lab):
    a = ask(lab, "busybox", "echo.default.svc.cluster.local")
    assert a.ok and a.authoritative and a.values() == [svc_ip(lab, "echo")]
    assert {r.ttl for r in a.records} == {5}                   # CoreDNS's default TTL
    ptr = ask(lab, "busybox", ".".join(reversed(svc_ip(lab, "echo").split("."))) + ".in-addr.arpa", "PTR")
    assert ptr.values() == ["echo.default.svc.cluster.local."]
    k8s = ask(lab, "busybox", "kubernetes.default.svc.cluster.local")
    assert k8s.values() == ["10.96.0.1"]


def test_headless_service_answers_with_the_ready_pods(lab):
    nginx = sorted(str(p.ip) for p in pods(lab, "nginx-"))
    a = ask(lab, "web-hostport", "nginx-headless.default.svc.cluster.local")
    assert sorted(a.values()) == nginx
    for ip in nginx:
        each = ask(lab, "busybox", f"{ip.replace('.', '-')}.nginx-headless.default.svc.cluster.local")
        assert each.values() == [ip]


def test_srv_records_for_named_ports(lab):
    srv = ask(lab, "busybox", "_http._tcp.nginx.default.svc.cluster.local", "SRV")
    assert [r.srv() for r in srv.records] == [(0, 100, 80, "nginx.default.svc.cluster.local.")]
    srv = ask(lab, "busybox", "_udp._udp.echo.default.svc.cluster.local", "SRV")
    assert [r.srv() for r in srv.records] == [(0, 100, 8081, "echo.default.svc.cluster.local.")]
    srv = ask(lab, "busybox", "_dns._udp.kube-dns.kube-system.svc.cluster.local", "SRV")
    assert [r.srv()[2] for r in srv.records] == [53]
    srv = ask(lab, "busybox", "_http._tcp.nginx-headless.default.svc.cluster.local", "SRV")
    targets = sorted(r.srv() for r in srv.records)
    assert targets == sorted((0, 50, 80, f"{str(p.ip).replace('.', '-')}.nginx-headless.default.svc.cluster.local.")
                             for p in pods(lab, "nginx-"))
    assert not ask(lab, "busybox", "_nope._tcp.nginx.default.svc.cluster.local", "SRV").ok


def test_pod_records_resolve_and_carry_traffic_as_in_seed_001(lab):
    target = pods(lab, "nginx-")[-1]
    name = f"{str(target.ip).replace('.', '-')}.default.pod.cluster.local"
    code, out, _ = podlab(lab, "exec", "busybox", "--", "getent", "hosts", name)
    assert code == 0 and out.split()[0] == str(target.ip)
    code, out, err = podlab(lab, "ping", "busybox", name, "-c", "1")
    assert code == 0 and f"PING {name} ({target.ip})" in out, err
    code, out, _ = podlab(lab, "curl", "busybox", name)
    assert out.strip() == f"Welcome to the home page of host {target.name}!"


def test_a_bare_pod_name_does_not_resolve(lab):
    target = pods(lab, "nginx-")[0].name
    code, _, _ = podlab(lab, "exec", "busybox", "--", "getent", "hosts", target)
    assert code == 2
    code, _, err = podlab(lab, "exec", "busybox", "--", "ping", "-c", "1", "-W", "1", target)
    assert code != 0 and "not known" in err
    code, out, _ = podlab(lab, "nslookup", "busybox", target)
    assert code == 1 and f"server can't find {target}: NXDOMAIN" in out
    asked = [line.split()[1] for line in out.splitlines() if line.strip().startswith("asked ")]
    assert asked == [f"{target}.default.svc.cluster.local.", f"{target}.svc.cluster.local.",
                     f"{target}.cluster.local.", f"{target}."]      # the search list, then the name itself


def test_unknown_names_inside_and_outside_the_zone(lab):
    inside = ask(lab, "busybox", "nosuch.default.svc.cluster.local")
    assert inside.rcode == "NXDOMAIN"                    # the zone is answered here only
    outside = ask(lab, "busybox", "example.com")
    assert outside.rcode == "REFUSED"                    # no upstream in a lab
    api = ask(lab, "busybox", "api.default.svc.cluster.local")
    assert api.values() == [svc_ip(lab, "api")]          # a Service without endpoints still has its name


def test_nslookup_walks_and_answers(lab):
    code, out, _ = podlab(lab, "nslookup", "web-hostport", "nginx")
    assert code == 0
    assert f"Server:    {DNS_IP} (kube-dns.kube-system.svc.cluster.local)" in out
    assert f"Address:   {svc_ip(lab, 'nginx')}" in out
    code, out, _ = podlab(lab, "nslookup", "busybox", "_http._tcp.nginx-headless", "-t", "SRV")
    assert code == 0 and out.count("service = 0 50 80") == 2
    code, out, _ = podlab(lab, "nslookup", "busybox", svc_ip(lab, "nginx"))
    assert code == 0 and "name = nginx.default.svc.cluster.local" in out
    code, _, err = podlab(lab, "nslookup", "node1", "nginx")
    assert code == 1 and "node's resolver" in err and "Traceback" not in err
