"""Multipath routes and route metrics are decoded as pyroute2 decodes them, in a namespace of the test's own."""
from __future__ import annotations

import os
import subprocess

import pytest

from lab import inspect


@pytest.fixture()
def ns():
    name = f"podlab-rt-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for cmd in (["link", "add", "va", "type", "veth", "peer", "name", "vb"], ["link", "set", "va", "up"],
                    ["link", "set", "vb", "up"], ["addr", "add", "10.9.1.1/24", "dev", "va"],
                    ["addr", "add", "10.9.2.1/24", "dev", "vb"],
                    ["route", "add", "10.9.9.0/24", "nexthop", "via", "10.9.1.2", "weight", "2",
                     "nexthop", "via", "10.9.2.2"],
                    ["route", "add", "10.9.8.0/24", "via", "10.9.1.2", "metric", "77"]):
            subprocess.run(["ip", "-n", name, *cmd], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def test_multipath_and_metric_match_pyroute2(ns):
    from pyroute2 import NetNS
    routes = {r.dst: r for r in inspect.snapshot(ns).routes_in("main")}
    multi, metric = routes["10.9.9.0/24"], routes["10.9.8.0/24"]
    assert [(h["gateway"], h["dev"], h["weight"]) for h in multi.nexthops] == [("10.9.1.2", "va", 2),
                                                                              ("10.9.2.2", "vb", 1)]
    assert metric.metric == 77 and not metric.nexthops
    with NetNS(ns) as ipr:
        ref = [r for r in ipr.get_routes(family=2, dst_len=24) if r.get_attr("RTA_DST") == "10.9.9.0"][0]
        hops = [(h.get_attr("RTA_GATEWAY"), h["hops"] + 1) for h in ref.get_attr("RTA_MULTIPATH")]
        prio = [r for r in ipr.get_routes(family=2, dst_len=24) if r.get_attr("RTA_DST") == "10.9.8.0"][0]
        assert prio.get_attr("RTA_PRIORITY") == 77
    assert [(h["gateway"], h["weight"]) for h in multi.nexthops] == hops
