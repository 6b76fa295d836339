"""The bgp backend: Calico's BGP mode, with a real BIRD per node as calico-node runs it.

Nodes share one L2 segment; each node's BIRD (Debian's bird2, configured as Calico's confd
configures BIRD: lab.bgp.config) announces the node's blocks over iBGP (AS 64512 by default,
a full mesh of `Mesh_<ip>` sessions, or route reflectors), installs `blackhole <own block> proto
bird` and, for each block learned, `<block> via <node IP> dev eth0 proto bird`. Nothing else
routes between nodes: until the sessions are up, pods on different nodes cannot reach each other.
"""
from __future__ import annotations

from lab import state
from lab.addressing import AddressPlan, NodeAddr
from lab.bgp import config as bird
from lab.designs import wiring
from lab.designs.base import Attachment, Backend
from lab.model import CalicoSettings, Topology
from lab.ops import BgpEstablished, Op, StartDaemon, WriteFile


def conf_path(node: str) -> str:
    return state.in_lab_dir(f"bird/{node}.conf")


def socket_path(node: str) -> str:
    return state.in_lab_dir(f"bird/{node}.ctl")


class BgpBackend(Backend):
    def ops(self, topo: Topology, addrs: AddressPlan, attachment: Attachment) -> list[Op]:
        settings = topo.calico or CalicoSettings()
        peers = [bird.BgpNode(n.name, str(n.ip), tuple(map(str, n.blocks))) for n in addrs.nodes]
        ops: list[Op] = []
        for node, me in zip(addrs.nodes, peers):
            ops += wiring.routed_node(topo, addrs, node)
            text = bird.bird_config(me, peers, pool=str(topo.pod_cidr), asn=settings.as_number,
                                    mesh=settings.node_to_node_mesh, route_reflectors=settings.route_reflectors)
            sessions = bird.sessions(me, peers, mesh=settings.node_to_node_mesh,
                                     route_reflectors=settings.route_reflectors)
            conf, sock = conf_path(node.name), socket_path(node.name)
            ops += [WriteFile(conf, text, f"BIRD's configuration on {node.name} (as Calico's confd writes it)"),
                    StartDaemon("bird", "process", node.netns, tuple(bird.bird_argv(conf, sock)), (conf,),
                                BgpEstablished(node.netns, sock, len(sessions), _remote_blocks(addrs, node)),
                                # BIRD reads its file once; `configure` makes it read it again in place
                                # (a peer joined or left, its node took a block), as confd's bird.toml
                                # has it done (reload_cmd `sv hup bird`: BIRD's SIGHUP is `configure`).
                                "bird2", control=sock, reconfigure="configure")]
        return ops

    def static_neighbours(self, topo: Topology, addrs: AddressPlan) -> list[Op]:
        return wiring.node_pairs_neighbours(addrs)


def _remote_blocks(addrs: AddressPlan, node: NodeAddr) -> tuple:
    return tuple(b for peer in addrs.nodes if peer is not node for b in peer.blocks)


BGP = BgpBackend(
    name="bgp", mirrors="Calico's BGP mode: BIRD on every node (calico-node), full-mesh iBGP or route reflectors",
    summary="each node's BIRD announces its blocks; learned blocks go in the kernel `via <node IP> proto bird`",
    bgp=True)
