"""What a change of a cni lab's network list means for its pods. Pure.

In Kubernetes a running pod keeps the network its sandbox got; the list on the node only matters
to the next sandbox (a pod stuck in ContainerCreating is retried with it). In a lab, `podlab apply`
of a topology whose conflist changed is the user asking to try the new list: the pods of every node
whose rendered list changed are made again under their names (DEL with the old list, a new
namespace, ADD with the new), as if each had been deleted and its sandbox created again.
"""
from __future__ import annotations

from lab.ops import CniAdd, CniNode, Op


def reconfigured_pods(old_ops: tuple[Op, ...], new_ops: tuple[Op, ...]) -> set[str]:
    old = {op.node: op for op in old_ops if isinstance(op, CniNode)}
    new = {op.node: op for op in new_ops if isinstance(op, CniNode)}
    changed = {node for node, op in new.items() if node in old and old[node] != op}
    return {op.pod for op in new_ops if isinstance(op, CniAdd) and op.node in changed}
