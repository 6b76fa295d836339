"""The physical floor: the kernel objects of podlab's `l2` lab with N pods, made as fast as
this machine allows, by a minimal raw-netlink script with nothing else around it.

Same objects as `podlab up` of a one-node l2 lab with N pods (see lab/designs/bridge.py and lab/designs/l2.py):
  - an underlay namespace with bridge br0, a node namespace with bridge cni0 (the gateway and
    the node's address), the node's uplink veth (eth0 in the node, enslaved to cni0),
  - per pod: a network + UTS namespace (hostname set) bind-mounted under /run/netns and a state
    directory, a veth (host end enslaved to cni0, hairpin on, alias set; eth0 in the pod with a
    fixed MAC), lo and both ends up, the pod's address, `default via` the gateway, and the
    permanent neighbour entries podlab writes for a lab of this size (lab.addressing: pod ->
    gateway and node -> pod above a few dozen pods; pod <-> pod too up to ~256 pods).
Not made: what every podlab lab adds for its cluster DNS (one more pod, kube-proxy's table and a
default route on the node, a sysctl, dnsmasq): one pod in a thousand and one table, loaded in-process
in ~3 ms; `up` of the 1000-pod lab measured the same with and without it (`dns: false`), so the floor
stays the pods' own objects.
No plan, no journal, no workloads, no checks: only what the kernel must do, with every trick
the kernel offers (mount points hard-linked, links created already up where the kernel allows
it, veths made with one queue, bridges brought up and made to snoop multicast once their ports
are up, each namespace's requests in one send(2), unmounts in parallel).

    python bench/floor.py --pods 1000          # up, then down; prints JSON timings
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab import addressing  # noqa: E402  (which neighbour entries a lab of this size gets)
from lab.engine.netns import MountPoints, in_helper_thread  # noqa: E402  (the same tricks as podlab)
from lab.netlink import wire as nl  # noqa: E402  (the packing helpers)
from lab.netlink.writer import ONE_QUEUE, Channel, Request  # noqa: E402  (podlab's batching)

NETNS_DIR = "/run/netns"
FLOOR_DIR = Path("/run/podlab-floor")   # the UTS mount points' directory (removed when empty)
CLONE_NEWUTS, CLONE_NEWNET = 0x04000000, 0x40000000
MS_BIND, MNT_DETACH = 4096, 2
UNMOUNT_THREADS = 32
_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mac(tag: str) -> bytes:
    return b"\x0a" + hashlib.sha256(tag.encode()).digest()[:5]


def _bind(source: bytes, target: str, mount_points: MountPoints) -> None:
    mount_points.make(target)   # a hard link of one unnamed inode, as podlab makes them
    _check(_libc.mount(source, target.encode(), b"none", MS_BIND, None), f"bind-mount {target}")


def _bridge_info(snooping: bool) -> bytes:
    return nl.nested(nl.IFLA_LINKINFO, nl.string(nl.IFLA_INFO_KIND, "bridge"),
                     nl.nested(nl.IFLA_INFO_DATA, nl.u8(nl.IFLA_BR_MCAST_SNOOPING, int(snooping))))


def _newlink(index: int, name: str, up: bool = True, extra: bytes = b"") -> bytes:
    flags = nl.IFF_UP if up else 0
    return nl.ifinfomsg(index, flags=flags, change=flags) + nl.string(nl.IFLA_IFNAME, name) + extra


class Floor:
    """One floor lab: N pods on one bridge. `up()` and `down()` return their own wall time."""

    def __init__(self, pods: int, prefix: str | None = None, state_dir: str | None = None):
        self.n = pods
        self.prefix = prefix or f"flr{os.getpid() % 100000}"
        self.state = Path(state_dir) if state_dir else FLOOR_DIR / self.prefix
        self.mounts: list[str] = []          # every mount made, in order: all that down() undoes
        self.mount_points = MountPoints()
        self.phases: dict[str, float] = {}     # wall time of each phase
        self.cpu: dict[str, float] = {}        # CPU time of the thread doing it (kernel work included)
        net = IPv4Network("10.244.0.0/16")
        self.gateway = net[1]
        self.pod_ip = [net[2 + i] for i in range(pods)]
        self.prefixlen = net.prefixlen

    # -- namespaces --------------------------------------------------------------------
    def _namespace(self, name: str, hostname: str) -> tuple[int, socket.socket]:
        """Runs in a helper thread: a new net + UTS namespace, mounted, with a netlink socket in it."""
        _check(_libc.unshare(CLONE_NEWNET | CLONE_NEWUTS), "unshare")
        host = hostname.encode()
        _libc.sethostname(host, len(host))
        path = f"{NETNS_DIR}/{name}"
        _bind(b"/proc/thread-self/ns/net", path, self.mount_points)
        self.mounts.append(path)
        uts = str(self.state / "uts" / name)
        _bind(b"/proc/thread-self/ns/uts", uts, self.mount_points)
        self.mounts.append(uts)
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        return os.open(path, os.O_RDONLY), sock

    def neighbour_policy(self) -> tuple[bool, bool]:
        """(permanent entries at all, pod <-> pod entries too): podlab's rule for a one-node l2
        lab (lab.addressing), so the floor makes the same entries podlab does."""
        segment_pairs = self.n * (self.n - 1)
        static = addressing.dynamic_neighbours(self.n, 1, segment_pairs) > addressing.SHARED_ARP_BUDGET
        return static, static and segment_pairs <= addressing.STATIC_PAIRS_LIMIT

    # -- bring-up -----------------------------------------------------------------------
    def up(self) -> float:
        (self.state / "uts").mkdir(parents=True, exist_ok=True)
        os.makedirs(NETNS_DIR, exist_ok=True)
        started = time.monotonic()
        try:
            in_helper_thread(self._build, "floor")   # it unshares: this thread never changes namespace
        finally:
            self.mount_points.close()
            self.phases["total"] = time.monotonic() - started
        return self.phases["total"]

    def _build(self) -> None:
        t0, c0 = time.monotonic(), time.thread_time()
        p = self.prefix
        u_fd, u_sock = self._namespace(f"{p}-underlay", "underlay")
        n_fd, n_sock = self._namespace(f"{p}-node1", "node1")
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:   # this thread is in node1 now
            f.write("1")
        pods = [self._namespace(f"{p}-pod{i}", f"pod{i}") for i in range(self.n)]
        self.phases["namespaces"] = time.monotonic() - t0
        self.cpu["namespaces"] = time.thread_time() - c0

        t1, c1 = time.monotonic(), time.thread_time()
        under, node = Channel(u_sock), Channel(n_sock)
        # ifindexes chosen here: lo is 1 in a new namespace, new links count up from 2.
        under.queue(Request(nl.RTM_NEWLINK, nl.CREATE, _newlink(2, "br0", up=False, extra=(
            nl.attr(nl.IFLA_ADDRESS, _mac(f"{p}/br0")) + _bridge_info(snooping=False))), "br0"))
        under.queue(Request(nl.RTM_NEWLINK, nl.CREATE, _newlink(3, "node1", extra=(
            ONE_QUEUE + nl.u32(nl.IFLA_MASTER, 2) + nl.nested(nl.IFLA_LINKINFO, nl.string(nl.IFLA_INFO_KIND, "veth"),
                                                  nl.nested(nl.IFLA_INFO_DATA, nl.attr(nl.VETH_INFO_PEER,
                                                            _newlink(2, "eth0", up=False, extra=ONE_QUEUE + nl.u32(nl.IFLA_NET_NS_FD, n_fd)))))
        )), "uplink"))
        under.flush()
        node.queue(Request(nl.RTM_SETLINK, 0, nl.ifinfomsg(1, flags=nl.IFF_UP, change=nl.IFF_UP), "lo"))
        static, pairs = self.neighbour_policy()
        mac = {i: _mac(f"{p}/pod{i}") for i in range(self.n)} if static else {}
        gw_mac = _mac(f"{p}/cni0")
        node.queue(Request(nl.RTM_NEWLINK, nl.CREATE, _newlink(3, "cni0", up=False, extra=(
            nl.attr(nl.IFLA_ADDRESS, gw_mac) + _bridge_info(snooping=False))), "cni0"))
        node.queue(Request(nl.RTM_SETLINK, 0, nl.ifinfomsg(2, flags=nl.IFF_UP, change=nl.IFF_UP)
                              + nl.u32(nl.IFLA_MASTER, 3), "eth0 up, master cni0"))
        for ip, plen in ((self.gateway, self.prefixlen), (IPv4Address("192.168.56.11"), 24)):
            node.queue(Request(nl.RTM_NEWADDR, nl.CREATE, nl.ifaddrmsg(plen, 3)
                                  + nl.ip4(nl.IFA_LOCAL, ip) + nl.ip4(nl.IFA_ADDRESS, ip), "addr"))
        node.flush()
        # The pods' veths from the node's side: created up, enslaved, peer straight into the pod.
        for i, (fd, _) in enumerate(pods):
            peer = _newlink(2, "eth0", up=False, extra=ONE_QUEUE + nl.u32(nl.IFLA_NET_NS_FD, fd)
                            + (nl.attr(nl.IFLA_ADDRESS, mac[i]) if static else b""))
            body = _newlink(4 + i, f"veth{i:08x}", extra=(
                ONE_QUEUE + nl.u32(nl.IFLA_MASTER, 3) + nl.string(nl.IFLA_IFALIAS, f"floor {p} pod{i}")
                + nl.nested(nl.IFLA_LINKINFO, nl.string(nl.IFLA_INFO_KIND, "veth"),
                            nl.nested(nl.IFLA_INFO_DATA, nl.attr(nl.VETH_INFO_PEER, peer)))))
            node.queue(Request(nl.RTM_NEWLINK, nl.CREATE, body, f"veth of pod{i}"))
        node.flush()
        self.phases["veths"] = time.monotonic() - t1
        self.cpu["veths"] = time.thread_time() - c1

        t2, c2 = time.monotonic(), time.thread_time()
        dst = [nl.ip4(nl.NDA_DST, ip) for ip in self.pod_ip]
        lladdr = {i: nl.attr(nl.NDA_LLADDR, m) for i, m in mac.items()}
        for i in range(self.n):  # hairpin, and the node's permanent entry for each pod
            node.queue(Request(nl.RTM_SETLINK, 0, nl.ifinfomsg(4 + i, family=nl.AF_BRIDGE)
                                  + nl.nested(nl.IFLA_PROTINFO, nl.u8(nl.IFLA_BRPORT_MODE, 1)), "hairpin"))
            if static:
                node.queue(Request(nl.RTM_NEWNEIGH, nl.CREATE, nl.ndmsg(nl.AF_INET, 3, nl.NUD_PERMANENT)
                                      + dst[i] + lladdr[i], "neigh"))
        node.flush()
        # Inside each pod: everything in one send(2).
        gw = nl.ip4(nl.RTA_GATEWAY, self.gateway)
        neigh = nl.ndmsg(nl.AF_INET, 2, nl.NUD_PERMANENT)
        for i, (fd, sock) in enumerate(pods):
            ch = Channel(sock)
            ip = self.pod_ip[i]
            for index in (1, 2):   # lo, eth0 (a veth's peer cannot be created up)
                ch.queue(Request(nl.RTM_SETLINK, 0, nl.ifinfomsg(index, flags=nl.IFF_UP, change=nl.IFF_UP), "up"))
            ch.queue(Request(nl.RTM_NEWADDR, nl.CREATE, nl.ifaddrmsg(self.prefixlen, 2)
                                + nl.ip4(nl.IFA_LOCAL, ip) + nl.ip4(nl.IFA_ADDRESS, ip), "addr"))
            ch.queue(Request(nl.RTM_NEWROUTE, nl.CREATE, nl.rtmsg(0, nl.RT_SCOPE_UNIVERSE, nl.RTN_UNICAST) + gw,
                                "route"))
            if static:
                ch.queue(Request(nl.RTM_NEWNEIGH, nl.CREATE, neigh + nl.ip4(nl.NDA_DST, self.gateway)
                                    + nl.attr(nl.NDA_LLADDR, gw_mac), "neigh"))
            for j in range(self.n) if pairs else ():
                if j != i:
                    ch.queue(Request(nl.RTM_NEWNEIGH, nl.CREATE, neigh + dst[j] + lladdr[j], "neigh"))
            ch.flush()
            ch.close()
            os.close(fd)
        # The bridges go up once every pod is, then snoop multicast (podlab's order: apply._links).
        for ch, index in ((node, 3), (under, 2)):
            ch.queue(Request(nl.RTM_SETLINK, 0, nl.ifinfomsg(index, flags=nl.IFF_UP, change=nl.IFF_UP), "up"))
            ch.queue(Request(nl.RTM_NEWLINK, 0, nl.ifinfomsg(index) + _bridge_info(snooping=True), "snooping"))
            ch.flush()
        self.phases["pods"] = time.monotonic() - t2
        self.cpu["pods"] = time.thread_time() - c2
        for fd, sock in ((u_fd, u_sock), (n_fd, n_sock)):
            sock.close()
            os.close(fd)

    # -- teardown -----------------------------------------------------------------------
    def down(self, threads: int = UNMOUNT_THREADS) -> float:
        """Unmount and unlink exactly the mounts up() made; the kernel frees the rest.

        Each unmount waits for an RCU grace period and barely uses the CPU; unmounts made at
        the same time share grace periods, so several threads do it in a fraction of the time.
        """
        started = time.monotonic()

        def unmount(path: str) -> None:
            _libc.umount2(path.encode(), MNT_DETACH)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

        with ThreadPoolExecutor(max_workers=max(1, min(threads, len(self.mounts)))) as pool:
            list(pool.map(unmount, reversed(self.mounts)))
        self.mounts.clear()
        for d in (self.state / "uts", self.state, *((self.state.parent,) if self.state.parent == FLOOR_DIR else ())):
            try:
                d.rmdir()
            except OSError:
                pass
        return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pods", type=int, default=100)
    args = ap.parse_args(argv)
    floor = Floor(args.pods)
    try:
        floor.up()
    finally:
        down = floor.down()
    print(json.dumps({"pods": args.pods, "up": round(floor.phases["total"], 3), "down": round(down, 3),
                      "phases": {k: round(v, 3) for k, v in floor.phases.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
