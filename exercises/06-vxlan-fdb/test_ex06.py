"""Grader of exercise 06: every node's flannel.1 knows every other node's VTEP (neighbour + FDB)."""


def test_vtep_entries(podlab):
    """on every node, flannel.1 has a neighbour and an FDB entry for each other node's VTEP"""
    for node in podlab.nodes():
        neighbours = {n.address: n for n in podlab.neighbours(node, "flannel.1")}
        fdb = {f.mac: f for f in podlab.fdb(node, "flannel.1") if f.dst}
        for peer in podlab.nodes():
            if peer == node:
                continue
            vtep = str(podlab.block_of(peer).network_address)
            mac = podlab.link(peer, "flannel.1").mac          # the peer's real VTEP MAC, from its kernel
            entry = neighbours.get(vtep)
            assert entry is not None and entry.mac, (
                f"{node} has no neighbour entry for {vtep} ({peer}'s VTEP) on flannel.1")
            assert entry.mac == mac, (f"{node} thinks {peer}'s VTEP {vtep} has MAC {entry.mac}, "
                                      f"but {peer}'s flannel.1 has MAC {mac}")
            f = fdb.get(mac)
            assert f is not None, (f"{node}'s flannel.1 has no FDB entry for {mac} ({peer}'s VTEP): "
                                   f"it does not know to send those packets to {peer}")
            assert f.dst == str(podlab.target(peer).ip), (
                f"{node}'s flannel.1 sends {peer}'s VTEP ({mac}) to {f.dst}, but {peer} is "
                f"{podlab.target(peer).ip}")


def test_pods_reach_each_other(podlab):
    """every pod reaches every other pod across the overlay (ping and HTTP, no NAT)"""
    podlab.expect_pods_reach_each_other()
