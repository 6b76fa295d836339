"""Every lab namespace's IPv4 settings are set explicitly: a lab behaves the same on a host whose
root namespace forwards and filters by reverse path (Docker, Kubernetes), whose settings new
namespaces inherit, as on a clean one. The root namespace is never touched: a host like that is
emulated by telling the writer that namespaces start that way, in a namespace of the test's own."""
from __future__ import annotations

import ctypes
import os

from lab.designs import wiring
from lab.engine import netns

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def read(key: str) -> str:
    with open("/proc/sys/" + key.replace(".", "/")) as f:
        return f.read().strip()


def in_fresh_namespace(fn):
    def work():
        assert _libc.unshare(CLONE_NEWNET) == 0, os.strerror(ctypes.get_errno())
        return fn()
    return netns.in_helper_thread(work, "test-sysctl")


def baseline() -> list[netns.Sysctl]:
    return [(k, v, False) for k, v in wiring.IPV4_BASELINE] + [(k, v, True) for k, v in wiring.NO_BRIDGE_NETFILTER]


def test_a_namespace_that_inherited_a_docker_hosts_settings_gets_the_lab_baseline():
    def work():
        # As a Docker host's namespaces start: forwarding and strict reverse-path filtering on.
        for key, value in (("net.ipv4.conf.all.forwarding", "1"), ("net.ipv4.conf.all.rp_filter", "1"),
                           ("net.ipv4.conf.default.rp_filter", "1")):
            with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                f.write(value)
        writer = netns.SysctlWriter()
        writer.shared_start = True
        writer.start = {"net.ipv4.conf.all.forwarding": "1", "net.ipv4.conf.default.forwarding": "1",
                        "net.ipv4.conf.all.rp_filter": "1", "net.ipv4.conf.default.rp_filter": "1"}
        writer.apply(baseline())
        return {k: read(k) for k, _ in wiring.IPV4_BASELINE} | {"net.ipv4.ip_forward": read("net.ipv4.ip_forward")}
    got = in_fresh_namespace(work)
    assert got["net.ipv4.ip_forward"] == "0"
    assert all(got[k] == v for k, v in wiring.IPV4_BASELINE), {k: (got[k], v) for k, v in wiring.IPV4_BASELINE
                                                                if got[k] != v}


def test_writes_that_change_nothing_are_skipped_and_ip_forward_is_the_same_setting_as_all_forwarding():
    writes: list[str] = []

    def work():
        real_open = os.open
        writer = netns.SysctlWriter()
        writer.shared_start = True

        def start(key):
            try:
                return read(key)
            except FileNotFoundError:
                return None
        differ = {"/proc/sys/" + k.replace(".", "/") for k, v, _ in baseline() if start(k) not in (v, None)}

        def spy(path, flags, *a):
            if flags & os.O_WRONLY:
                writes.append(path)
            return real_open(path, flags, *a)
        os.open = spy
        try:
            # This namespace starts with what it inherited; the baseline and then a node's forwarding.
            writer.apply(baseline() + [("net.ipv4.ip_forward", "1", False)])
        finally:
            os.open = real_open
        return read("net.ipv4.conf.all.forwarding"), read("net.ipv4.conf.default.forwarding"), differ
    all_forwarding, default_forwarding, differ = in_fresh_namespace(work)
    assert (all_forwarding, default_forwarding) == ("1", "1")
    # Exactly the settings this host's new namespaces start with otherwise, and forwarding on.
    assert sorted(writes) == sorted(differ | {"/proc/sys/net/ipv4/conf/all/forwarding"})
