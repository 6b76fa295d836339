"""Services and cluster DNS without root: the schema, addresses, endpoints, kube-proxy's table, the
portmap table, dnsmasq's records, resolv.conf, the DNS client, plans and the CLI."""
from __future__ import annotations

import io
import struct
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from lab import commands, planner, topology
from lab.cli import build_parser, main
from lab.errors import TopologyError
from lab.ops import AddRoute, ApplyNft, SetSysctl, StartDaemon, WriteFile
from lab.services import cli as service_cli
from lab.services import dns, dnsclient, endpoints, nft, resolv, schema

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"

BASE = """
name: st
mode: vxlan
nodes: [node1, node2]
"""


def load(extra: str, base: str = BASE):
    return topology.loads(base + extra, source="t.yaml")


def problems(extra: str, base: str = BASE) -> list[str]:
    with pytest.raises(TopologyError) as e:
        load(extra, base)
    return [f"{p.path}: {p.message}" for p in e.value.problems]


def one_problem(extra: str, path: str, *words: str) -> str:
    found = problems(extra)
    match = [p for p in found if p.startswith(path + ":") and all(w in p for w in words)]
    assert match, f"no problem at {path} saying {words}: {found}"
    return match[0]


# ---------------------------------------------------------------------------------------
# The schema and allocation
# ---------------------------------------------------------------------------------------
def test_services_topology_allocates_like_the_api_server():
    topo = topology.load(TOPOLOGIES / "services.yaml")
    by = {(s.namespace, s.name): s for s in topo.services}
    assert by[("default", "kubernetes")].cluster_ip == IPv4Address("10.96.0.1")
    assert by[("kube-system", "kube-dns")].cluster_ip == IPv4Address("10.96.0.10")
    assert by[("default", "nginx")].cluster_ip == IPv4Address("10.96.0.2")
    assert by[("default", "echo")].cluster_ip == IPv4Address("10.96.0.3")
    assert by[("default", "nginx-headless")].cluster_ip is None
    assert by[("default", "api")].cluster_ip == IPv4Address("10.96.0.4")
    echo = by[("default", "echo")]
    assert [(p.port, p.node_port, p.protocol) for p in echo.ports] == [(80, 30080, "TCP"), (8081, 30000, "UDP")]
    dns_pods = [p for p in topo.pods if schema.is_dns_pod(p)]
    assert len(dns_pods) == 1 and dns_pods[0].namespace == "kube-system" and dns_pods[0].node == "node1"
    assert dns_pods[0].name.startswith("kube-dns-") and topo.pods[-1] is dns_pods[0]


def test_no_services_key_still_gives_kubernetes_and_dns_as_every_cluster_has_them():
    topo = load("pods: [{name: a, image: busybox}]")
    assert topo.cluster_services and topo.cluster_dns
    assert [(s.namespace, s.name) for s in topo.services] == [("default", "kubernetes"), ("kube-system", "kube-dns")]
    assert [p.name for p in topo.pods][0] == "a" and schema.is_dns_pod(topo.pods[1]) and len(topo.pods) == 2


def test_dns_false_and_no_services_key_means_no_dns_pod_and_no_services():
    topo = load("dns: false\npods: [{name: a, image: busybox}]")
    assert topo.services == () and not topo.cluster_services and not topo.cluster_dns
    assert [p.name for p in topo.pods] == ["a"]
    plan = planner.build(topo)
    assert not any(isinstance(op, (ApplyNft, StartDaemon)) and getattr(op, "name", "") != "workload-agent"
                   for op in plan.ops)
    assert not any(isinstance(op, WriteFile) and op.pod for op in plan.ops)      # no resolv.conf: the node's


def test_dns_false_with_services_has_kube_proxy_but_no_dns():
    topo = load("dns: false\nservices: [{name: web, selector: {app: a}, ports: [80]}]\n"
                "pods: [{name: a, image: nginx, labels: {app: a}}]")
    assert [s.name for s in topo.services] == ["kubernetes", "web"] and [p.name for p in topo.pods] == ["a"]
    assert topo.services[1].cluster_ip == IPv4Address("10.96.0.2")
    plan = planner.build(topo)
    assert {op.table for op in plan.ops if isinstance(op, ApplyNft)} == {"ip kube-proxy"}
    assert not any(isinstance(op, StartDaemon) and op.name == "dnsmasq" for op in plan.ops)
    assert not any(isinstance(op, WriteFile) and op.pod for op in plan.ops)


