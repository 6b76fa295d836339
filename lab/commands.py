"""Render a plan as the equivalent ip / bridge / sysctl / nft commands, the files it writes and the
daemons' command lines: a teaching aid that shows exactly what podlab builds, and a golden file
for the unit tests. $LAB_DIR is the lab's state directory (lab.state)."""
from __future__ import annotations

import shlex
from functools import singledispatch

from lab.ops import (AddAddress, AddFdb, AddNeighbour, AddRoute, ApplyNft, CniAdd, CniNode, CreateBridge, CreateNamespace,
                     CreateVeth, CreateVxlan, DelFdb, DelNeighbour, DelRoute, LinkUp, Op, SetHairpin, SetLinkConf,
                     SetMaster, SetSysctl, SetSysctls, StartDaemon, UpdateDaemon, WriteFile)


@singledispatch
def command(op: Op) -> str:
    raise TypeError(f"no command form for {type(op).__name__}")


@command.register
def _(op: CreateNamespace) -> str:
    return f"ip netns add {op.ns}    # {op.role}; hostname {op.hostname} in its own UTS namespace"


@command.register
def _(op: SetSysctl) -> str:
    return f"ip netns exec {op.ns} sysctl -w {op.key}={op.value}"


@command.register
def _(op: SetSysctls) -> str:
    line = f"ip netns exec {op.ns} sysctl -q -w " + " ".join(f"{k}={v}" for k, v in op.settings)
    if op.if_present:   # -e: a key the kernel does not have (its module not loaded) is no error
        line += f"; ip netns exec {op.ns} sysctl -q -e -w " + " ".join(f"{k}={v}" for k, v in op.if_present)
    return line


@command.register
def _(op: CreateBridge) -> str:
    mac = f" address {op.mac}" if op.mac else ""
    return f"ip -n {op.ns} link add {op.name}{mac} mtu {op.mtu} type bridge"


@command.register
def _(op: CreateVeth) -> str:
    master = f"; ip -n {op.ns} link set {op.name} master {op.master}" if op.master else ""
    mac = f" address {op.peer_mac}" if op.peer_mac else ""
    own = f" address {op.mac}" if op.mac else ""
    return (f"ip -n {op.ns} link add {op.name}{own} mtu {op.mtu} type veth peer name {op.peer}{mac} netns {op.peer_ns}"
            f"{master}")


@command.register
def _(op: CreateVxlan) -> str:
    learning = "learning" if op.learning else "nolearning"
    return (f"ip -n {op.ns} link add {op.name} address {op.mac} mtu {op.mtu} type vxlan id {op.vni} "
            f"local {op.local} dev {op.dev} dstport {op.port} {learning}")


@command.register
def _(op: SetMaster) -> str:
    return f"ip -n {op.ns} link set {op.name} master {op.master}"


@command.register
def _(op: LinkUp) -> str:
    return f"ip -n {op.ns} link set {op.name} up"


@command.register
def _(op: SetHairpin) -> str:
    return f"ip netns exec {op.ns} bridge link set dev {op.name} hairpin on"


@command.register
def _(op: SetLinkConf) -> str:
    keys = [f"net.ipv4.conf.{op.dev}.{k}={v}" for k, v in op.conf]
    if op.proxy_delay is not None:
        keys.append(f"net.ipv4.neigh.{op.dev}.proxy_delay={op.proxy_delay}")
    return f"ip netns exec {op.ns} sysctl -q -w " + " ".join(keys)


@command.register
def _(op: AddAddress) -> str:
    return f"ip -n {op.ns} addr add {op.address} dev {op.dev}"


@command.register
def _(op: AddRoute) -> str:
    if op.blackhole:
        return f"ip -n {op.ns} route add blackhole {op.dst}" + (f" proto {op.proto}" if op.proto else "")
    dst = "default" if op.dst.prefixlen == 0 else str(op.dst)
    parts = [f"ip -n {op.ns} route add {dst}"]
    if op.via:
        parts.append(f"via {op.via}")
    if op.dev:
        parts.append(f"dev {op.dev}")
    if op.scope:
        parts.append(f"scope {op.scope}")
    if op.src:
        parts.append(f"src {op.src}")
    if op.onlink:
        parts.append("onlink")
    return " ".join(parts)


