"""Kernel features a plan needs, detected before anything is built.

Each probe does the real thing in a scratch network namespace that only a helper thread
ever joins, and that the kernel frees as soon as the thread is done: create a vxlan device,
attach a netem qdisc. Asking the kernel is the only reliable test (a module may be built in,
loadable on demand, or missing; /proc/modules says nothing about built-ins). Answers are
cached for the life of the process.
"""
from __future__ import annotations

import ctypes
import errno
import os
import shutil
import socket
import struct
from collections.abc import Callable, Iterable

from lab.engine import netns
from lab.errors import PodlabError
from lab.netlink import wire as nl
from lab.netlink.writer import Channel, NetlinkError, Request
from lab.ops import ApplyNft, CniNode, CreateVxlan, SetSysctl, StartDaemon

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
# errnos that mean "this kernel has no such link kind / qdisc"
_MISSING = {errno.EOPNOTSUPP, errno.ENOENT, errno.EINVAL, errno.EAFNOSUPPORT}

# what each feature is for, and how to get it
HELP = {
    "vxlan": ("mode: vxlan builds flannel.1 VXLAN devices", "load it with 'sudo modprobe vxlan' (kernel option "
              "CONFIG_VXLAN), or use mode: l3 or l2, which need no tunnel"),
    "netem": ("link delay/loss emulation uses the netem qdisc", "load it with 'sudo modprobe sch_netem' (kernel "
              "option CONFIG_NET_SCH_NETEM; on Debian/Ubuntu it is in linux-modules-extra)"),
}

_cache: dict[str, bool] = {}


def _in_scratch_netns(fn: Callable[[socket.socket], bool]) -> bool:
    def work() -> bool:
        if _libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare: {errno.errorcode.get(err, err)}")
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as sock:
            return fn(sock)
    return netns.in_helper_thread(work, "podlab-feature-probe")


def _ask(sock: socket.socket, request: Request) -> bool:
    channel = Channel(sock)
    channel.queue(request)
    try:
        channel.flush()
    except NetlinkError as e:
        if e.errno in _MISSING:
            return False
        raise
    return True


def _vxlan(sock: socket.socket) -> bool:
    data = nl.u32(nl.IFLA_VXLAN_ID, 42) + nl.be16(nl.IFLA_VXLAN_PORT, 4789)
    body = (nl.ifinfomsg() + nl.string(nl.IFLA_IFNAME, "probe0")
            + nl.nested(nl.IFLA_LINKINFO, nl.string(nl.IFLA_INFO_KIND, "vxlan"), nl.nested(nl.IFLA_INFO_DATA, data)))
    return _ask(sock, Request(nl.RTM_NEWLINK, nl.CREATE, body, "ip link add probe0 type vxlan id 42"))


def _netem(sock: socket.socket) -> bool:
    tcmsg = struct.pack("=BxxxiIII", socket.AF_UNSPEC, 1, 0, nl.TC_H_ROOT, 0)   # on lo, ifindex 1
    qopt = struct.pack("=6I", 1000, 1000, 0, 0, 0, 0)   # latency, limit, loss, gap, duplicate, jitter
    body = tcmsg + nl.string(nl.TCA_KIND, "netem") + nl.attr(nl.TCA_OPTIONS, qopt)
    return _ask(sock, Request(nl.RTM_NEWQDISC, nl.CREATE, body, "tc qdisc add dev lo root netem"))


PROBES: dict[str, Callable[[socket.socket], bool]] = {"vxlan": _vxlan, "netem": _netem}


def available(feature: str) -> bool:
    """True if this kernel can do `feature` (one of PROBES), asked once per process."""
    if feature not in _cache:
        try:
            _cache[feature] = _in_scratch_netns(PROBES[feature])
        except OSError as e:
            raise PodlabError(f"cannot tell whether the kernel supports {feature}: {e}") from None
    return _cache[feature]


# The op types that need an optional feature (veth, bridges and namespaces every kernel has).
# An op added later that needs one registers here, e.g. NEEDS[SetNetem] = "netem".
NEEDS: dict[type, str] = {CreateVxlan: "vxlan"}


def needed(ops: Iterable[object]) -> list[str]:
    """The optional kernel features a plan uses, in the order first needed."""
    wanted: list[str] = []
    for op in ops:
        feature = NEEDS.get(type(op))
        if feature and feature not in wanted:
            wanted.append(feature)
    return wanted


def missing_message(missing: list[str]) -> str:
    parts = [f"{f} ({HELP[f][0]}): {HELP[f][1]}" for f in missing]
    return "this kernel lacks " + "; and ".join(parts) + ". Nothing was created."


def require(ops: Iterable[object]) -> None:
    """Raise PodlabError naming every kernel feature the plan needs and the kernel lacks."""
    ops = list(ops)
    missing = [f for f in needed(ops) if not available(f)]
    if missing:
        raise PodlabError(missing_message(missing))
    problems = host_problems(ops)
    if problems:
        raise PodlabError("this lab needs " + "; and ".join(problems) + ". Nothing was created.")


BRIDGE_NF_ADVICE = ("the br_netfilter kernel module (pods reaching a Service on their own node need conntrack to "
                    "see bridged replies): sudo modprobe br_netfilter. Know that it changes every bridge on this "
                    "host: each one's frames then go through iptables/nftables (Docker's and libvirt's bridges "
                    "too) unless net.bridge.bridge-nf-call-iptables=0 there; podlab's labs set it per namespace, "
                    "1 only where kube-proxy needs it")


def _cni_problems(nodes: list[CniNode]) -> list[str]:
    """A cni lab's plugins: every binary its lists name, executable, speaking the lists' cniVersion."""
    if not nodes:
        return []
    from lab.cni import plugins
    from lab.cni.conflist import ConflistError, parse
    out: list[str] = []
    for config, cni_path in dict.fromkeys((op.config, op.cni_path) for op in nodes):
        try:
            found = plugins.problems(parse(config), cni_path)
        except ConflistError as e:
            found = e.problems
        out += [p for p in found if p not in out]
    if shutil.which("nsenter") is None:
        out.append("the nsenter command (apt-get install util-linux)")
    return [f"the CNI plugins its conflist names, of which {'; '.join(out)}"] if out else []


def host_problems(ops: Iterable[object]) -> list[str]:
    """What the plan's programs and kernel switches need that this host lacks: the nft command
    for nftables tables, each daemon's program, br_netfilter for a bridge-nf-call switch set on."""
    problems: list[str] = []
    programs: dict[str, str] = {}
    bridge_nf = False
    for op in ops:
        if isinstance(op, ApplyNft):
            programs.setdefault("nft", "nftables")
        elif isinstance(op, StartDaemon) and op.kind != "agent":   # the agent runs on podlab's interpreter
            programs.setdefault(op.argv[0], op.package)
        elif isinstance(op, SetSysctl) and op.key.startswith("net.bridge.") and op.value != "0":
            bridge_nf = True
    problems += _cni_problems([op for op in ops if isinstance(op, CniNode)])
    for program, package in programs.items():
        if shutil.which(program) is None:
            problems.append(f"the {program} command: apt-get install {package}")
    if bridge_nf and not os.path.exists("/proc/sys/net/bridge"):
        problems.append(BRIDGE_NF_ADVICE)
    return problems
