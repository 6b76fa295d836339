"""The peer: Debian's Mininet, N hosts on one LinuxBridge switch, no controller.

Runs under Debian's /usr/bin/python3 (where the `mininet` package lives) as a subprocess of
bench/run.py and prints one JSON object with its timings.

    /usr/bin/python3 bench/mininet_peer.py --hosts 500 [--pingall] [--memory] [--iperf SECONDS]
                                           [--static-arp] [--root-netns]

Mininet works in the network namespace it is started in: its switch and the switch ends of
its veths live there, and as shipped it raises sysctls when it starts (mininet.util.fixLimits:
the ARP table's gc_thresh*, socket buffers, pty.max...). By default this script first moves
itself into a new, unnamed network namespace (unshare), so everything Mininet makes "in the
root namespace" lands there instead and vanishes with this process: the kernel does the same
work, and other people's tests that watch the real root namespace see nothing. The network
sysctls it would raise exist only in the initial namespace, so there it cannot raise them
(fixLimits warns and goes on); the ARP table keeps the kernel's default size, as for podlab,
and --static-arp gives the hosts permanent entries (Mininet's autoStaticArp), as podlab's
large labs have. With --root-netns Mininet runs as shipped in the root namespace.

Either way this script removes exactly what Mininet made: net.stop() deletes its links and
switch, every sysctl it changed is written back to the value read before, and the links of
the namespace it ran in are compared before and after; whatever is still there under a name
Mininet gave is deleted by that name and reported as residue. Nothing is cleaned by pattern
(never `mn -c`).
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import settle  # noqa: E402  (stdlib only)
from procmem import rss_pss_kb  # noqa: E402  (stdlib only)

CLONE_NEWNET = 0x40000000
# What mininet.util.fixLimits may write (Mininet 2.3.0).
SYSCTLS = ("fs.file-max", "net.core.wmem_max", "net.core.rmem_max", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem",
           "net.core.netdev_max_backlog", "net.ipv4.neigh.default.gc_thresh1", "net.ipv4.neigh.default.gc_thresh2",
           "net.ipv4.neigh.default.gc_thresh3", "net.ipv4.route.max_size", "kernel.pty.max")


def _sysctl_path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


def read_sysctls() -> dict[str, str]:
    out = {}
    for key in SYSCTLS:
        try:
            with open(_sysctl_path(key)) as f:
                out[key] = f.read().strip()
        except OSError:
            pass
    return out


def restore_sysctls(before: dict[str, str]) -> list[str]:
    """Write back every sysctl that differs from `before`; return the keys restored."""
    restored = []
    now = read_sysctls()
    for key, value in before.items():
        if now.get(key) != value:
            with open(_sysctl_path(key), "w") as f:
                f.write(value)
            restored.append(key)
    return restored


def root_links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if line.strip())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hosts", type=int, required=True)
    ap.add_argument("--pingall", action="store_true", help="time net.pingAll() (all ordered pairs)")
    ap.add_argument("--memory", action="store_true", help="RSS/PSS of every process Mininet runs")
    ap.add_argument("--iperf", type=float, default=0, help="iperf3 h1 -> h2 for this many seconds")
    ap.add_argument("--static-arp", action="store_true", help="permanent ARP entries on every host (autoStaticArp)")
    ap.add_argument("--root-netns", action="store_true", help="run in the root network namespace, as shipped")
    args = ap.parse_args(argv)
    if not args.root_netns:
        # Before anything else exists: Mininet's shells and `ip` commands inherit this namespace.
        if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    # Asked to stop (bench/run.py interrupted): unwind, so the `finally` below undoes everything.
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    from mininet.log import setLogLevel
    from mininet.net import Mininet
    from mininet.nodelib import LinuxBridge
    from mininet.topo import Topo
    setLogLevel("warning")

    links_before = root_links()
    # A switch name nobody uses: Mininet deletes any link of its names before making them.
    taken = set(links_before)
    while True:
        switch = f"s{random.randint(1000, 9999)}"
        if not any(l == switch or l.startswith(switch + "-") for l in taken):
            break
    sysctls_before = read_sysctls()
    result: dict = {"hosts": args.hosts, "switch": switch, "netns": "root" if args.root_netns else "private"}

    class Star(Topo):
        def build(self, n: int = 2) -> None:  # noqa: D401  (Mininet's Topo API)
            s = self.addSwitch(switch)
            for i in range(1, n + 1):
                self.addLink(self.addHost(f"h{i}"), s)

    net = None
    try:
        started = time.monotonic()
        net = Mininet(topo=Star(n=args.hosts), switch=LinuxBridge, controller=None, build=False,
                      autoStaticArp=args.static_arp)
        net.build()
        net.start()
        result["up"] = time.monotonic() - started

        if args.memory:
            pids = [n.shell.pid for n in (*net.hosts, *net.switches) if n.shell]
            per = [rss_pss_kb(p) for p in pids]
            me = rss_pss_kb(os.getpid())
            result["memory"] = {"processes": len(pids), "shells_rss_mb": sum(r for r, _ in per) / 1024,
                                "shells_pss_mb": sum(p for _, p in per) / 1024,
                                "python_rss_mb": me[0] / 1024, "python_pss_mb": me[1] / 1024}
        if args.pingall:
            time.sleep(1.0)        # let links settle (carrier, bridge ports), as a user would before typing pingall
            t = time.monotonic()
            loss = net.pingAll()
            result["pingall"] = {"seconds": time.monotonic() - t, "pairs": args.hosts * (args.hosts - 1),
                                 "loss_percent": loss}
        if args.iperf and args.hosts >= 2:
            h1, h2 = net.hosts[0], net.hosts[1]
            server = h2.popen(["iperf3", "-s", "-1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.3)
            out = h1.cmd(f"iperf3 -c {h2.IP()} -t {args.iperf:g} -J")
            server.wait(timeout=10)
            try:
                bps = json.loads(out[out.index("{"):])["end"]["sum_received"]["bits_per_second"]
                result["iperf_gbps"] = bps / 1e9
            except (ValueError, KeyError):
                result["iperf_error"] = out[-300:]

        sentinel = settle.Sentinel()
        shells = [n.shell for n in (*net.hosts, *net.switches) if n.shell]
        t = time.monotonic()
        net.stop()
        for shell in shells:       # a host's namespace lives until its shell has exited
            try:
                shell.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        result["down"] = time.monotonic() - t
        result["settle"] = sentinel.wait()
        net = None
    finally:
        if net is not None:        # failed midway: still stop what was made
            try:
                net.stop()
            except Exception as e:  # noqa: BLE001  (report, then check residue below)
                result["stop_error"] = str(e)
        result["sysctls_restored"] = restore_sysctls(sysctls_before)
        left = [l for l in root_links() if l not in links_before]
        made = {switch} | {f"{switch}-eth{i}" for i in range(1, args.hosts + 1)}   # the names Mininet gives
        for name in left:
            if name in made:
                subprocess.run(["ip", "link", "del", name], capture_output=True)
        result["residue"] = left
        result["root_links_same"] = root_links() == links_before
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
