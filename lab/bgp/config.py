"""A node's BIRD 2 configuration, shaped like the one Calico's confd generates for BIRD.

Calico's templates (projectcalico/calico confd/etc/calico/confd/templates/bird.cfg.template,
bird_aggr.cfg.template, bird_ipam.cfg.template; goldens under confd/tests/compiled_templates/)
target Calico's BIRD 1.6 fork. Debian's bird2 (2.0.12) needs BIRD 2 syntax for the same
meaning: import/export filters and `gateway`/`add paths` move into `ipv4 { }` channels.

Where this differs from Calico, and why:
- The kernel protocol exports only what Calico puts in the kernel in a no-encap pool (BGP
  routes inside the pool, the node's own blackhole blocks) instead of Calico's `accept` of
  everything, and with `metric 0`: BIRD 2's default kernel metric is 32, and Calico's
  krt_metric = 1024 for BGP routes is dropped too, so `ip route` prints `proto bird` and no
  metric, as BIRD 1.6 did (`192.168.66.128/26 via 10.0.0.12 dev eth0 proto bird`).
- The local_pref/krt_metric arithmetic of Calico's per-peer filters (elevated-priority /32s
  during VM live migration) is left out, with it the `krt_metric < 1024` escape in
  calico_aggr(): podlab's pod routes have metric 0, which would let every /32 escape its block.
- Kernel-learned routes on cali* devices are never announced (Calico announces none inside its
  own blocks either, but does announce a /32 it borrowed from another node's block, through
  `net ~ pool`); podlab's IPAM does not borrow.
- BGP timers are shorter (BGP_TIMERS): BIRDs started together refuse each other's first
  connections until every daemon listens, and Calico's 5 s connect retry would leave a
  50-node mesh (49 sessions per BIRD) half up for that long.
- BIRD 2.0.12 has no configuration statement for its control socket; its path goes on the
  command line (`bird_argv`).
"""
from __future__ import annotations

import ipaddress
from collections.abc import Collection, Sequence
from dataclasses import dataclass

DEFAULT_ASN = 64512          # confd/pkg/backends/calico/client.go: the default AS number
DEFAULT_POOL = "192.168.0.0/16"
# Calico's documentation labels route reflectors with this routeReflectorClusterID.
DEFAULT_RR_CLUSTER_ID = "244.0.0.1"
BIRD = "/usr/sbin/bird"

# Calico: connect delay time 2; connect retry time 5; error wait time 5,30.
# connect delay: how long a started session waits before its first connection attempt; 1 s
#   lets the peers' daemons, started in the same second, come up to listen.
# connect retry: the wait after a refused connection; 1 s instead of 5 s is what makes a
#   mesh of BIRDs started one after another converge in seconds.
# error wait: the idle time after a session fails (min, doubling up to max); Calico's 5,30
#   is kept, it only matters once a session broke (a node restarted).
BGP_TIMERS = ("connect delay time 1", "connect retry time 1", "error wait time 5,30")


@dataclass(frozen=True)
class BgpNode:
    """A node as BGP sees it: its name, its IP on the shared segment (also its router id and
    the next hop of its routes), and the IPAM blocks it owns."""
    name: str
    ip: str
    blocks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Session:
    """One `protocol bgp` of a node: a BGP session to one peer."""
    name: str
    neighbor: str
    passive: bool = False
    rr_client: bool = False


def protocol_name(kind: str, ip: str) -> str:
    """Calico's protocol names: `Mesh_10_0_0_3` for the node-to-node mesh, `Node_<ip>` for
    node-specific peers, `Global_<ip>` for global ones (bgp_processor.go). calicoctl node
    status reads the peer's type and address back from this name."""
    return f"{kind}_{ip.replace('.', '_').replace(':', '_')}"


def sessions(node: BgpNode, peers: Sequence[BgpNode], *, mesh: bool = True,
             route_reflectors: Collection[str] = ()) -> list[Session]:
    """The BGP sessions Calico would configure on `node`, sorted by name as confd sorts them.

    mesh: the node-to-node mesh among every node that is not a route reflector; Calico skips
    route reflectors in the mesh (they have a cluster id). passive on when the peer's IP is
    greater than ours compared as strings (Calico's rule, so only one side connects).
    route_reflectors: node names. Every node peers with every route reflector, as Calico's
    usual BGPPeer (nodeSelector all(), peerSelector on the route reflectors) makes it; confd
    calls those node-specific peers, `Node_<ip>`. A reflector marks the sessions to
    non-reflectors `rr client`; reflectors share one cluster id, so between them it is plain
    iBGP. Calico makes node-specific sessions active on both sides; BIRD resolves the
    collision.
    """
    reflectors = set(route_reflectors)
    unknown = reflectors - {node.name} - {p.name for p in peers}
    if unknown:
        raise ValueError(f"route reflectors that are not nodes: {', '.join(sorted(unknown))}")
    out: list[Session] = []
    i_reflect = node.name in reflectors
    for peer in peers:
        if peer.ip == node.ip:
            continue
        if peer.name in reflectors or i_reflect:
            out.append(Session(protocol_name("Node", peer.ip), peer.ip,
                               rr_client=i_reflect and peer.name not in reflectors))
        elif mesh:
            out.append(Session(protocol_name("Mesh", peer.ip), peer.ip, passive=peer.ip > node.ip))
    return sorted(out, key=lambda s: s.name)