def test_empty_services_key_still_gives_kubernetes_and_dns():
    topo = load("services: []")
    assert topo.cluster_services
    assert [(s.namespace, s.name) for s in topo.services] == [("default", "kubernetes"), ("kube-system", "kube-dns")]


def test_allocation_skips_dns_address_and_explicit_addresses():
    names = "\n".join(f"  - {{name: s{i}, ports: [80]}}" for i in range(10))
    topo = load(f"services:\n  - {{name: fixed, clusterIP: 10.96.0.3, ports: [80]}}\n{names}\n")
    ips = {s.name: str(s.cluster_ip) for s in topo.services}
    assert ips["fixed"] == "10.96.0.3"
    assert [ips[f"s{i}"] for i in range(10)] == [
        "10.96.0.2", "10.96.0.4", "10.96.0.5", "10.96.0.6", "10.96.0.7", "10.96.0.8", "10.96.0.9",
        "10.96.0.11", "10.96.0.12", "10.96.0.13"]


def test_node_ports_are_allocated_around_explicit_ones():
    topo = load("""services:
  - {name: a, type: NodePort, ports: [{name: x, port: 80}, {name: y, port: 81, nodePort: 30001}]}
  - {name: b, type: NodePort, ports: [{port: 80, nodePort: 30000}]}
""")
    ports = {s.name: [p.node_port for p in s.ports] for s in topo.services}
    assert ports["a"] == [30002, 30001] and ports["b"] == [30000]


def test_short_port_form_and_default_target_port():
    topo = load("services: [{name: web, ports: [8080]}]")
    port = next(s for s in topo.services if s.name == "web").ports[0]
    assert (port.port, port.target_port, port.protocol, port.name) == (8080, 8080, "TCP", "")


@pytest.mark.parametrize("extra,path,words", [
    ("services: [{name: Web, ports: [80]}]", "services[0].name", ["DNS-1035", "letter"]),
    ("services: [{name: 1web, ports: [80]}]", "services[0].name", ["starts with a letter"]),
    ("services: [{name: web, ports: [80]}, {name: web, ports: [81]}]", "services[1].name", ["already defined"]),
    ("services: [{name: kubernetes, ports: [80]}]", "services[0].name", ["made by podlab"]),
    ("services: [{name: kube-dns, namespace: kube-system, ports: [53]}]", "services[0].name", ["made by podlab"]),
    ("services: [{name: web, type: LoadBalancer, ports: [80]}]", "services[0].type", ["NodePort"]),
    ("services: [{name: web, type: Nodeport, ports: [80]}]", "services[0].type", ["did you mean 'NodePort'"]),
    ("services: [{name: web, ports: [{port: 80, protocol: SCTP}]}]", "services[0].ports[0].protocol", ["TCP and UDP"]),
    ("services: [{name: web, ports: [{port: 80, nodePort: 30080}]}]", "services[0].ports[0].nodePort",
     ["type: NodePort"]),
    ("services: [{name: web, type: NodePort, ports: [{port: 80, nodePort: 80}]}]", "services[0].ports[0].nodePort",
     ["30000-32767"]),
    ("services: [{name: web, type: NodePort, clusterIP: None, ports: [80]}]", "services[0].clusterIP",
     ["headless"]),
    ("services: [{name: web, clusterIP: 10.0.0.5, ports: [80]}]", "services[0].clusterIP", ["serviceCIDR"]),
    ("services: [{name: web, clusterIP: 10.96.0.10, ports: [80]}]", "services[0].clusterIP", ["kube-dns"]),
    ("services: [{name: web, clusterIP: banana, ports: [80]}]", "services[0].clusterIP", ["None"]),
    ("services: [{name: web, ports: [80, 81]}]", "services[0].ports[0]", ["needs a name"]),
    ("services: [{name: web, ports: [{name: a, port: 80}, {name: a, port: 81}]}]", "services[0].ports[1].name",
     ["unique"]),
    ("services: [{name: web, ports: [{port: 80}, {port: 80}]}]", "services[0].ports[1]", ["already declared"]),
    ("services: [{name: web, ports: [{port: 70000}]}]", "services[0].ports[0].port", ["1..65535"]),
    ("services: [{name: web, ports: [{port: 80, targetPort: '8080'}]}]", "services[0].ports[0].targetPort",
     ["remove the quotes"]),
    ("services: [{name: web, ports: [{port: 80, targetPort: Bad_Name}]}]", "services[0].ports[0].targetPort",
     ["container port"]),
    ("services: [{name: web}]", "services[0].ports", ["at least one port"]),
    ("services: [{name: web, ports: [80], selectr: {app: web}}]", "services[0].selectr", ["did you mean 'selector'"]),
    ("services: [{name: web, ports: [80], selector: {app: 5}}]", "services[0].selector.app", ["strings"]),
    ("services: [{name: web, type: NodePort, ports: [{port: 80, nodePort: 30080}]},"
     " {name: api, type: NodePort, ports: [{port: 80, nodePort: 30080}]}]", "services[1].ports[0].nodePort",
     ["already used"]),
    ("services: web", "services", ["a list"]),
])
def test_bad_services_name_the_field_and_the_fix(extra, path, words):
    one_problem(extra, path, *words)


