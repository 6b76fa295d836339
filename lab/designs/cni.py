"""The cni attachment: the user's conflist, run by the real plugin binaries, as kubelet has
containerd run it (lab.cni). What eth0, the host veth, the bridge, the routes and the NAT rules
look like is the plugins' doing; the plan says which nodes run which list for which pods.

Per node: its own /run and /var/lib for the plugins' state (lab.engine.node_mountns) and the list
rendered with the node's values, as containerd renders its CNI config template (CniNode). Per
pod: an ADD of the chain into its namespace, from the node's namespace (CniAdd), with kubelet's
CNI_ARGS and containerd's capability arguments. Addresses are host-local's: the plan predicts
them (.2, .3, ... of the node's block, in the pods' order) and the results say what they are.
The backend beside it (host-gw, vpc, vxlan, bgp, none) is podlab's, as flanneld or kindnetd run
beside the plugin on a real node.
"""
from __future__ import annotations

import json

from lab.addressing import AddressPlan, NodeAddr, PodAddr
from lab.designs import wiring
from lab.designs.base import Attachment, Design
from lab.errors import PodlabError
from lab.model import Pod, Topology
from lab.ops import CniAdd, CniNode, Op, SetSysctls

# lab.cni's template, request and JSON modules are imported where a cni lab's plan uses them: every
# plan imports this attachment with the others (they cost ~12 ms to import).


def render(topo: Topology, node: NodeAddr) -> str:
    """The node's list: the conflist template executed with its CIDRs (used as is without actions)."""
    assert topo.cni is not None
    text = topo.cni.conflist
    from lab.cni import template
    if not template.has_actions(text):
        return text
    try:
        return template.render(text, template.Values.for_node([str(b) for b in node.blocks]))
    except template.TemplateError as e:
        raise PodlabError(f"conflist {topo.cni.source} for node {node.name}: {e}") from None


def flannel_env(topo: Topology, addrs: AddressPlan, node: NodeAddr) -> str:
    """What flanneld writes for the flannel CNI plugin to read (flannel-io/cni-plugin: subnetFile,
    /run/flannel/subnet.env): the cluster network, the node's subnet as its gateway address, the MTU its
    backend leaves pods, and whether flanneld masquerades (its default, --ip-masq as kube-flannel.yml sets)."""
    return (f"FLANNEL_NETWORK={topo.pod_cidr}\nFLANNEL_SUBNET={node.gateway}/{node.block.prefixlen}\n"
            f"FLANNEL_MTU={addrs.pod_mtu}\nFLANNEL_IPMASQ=true\n")


def network_name(topo: Topology) -> str:
    assert topo.cni is not None
    try:
        name = json.loads(render_first(topo)).get("name", "")
    except (ValueError, AttributeError, PodlabError):
        name = ""
    return name if isinstance(name, str) else ""


def render_first(topo: Topology) -> str:
    assert topo.cni is not None
    text = topo.cni.conflist
    from lab.cni import template
    return text if not template.has_actions(text) else template.render(text, template.Values.for_node(["10.0.0.0/24"]))


class CniAttachment(Attachment):
    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        object.__setattr__(self, "_pods", (None, {}, ""))

    def veth_name(self, topo: Topology, namespace: str, pod: str) -> str | None:   # type: ignore[override]
        return None     # the plugin's: veth + 8 random hex (pkg/ip/link_linux.go), known from its result

    def node_ops(self, design: Design, topo: Topology, addrs: AddressPlan, node: NodeAddr) -> list[Op]:
        assert topo.cni is not None
        config = render(topo, node)
        return [SetSysctls(node.netns, (), wiring.NO_BRIDGE_NETFILTER),    # if a list makes a bridge
                CniNode(node.netns, node.name, config, topo.cni.cni_path, topo.cni.timeout,
                        flannel_env(topo, addrs, node) if '"flannel"' in config else "")]

    def _pod(self, topo: Topology, name: str) -> tuple[Pod, str]:
        """The pod's spec and the list's network name: worked out once per topology (pod_ops is called
        once per pod)."""
        seen, table, network = self._pods
        if seen is not topo:
            table, network = {p.name: p for p in topo.pods}, network_name(topo)
            object.__setattr__(self, "_pods", (topo, table, network))
        return table[name], network

    def pod_ops(self, topo: Topology, addrs: AddressPlan, pod: PodAddr, node: NodeAddr) -> list[Op]:
        assert topo.cni is not None
        spec, network = self._pod(topo, pod.name)
        from lab.cni import gojson, request
        return [CniAdd(pod.netns, node.name, node.netns, pod.name, request.sandbox_id(topo.name, spec),
                       request.IFNAME, request.cni_args(topo.name, spec),
                       gojson.dumps(request.capability_args(spec)), network, topo.cni.cni_path)]


CNI = CniAttachment(
    name="cni", mirrors="your conflist, run by the real CNI plugin binaries as containerd runs them",
    summary="each node's plugins ADD every pod (environment, stdin and result cache as kubelet and containerd "
            "give them); what they build is theirs",
    bridge=False, routed_same_node=False, runs_plugins=True)
