"""Grader of exercise 15: the conflist makes the bridge the pods' gateway, and traffic crosses nodes."""
import json

from lab.cni import log


def test_pods_reach_each_other(podlab):
    """every pod reaches every other pod, on its node and across nodes (ping and HTTP, no NAT)"""
    podlab.expect_pods_reach_each_other()


def test_bridge_holds_the_gateway(podlab):
    """each node's cni0 holds its pod block's gateway (the address the pods' default route uses)"""
    for node in podlab.nodes():
        gateway = str(podlab.block_of(node)[1])
        held = [a.split("/")[0] for a in podlab.addresses_of(node, "cni0")]
        assert gateway in held, f"{node}'s cni0 holds {', '.join(held) or 'no address'}, not {gateway}: " \
                                f"no one answers the pods' default route via {gateway}"


def test_plugins_made_the_gateway(podlab_lab):
    """the pods were attached by a bridge plugin told to be their gateway (isGateway in the conflist)"""
    last: dict[str, dict] = {}
    for entry in log.entries(podlab_lab.name):
        if entry["command"] == "ADD" and entry["plugin"] == "bridge":
            last[entry["pod"]] = json.loads(entry["stdin"])
    pods = [p.name for p in podlab_lab.topology.pods if not p.host_network]
    for pod in pods:
        conf = last.get(pod)
        assert conf is not None, f"pod {pod} was never attached by the bridge plugin ('sudo podlab cni log {pod}')"
        assert conf.get("isGateway") or conf.get("isDefaultGateway"), \
            f"pod {pod} was attached by a bridge plugin without isGateway: the list the node ran is still the old one"