def bird_config(node: BgpNode, peers: Sequence[BgpNode], *, pool: str = DEFAULT_POOL,
                asn: int = DEFAULT_ASN, mesh: bool = True, route_reflectors: Collection[str] = (),
                rr_cluster_id: str = DEFAULT_RR_CLUSTER_ID) -> str:
    """The BIRD 2 configuration text for `node`, peering with `peers` (the other nodes; the
    node itself, if listed, is skipped as confd skips itself)."""
    ipaddress.ip_address(node.ip)
    pool_net = str(ipaddress.ip_network(pool))
    blocks = [str(ipaddress.ip_network(b)) for b in node.blocks]
    outside = [b for b in blocks if not ipaddress.ip_network(b).subnet_of(ipaddress.ip_network(pool_net))]
    if outside:
        raise ValueError(f"blocks outside the pool {pool_net}: {', '.join(outside)}")
    parts = [
        f"# Generated by podlab for node {node.name}, after Calico's confd templates.",
        f"router id {node.ip};",
        "timeformat protocol iso short;   # SINCE as hh:mm:ss, as calicoctl node status shows it",
        _filters(blocks, pool_net),
        _kernel_device_direct(),
        _static(blocks),
        _bgp_template(asn),
    ]
    for s in sessions(node, peers, mesh=mesh, route_reflectors=route_reflectors):
        parts.append(_bgp_session(s, node.ip, asn, rr_cluster_id))
    return "\n\n".join(parts) + "\n"


def bird_argv(config_path: str, socket_path: str) -> list[str]:
    """The command that runs BIRD in the foreground on `config_path`, its control socket at
    `socket_path` (run it inside the node's network namespace)."""
    return [BIRD, "-f", "-c", config_path, "-s", socket_path]


def _filters(blocks: list[str], pool: str) -> str:
    aggr = "\n".join(f"  if ( net = {b} ) then {{ accept; }}\n  if ( net ~ {b} ) then {{ reject; }}"
                     for b in blocks) or "  # This node owns no block."
    return f"""\
# bird_aggr.cfg: export each of this node's blocks, nothing beneath it (no pod /32s).
function calico_aggr()
{{
{aggr}
}}

# bird_ipam.cfg's calico_export_to_bgp_peers(): what this node tells its peers.
filter calico_export_to_bgp_peers
{{
  # Pod routes (dev cali*) never leave the node: its blocks stand for them.
  if ( ifname ~ "cali*" ) then {{ reject; }}
  calico_aggr();
  if ( net ~ {pool} ) then {{ accept; }}
  reject;
}}

# Only the pool's routes are taken from peers.
filter calico_import_from_bgp_peers
{{
  if ( net ~ {pool} ) then {{ accept; }}
  reject;
}}

# What BIRD writes into the kernel: the other nodes' blocks learned over BGP (a no-encap pool),
# and this node's blackhole blocks (protocol static holds nothing else).
filter calico_kernel_programming
{{
  if ( source = RTS_BGP && net ~ {pool} ) then {{ accept; }}
  if ( source = RTS_STATIC ) then {{ accept; }}
  reject;
}}"""


def _kernel_device_direct() -> str:
    return """\
# Configure synchronization between routing tables and kernel.
protocol kernel {
  learn;             # Learn all alien routes from the kernel
  persist;           # Don't remove routes on bird shutdown
  scan time 2;       # Scan kernel routing table every 2 seconds
  graceful restart;  # Reduce route flaps when BIRD restarts or reloads
  merge paths on;    # Allow export multipath routes (ECMP)
  metric 0;          # No metric on its routes (BIRD 2 defaults to 32), as BIRD 1.6 wrote them
  ipv4 {
    import all;
    export filter calico_kernel_programming;
  };
}

# Watch interface up/down events.
protocol device {
  scan time 2;       # Scan interfaces every 2 seconds
}

# Connected subnets: the next hops of the peers' routes resolve through them.
protocol direct {
  ipv4;
  interface -"cali*", -"kube-ipvs*", "*";   # Exclude cali* and kube-ipvs*, include everything else
}"""


def _static(blocks: list[str]) -> str:
    routes = "\n".join(f"  route {b} blackhole;" for b in blocks)
    return f"""\
protocol static {{
  ipv4;
  # IP blocks for this host.
{routes}
}}""" if blocks else "# No IP blocks on this host: no protocol static."


def _bgp_template(asn: int) -> str:
    timers = "\n".join(f"  {t};" for t in BGP_TIMERS)
    return f"""\
# Template for all BGP clients
template bgp bgp_template {{
  description "Connection to BGP peer";
  local as {asn};
  multihop;          # iBGP as Calico runs it; the next hop is then resolved recursively
  graceful restart;
{timers}
  ipv4 {{
    gateway recursive;   # next hop (the peer's node IP) resolved through the direct route of eth0
    add paths on;
    import filter calico_import_from_bgp_peers;
    export filter calico_export_to_bgp_peers;   # Only want to export routes for workloads.
  }};
}}"""


def _bgp_session(s: Session, my_ip: str, asn: int, rr_cluster_id: str) -> str:
    lines = [f"protocol bgp {s.name} from bgp_template {{",
             f"  neighbor {s.neighbor} as {asn};",
             f"  source address {my_ip};   # The local address we use for the TCP connection"]
    if s.passive:
        lines.append("  passive on;   # Mesh is unidirectional, peer will connect to us.")
    if s.rr_client:
        lines += ["  rr client;", f"  rr cluster id {rr_cluster_id};"]
    return "\n".join(lines + ["}"])