def test_junk_in_services_is_reported_not_raised():
    found = problems("services: [1, null, [], {name: ok, ports: [80]}, {ports: [80]}]")
    assert any(p.startswith("services[0]") for p in found)
    assert any(p.startswith("services[4].name") and "needs a name" in p for p in found)


def test_service_cidr_too_small_for_the_dns_address():
    found = problems("network: {serviceCIDR: 10.96.0.0/29}\nservices: []")
    assert any(p.startswith("network.serviceCIDR") and ".10" in p for p in found)


def test_host_port_conflicts_and_host_network_rules():
    found = problems("""deployments:
  - {name: web, replicas: 2, nodes: [node1], containers: [{name: c, image: nginx,
     ports: [{containerPort: 80, hostPort: 8080}]}]}
pods:
  - {name: h, node: node2, hostNetwork: true, containers: [{name: c, image: nginx,
     ports: [{containerPort: 80, hostPort: 81}]}]}
""")
    assert any("hostPort 8080/TCP on node1 is already taken" in p for p in found)
    assert any("hostNetwork" in p and "must equal containerPort 80" in p for p in found)
    assert any("out of range" in p for p in problems(
        "pods: [{name: a, containers: [{name: c, ports: [{containerPort: 80, hostPort: 0}]}]}]"))


# ---------------------------------------------------------------------------------------
# Endpoints
# ---------------------------------------------------------------------------------------
def splan_of(topo):
    return endpoints.plan(topo, planner.build(topo).addresses)


def test_endpoints_follow_selector_namespace_and_named_ports():
    topo = load("""pods:
  - {name: a, node: node1, labels: {app: web}, containers: [{name: c, image: nginx,
     ports: [{containerPort: 8000, name: web-port}]}]}
  - {name: b, node: node2, labels: {app: web}, image: nginx}
  - {name: other-ns, node: node2, namespace: team, labels: {app: web}, image: nginx}
  - {name: host, node: node2, hostNetwork: true, labels: {app: hn}, image: nginx}
services:
  - {name: by-name, selector: {app: web}, ports: [{port: 80, targetPort: web-port}]}
  - {name: by-number, selector: {app: web}, ports: [{port: 80, targetPort: 80}]}
  - {name: hn, selector: {app: hn}, ports: [80]}
  - {name: none, ports: [80]}
""")
    sp = splan_of(topo)
    ips = {p.name: str(p.ip) for p in planner.build(topo).addresses.pods}

    def backends(name):
        svc = sp.find("default", name)
        return [(b.pod, str(b.ip), b.port) for b in svc.ports[0].backends]
    assert backends("by-name") == [("a", ips["a"], 8000)]              # b has no port called web-port
    assert backends("by-number") == [("a", ips["a"], 80), ("b", ips["b"], 80)]
    assert backends("hn") == [("host", "192.168.56.12", 80)]           # hostNetwork: the node's address
    assert backends("none") == []
    k8s = sp.find("default", "kubernetes")
    assert [(b.pod, str(b.ip), b.port) for b in k8s.ports[0].backends] == [(None, "192.168.56.11", 6443)]
    assert sp.dns_ip == IPv4Address("10.96.0.10") and sp.dns_pod.startswith("kube-dns-")