@command.register
def _(op: DelRoute) -> str:
    via = f" via {op.via}" if op.via else ""
    dev = f" dev {op.dev}" if op.dev else ""
    return f"ip -n {op.ns} route del {op.dst}{via}{dev}"


@command.register
def _(op: AddNeighbour) -> str:
    return f"ip -n {op.ns} neigh add {op.address} lladdr {op.mac} dev {op.dev} nud permanent"


@command.register
def _(op: DelNeighbour) -> str:
    return f"ip -n {op.ns} neigh del {op.address} dev {op.dev}"


@command.register
def _(op: AddFdb) -> str:
    return f"ip netns exec {op.ns} bridge fdb append {op.mac} dev {op.dev} dst {op.dst} self permanent"


@command.register
def _(op: DelFdb) -> str:
    return f"ip netns exec {op.ns} bridge fdb del {op.mac} dev {op.dev} dst {op.dst} self"


@command.register
def _(op: ApplyNft) -> str:
    return f"ip netns exec {op.ns} nft -f - <<'EOF'\n{op.ruleset.rstrip()}\nEOF"


@command.register
def _(op: WriteFile) -> str:
    if not op.show:
        return f"# {op.path}: {op.what}"
    return f"cat > {op.path} <<'EOF'    # {op.what}\n{op.content.rstrip()}\nEOF"


@command.register
def _(op: StartDaemon) -> str:
    argv = " ".join(shlex.quote(a) if "$LAB_DIR" not in a else a for a in op.argv)
    if op.kind == "container":
        return f"ip netns exec {op.ns} {argv} &    # container {op.container}, started by the workload agent"
    if op.kind == "process":
        return f"ip netns exec {op.ns} {argv} &    # {op.name}, started once the network is set up"
    return f"{argv} &    # the workload agent: it serves every pod's containers"


@command.register
def _(op: UpdateDaemon) -> str:
    d = op.daemon
    if op.reconfigure and d.control and d.reconfigure:
        return (f"birdc -s {d.control} {d.reconfigure}    # {d.name} in {d.ns} reads its new configuration; "
                "sessions whose configuration did not change stay up")
    return f"# {d.name} in {d.ns}: running; its configuration is unchanged, what it learns changes"


@command.register
def _(op: CniNode) -> str:
    return (f"# node {op.node} runs its plugins (from {':'.join(op.cni_path)}) in its network namespace {op.ns} and a "
            f"mount namespace of its own, $LAB_DIR/cni/mnt/{op.node},\n# whose /run and /var/lib are "
            f"$LAB_DIR/cni/nodes/{op.node}/run and var-lib; its network list, as containerd writes it to "
            f"/etc/cni/net.d:\ncat > $LAB_DIR/cni/nodes/{op.node}/conflist.json <<'EOF'\n{op.config.rstrip()}\nEOF"
            + (f"\n# and flanneld's subnet file, for the flannel plugin:\ncat > $LAB_DIR/cni/nodes/{op.node}/run/flannel/"
               f"subnet.env <<'EOF'\n{op.flannel_env.rstrip()}\nEOF" if op.flannel_env else ""))


@command.register
def _(op: CniAdd) -> str:
    env = (f"CNI_COMMAND=ADD CNI_CONTAINERID={op.container_id} CNI_NETNS=/run/netns/{op.ns} CNI_IFNAME={op.ifname} "
           f"CNI_ARGS={shlex.quote(';'.join(f'{k}={v}' for k, v in op.args))} CNI_PATH={':'.join(op.cni_path)}")
    return (f"# pod {op.pod}: ADD of each plugin of {op.node}'s list in order, stdin its configuration with prevResult "
            f"and runtimeConfig from {shlex.quote(op.capability_args)}; the result cached in "
            f"/var/lib/cni/results/{op.network}-{op.container_id}-{op.ifname}\n"
            f"{env} nsenter --net=/run/netns/{op.node_ns} --mount=$LAB_DIR/cni/mnt/{op.node} -- PLUGIN < STDIN")


def render(ops: list[Op] | tuple[Op, ...]) -> list[str]:
    return [command(op) for op in ops]
