"""Who is beyond a link: the broadcast-domain search behind ARP answers and bridge flooding.

When a neighbour entry is missing the kernel asks by ARP, and when a bridge has no FDB entry
for a MAC it floods: either way the answer is whoever holds the address (or the MAC) on the
far side. This walks the same domain breadth first across veth pairs and bridges.
"""
from __future__ import annotations

from collections import deque

from lab.packets.view import View, up

SEARCH_LIMIT = 256      # namespaces looked at, at most, in one search

Found = tuple[str, str, str, tuple[str, str] | None]


def search(view: View, ns: str, dev: str, ip: str | None = None, mac: str | None = None,
           hint: str | None = None, through_down: bool = False) -> Found | None:
    """Who beyond `dev` holds address `ip` (or MAC `mac`): (netns, iface, MAC, first down link
    on the way or None), or None.

    Never back through the master of `dev` itself, so a bridge port is searched on its far side
    only. Down links stop the search unless `through_down`, which finds what a down link cuts
    off. The namespace the design gives the address to (`hint`) goes first, so a healthy lab
    costs a few lookups.
    """
    start = (ns, dev)
    seen = {start}
    queue: deque[tuple[str, str, tuple[str, str] | None]] = deque([(ns, dev, None)])
    spaces: set[str] = {ns}
    while queue:
        cur_ns, cur, blocked = queue.popleft()
        snap = view.state(cur_ns)
        link = snap.link(cur)
        if link is None:
            continue
        if not up(link):
            if not through_down:
                continue
            blocked = blocked or (cur_ns, cur)
        if (cur_ns, cur) != start:
            if ip is not None and not link.master and any(
                    a.dev == cur and a.address.split("/")[0] == ip for a in snap.addresses):
                return cur_ns, cur, link.mac, blocked
            if mac is not None and (link.mac or "").lower() == mac.lower():
                return cur_ns, link.master or cur, link.mac, blocked
        nexts: list[tuple[str, str]] = []
        if link.kind == "veth":
            peer = view.peer(cur_ns, cur)
            if peer is not None:
                nexts.append(peer)
        if link.master and (cur_ns, cur) != start:
            nexts.append((cur_ns, link.master))
        if link.kind == "bridge":
            nexts += [(cur_ns, port.name) for port in snap.links if port.master == cur]
        for n in sorted(nexts, key=lambda n: n[0] != hint):
            if n in seen or (n[0] not in spaces and len(spaces) >= SEARCH_LIMIT):
                continue
            seen.add(n)
            spaces.add(n[0])
            if n[0] == hint:
                queue.appendleft((*n, blocked))
            else:
                queue.append((*n, blocked))
    return None