# ---------------------------------------------------------------------------------------
# kube-proxy's table and portmap's
# ---------------------------------------------------------------------------------------
def test_chain_names_hash_like_kube_proxy():
    # Values from kube-proxy's own tests (pkg/proxy/nftables/proxier_test.go).
    assert nft.hash_and_truncate("ns1/svc1/tcp/p80").startswith("ULMVA6XW-")
    assert nft.hash_and_truncate("ns1/svc1/tcp/p80__10.180.0.1/80") == "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
    assert len(nft.hash_and_truncate("x" * 400)) == nft.CHAIN_NAME_MAX


def test_kube_proxy_table_reads_like_the_real_one():
    topo = topology.load(TOPOLOGIES / "services.yaml")
    text = nft.kube_proxy(splan_of(topo), topo.pod_cidr)
    assert text.startswith("table ip kube-proxy {")
    for piece in ["chain nat-prerouting {", "type nat hook prerouting priority -100;", "chain nat-output {",
                  "chain nat-postrouting {", "jump masquerading", "chain services {",
                  "ip daddr . meta l4proto . th dport vmap @service-ips",
                  "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports",
                  "chain mark-for-masquerade {\n\t\tmark set mark or 0x004000",
                  "mark and 0x004000 == 0 return", "mark set mark xor 0x004000", "masquerade fully-random",
                  "chain reject-chain {", "\t\treject\n",
                  'elements = { 10.96.0.4 . tcp . 80 comment "default/api:http" : goto reject-chain }',
                  "10.96.0.2 . tcp . 80 : goto service-", "tcp . 30080 : goto external-",
                  "ip daddr 10.96.0.3 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade",
                  "numgen random mod 2 vmap { 0 : goto endpoint-", "meta l4proto tcp dnat to 10.244.0.3:80",
                  "meta l4proto udp dnat to 10.244.1.4:8081", "service-NWBZK7IH-kube-system/kube-dns/tcp/dns-tcp"]:
        assert piece in text, piece
    assert "nginx-headless" not in text            # kube-proxy ignores headless Services
    assert text.count("chain endpoint-") == 1 + 2 + 2 + 2 + 2   # kubernetes, dns x2, nginx, echo x2 ports
    for chain in [line for line in text.splitlines() if line.startswith("\tchain endpoint-")]:
        ip = chain.split("__")[1].split("/")[0]
        assert f"ip saddr {ip} jump mark-for-masquerade" in text   # hairpin traffic is masqueraded


def test_host_port_table_only_on_the_pods_node():
    topo = topology.load(TOPOLOGIES / "services.yaml")
    plan = planner.build(topo)
    tables = {(op.ns, op.table) for op in plan.ops if isinstance(op, ApplyNft)}
    assert tables == {("services-node1", "ip kube-proxy"), ("services-node2", "ip kube-proxy"),
                      ("services-node2", "ip cni_hostport")}
    text = next(op.ruleset for op in plan.ops if isinstance(op, ApplyNft) and op.table == "ip cni_hostport")
    assert 'tcp dport 8080 dnat to 10.244.1.2:80 comment "default/web-hostport"' in text
    assert "fib daddr type local jump hostports" in text
    assert "ip saddr 10.244.1.2 ip daddr 10.244.1.2 masquerade" in text


def test_host_ports_without_services_need_no_dns():
    topo = load("dns: false\npods: [{name: a, node: node1, containers: [{name: c, image: nginx, "
                "ports: [{containerPort: 80, hostPort: 8080}]}]}]")
    plan = planner.build(topo)
    assert [op.table for op in plan.ops if isinstance(op, ApplyNft)] == ["ip cni_hostport"]
    assert not any(schema.is_dns_pod(p) for p in topo.pods)


def test_plans_without_services_have_the_cluster_dns_and_with_dns_false_are_bare():
    for name in ("default", "vxlan", "l2", "l3-host-routes", "l3-vpc-router", "multi-container"):
        path = TOPOLOGIES / f"{name}.yaml"
        plan = planner.build(topology.load(path))
        assert {op.table for op in plan.ops if isinstance(op, ApplyNft)} == {"ip kube-proxy"}, name
        assert any(isinstance(op, StartDaemon) and op.name == "dnsmasq" for op in plan.ops), name
        bare = planner.build(topology.loads(path.read_text() + "\ndns: false\n", source=str(path)))
        assert not any(isinstance(op, ApplyNft) for op in bare.ops), name
        assert not any(isinstance(op, SetSysctl) and "bridge-nf" in op.key for op in bare.ops), name
        assert [p.name for p in bare.topology.pods] == [p.name for p in plan.topology.pods[:-1]], name


def test_nodes_get_bridge_netfilter_and_a_default_route_only_when_missing():
    vx = planner.build(topology.load(TOPOLOGIES / "services.yaml"))
    for node in vx.addresses.nodes:
        assert SetSysctl(node.netns, "net.bridge.bridge-nf-call-iptables", "1") in vx.ops
        defaults = [op for op in vx.ops if isinstance(op, AddRoute) and op.ns == node.netns and op.dst.prefixlen == 0]
        assert len(defaults) == 1 and defaults[0].via == vx.addresses.router_ip
    gw = planner.build(load("services: []", "name: gw\nmode: l3\nrouting: gateway\nnodes: 2\n"))
    for node in gw.addresses.nodes:
        defaults = [op for op in gw.ops if isinstance(op, AddRoute) and op.ns == node.netns and op.dst.prefixlen == 0]
        assert len(defaults) == 1   # the VPC router's, not a second one


def test_apply_nft_renders_as_an_nft_heredoc_after_routes():
    plan = planner.build(topology.load(TOPOLOGIES / "services.yaml"))
    kinds = [type(op).__name__ for op in plan.ops]
    assert kinds.index("ApplyNft") > max(i for i, k in enumerate(kinds) if k == "AddRoute")
    text = commands.command(next(op for op in plan.ops if isinstance(op, ApplyNft)))
    assert text.startswith("ip netns exec services-node1 nft -f - <<'EOF'\ntable ip kube-proxy {")
    assert text.endswith("\n}\nEOF")


# ---------------------------------------------------------------------------------------
# DNS: dnsmasq's records, resolv.conf, hosts
# ---------------------------------------------------------------------------------------
def test_dnsmasq_config_and_records_have_every_record_kind():
    topo = topology.load(TOPOLOGIES / "services.yaml")
    plan = planner.build(topo)
    sp = endpoints.plan(topo, plan.addresses)
    text = dns.config(topo, plan.addresses, sp)
    lines = set(text.splitlines())
    dns_ip = next(p.ip for p in plan.addresses.pods if p.name == sp.dns_pod)
    for line in ["no-resolv", "no-hosts", "domain-needed", "local=/cluster.local/", "local-ttl=5",
                 f"listen-address={dns_ip}", "bind-interfaces", "keep-in-foreground", "user=root",
                 "srv-host=_http._tcp.nginx.default.svc.cluster.local,nginx.default.svc.cluster.local,80,0,100",
                 "srv-host=_udp._udp.echo.default.svc.cluster.local,echo.default.svc.cluster.local,8081,0,100",
                 "srv-host=_dns._udp.kube-dns.kube-system.svc.cluster.local,kube-dns.kube-system.svc.cluster.local,"
                 "53,0,100",
                 "srv-host=_http._tcp.nginx-headless.default.svc.cluster.local,"
                 "10-244-1-3.nginx-headless.default.svc.cluster.local,80,0,50"]:
        assert line in lines, line
    assert not any(line.startswith(("server=", "resolv-file", "host-record", "address=")) for line in lines)
    records = dns.records(topo, plan.addresses, sp)
    lines = records.splitlines()
    for line in ["10.96.0.2 nginx.default.svc.cluster.local",
                 "10.96.0.10 kube-dns.kube-system.svc.cluster.local",
                 "10.96.0.1 kubernetes.default.svc.cluster.local",
                 "10.244.0.3 nginx-headless.default.svc.cluster.local",
                 "10.244.1.3 nginx-headless.default.svc.cluster.local",
                 "10.244.0.3 10-244-0-3.nginx-headless.default.svc.cluster.local",
                 "10.244.0.2 10-244-0-2.default.pod.cluster.local",
                 f"{dns_ip} {str(dns_ip).replace('.', '-')}.kube-system.pod.cluster.local"]:
        assert line in lines, line
    assert "api.default" in records   # a Service without endpoints still has its name
    # A headless pod's first line names it under its Service (its PTR), as CoreDNS answers.
    first = next(line for line in lines if line.startswith("10.244.0.3 "))
    assert first == "10.244.0.3 10-244-0-3.nginx-headless.default.svc.cluster.local"
    daemon = next(op for op in plan.ops if isinstance(op, StartDaemon) and op.name == "dnsmasq")
    assert daemon.config == ("$LAB_DIR/dns/dnsmasq.conf",) and "--hostsdir=$LAB_DIR/dns/records" in daemon.argv
    files = {op.path: op for op in plan.ops if isinstance(op, WriteFile)}
    assert files["$LAB_DIR/dns/records/cluster"].live and not files["$LAB_DIR/dns/dnsmasq.conf"].live


def test_resolv_conf_and_hosts_as_the_kubelet_writes_them():
    assert resolv.resolv_conf("team", "10.96.0.10") == (
        "search team.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n")
    hosts = resolv.hosts_file("busybox", "10.244.0.2")
    assert hosts.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n")
    assert hosts.endswith("10.244.0.2\tbusybox\n")
    with pytest.raises(ValueError):
        resolv.pod_dir("lab", "../etc")


def test_kubelet_files_are_planned_for_command_pods_and_written_for_others_when_first_entered(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from lab import state
    monkeypatch.setattr(state, "ROOT", tmp_path)
    topo = load("pods:\n  - {name: web, node: node1, image: nginx}\n  - {name: sh, node: node2, image: busybox, "
                "command: [sleep, '3600']}\n  - {name: hn, node: node2, image: busybox, hostNetwork: true}\n",
                "name: kf\nnodes: [node1, node2]\n")
    plan = planner.build(topo)
    planned = {op.pod for op in plan.ops if isinstance(op, WriteFile) and op.pod}
    # The command pod's; not the DNS pod's: its dnsmasq asks the node's resolver (dnsPolicy: Default)
    assert planned == {"sh"}
    lab = SimpleNamespace(name="kf", topology=topo, addresses=plan.addresses)
    mounts = resolv.mounts_for(lab, "web")
    assert [target for _, target in mounts] == ["/etc/resolv.conf", "/etc/hosts"]
    web_ip = plan.addresses.pod("web").ip
    assert Path(mounts[1][0]).read_text().endswith(f"{web_ip}\tweb\n")
    assert oct(Path(mounts[0][0]).stat().st_mode & 0o777) == "0o600"
    Path(mounts[0][0]).write_text("nameserver 192.0.2.53\n")                 # edited inside the pod: it stays
    assert resolv.mounts_for(lab, "web") == mounts and resolv.resolv_conf_of(lab, "web") == "nameserver 192.0.2.53\n"
    assert resolv.mounts_for(lab, "hn") == []                                 # hostNetwork: the node's resolver
    assert "nameserver 10.96.0.10" in resolv.resolv_conf_of(lab, "sh")       # not written yet: what it will be
    state.remove_pod_dirs("kf", ["web"])
    assert not resolv.pod_dir("kf", "web").exists()
    bare = load("dns: false\npods: [{name: web, node: node1, image: nginx}]\n", "name: kf\nnodes: [node1]\n")
    assert resolv.mounts_for(SimpleNamespace(name="kf", topology=bare, addresses=planner.build(bare).addresses),
                             "web") == []


# ---------------------------------------------------------------------------------------
# The DNS client
# ---------------------------------------------------------------------------------------
def _answer(ident: int, qname: str, qtype: int, records: list[tuple[int, bytes]], rcode: int = 0) -> bytes:
    head = struct.pack("!HHHHHH", ident, 0x8580 | rcode, 1, len(records), 0, 0)
    question = dnsclient.encode_name(qname) + struct.pack("!HH", qtype, 1)
    body = b""
    for rtype, rdata in records:   # owner name: a pointer to the question (offset 12)
        body += b"\xc0\x0c" + struct.pack("!HHIH", rtype, 1, 5, len(rdata)) + rdata
    return head + question + body


def test_dns_client_reads_a_srv_and_a_records_with_compression():
    target = dnsclient.encode_name("web.default.svc.cluster.local")
    data = _answer(7, "_http._tcp.web.default.svc.cluster.local", 33,
                   [(33, struct.pack("!HHH", 0, 100, 80) + target)])
    a = dnsclient.parse(data, 7)
    assert a.ok and a.qtype == "SRV" and a.authoritative
    assert a.records[0].srv() == (0, 100, 80, "web.default.svc.cluster.local.")
    a = dnsclient.parse(_answer(9, "web.default.svc.cluster.local", 1, [(1, bytes([10, 96, 0, 2]))]), 9)
    assert a.values() == ["10.96.0.2"] and a.records[0].ttl == 5
    a = dnsclient.parse(_answer(3, "nope.default.svc.cluster.local", 1, [], rcode=3), 3)
    assert a.rcode == "NXDOMAIN" and not a.ok


@pytest.mark.parametrize("junk", [b"", b"\x00" * 5, b"\x00\x07\x80\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c",
                                  b"\x00\x07\x80\x00\x00\x00\x00\x01\x00\x00\x00\x00\x03abc"])
def test_dns_client_refuses_junk_without_crashing(junk):
    with pytest.raises(dnsclient.DnsError):
        dnsclient.parse(junk, 7)


def test_search_list_order_follows_ndots():
    search = resolv.search("default")
    assert dnsclient.search_names("nginx", search, 5) == [
        "nginx.default.svc.cluster.local.", "nginx.svc.cluster.local.", "nginx.cluster.local.", "nginx."]
    # Four dots < ndots 5: even a full pod name goes through the search list first (why ndots:5 costs queries).
    full = "10-244-2-84.default.pod.cluster.local"
    assert dnsclient.search_names(full, search, 5)[0] == f"{full}.default.svc.cluster.local."
    assert dnsclient.search_names(full + ".", search, 5) == [full + "."]
    assert dnsclient.search_names(full, search, 1)[0] == full + "."


# ---------------------------------------------------------------------------------------
# CLI (no lab needed)
# ---------------------------------------------------------------------------------------
def test_get_accepts_services_and_endpoints_and_nslookup_parses():
    p = build_parser()
    for what in ("services", "svc", "endpoints", "ep"):
        assert p.parse_args(["get", what, "-o", "wide"]).what == what
    args = p.parse_args(["nslookup", "busybox", "_http._tcp.nginx", "-t", "SRV"])
    assert (args.src, args.name, args.type) == ("busybox", "_http._tcp.nginx", "SRV")


def test_plan_shows_services_without_root():
    out, err = io.StringIO(), io.StringIO()
    assert main(["plan", str(TOPOLOGIES / "services.yaml")], out, err) == 0
    text = out.getvalue()
    assert "default/nginx" in text and "10.96.0.2" in text and "80:30080/TCP" in text
    assert "192.168.56.12:8080/TCP (node2) -> web-hostport 10.244.1.2:80" in text
    assert "cluster DNS: dnsmasq in pod kube-dns-" in text


def test_bad_services_file_is_a_clear_error_not_a_traceback(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BASE + "services: [{name: web, type: LoadBalancer, ports: [{port: 80, protocol: SCTP}]}]\n")
    out, err = io.StringIO(), io.StringIO()
    assert main(["plan", str(path)], out, err) == 1
    text = err.getvalue()
    assert "services[0].type" in text and "services[0].ports[0].protocol" in text and "Traceback" not in text


def test_find_service_reads_names_like_the_search_list():
    sp = splan_of(topology.load(TOPOLOGIES / "services.yaml"))
    for name in ("nginx", "nginx.default", "nginx.default.svc", "nginx.default.svc.cluster.local",
                 "nginx.default.svc.cluster.local."):
        assert service_cli.find_service(sp, name, "default").key == "default/nginx", name
    assert service_cli.find_service(sp, "nginx", "team") is None       # short names are per namespace
    assert service_cli.find_service(sp, "kube-dns.kube-system", "default").key == "kube-system/kube-dns"


def test_node_port_is_refused_in_l2_mode_with_the_reason():
    found = problems("services: [{name: web, type: NodePort, ports: [80]}]", "name: l2s\nmode: l2\nnodes: 2\n")
    assert any(p.startswith("services[0].type") and "mode l2" in p and "vxlan or l3" in p for p in found)


def test_l2_nodes_send_no_redirects_when_services_are_on():
    plan = planner.build(load("services: []", "name: l2s\nmode: l2\nnodes: 2\n"))
    for node in plan.addresses.nodes:
        assert SetSysctl(node.netns, "net.ipv4.conf.all.send_redirects", "0") in plan.ops
    vx = planner.build(topology.load(TOPOLOGIES / "services.yaml"))
    assert not any(isinstance(op, SetSysctl) and "redirects" in op.key and op.ns.endswith("node1") for op in vx.ops)
