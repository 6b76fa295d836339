"""The course, for real: every exercise both ways, the CLI's check output, and the graders' helpers.

For each exercise: start (its lab comes up broken) -> the grader fails with at least one
readable check -> the reference solution -> the grader passes -> reset leaves nothing behind.
Labs get a unique prefix and the progress and workspace live in a temporary directory, so a
student's own exercise labs are never touched.
"""
from __future__ import annotations

import io
import secrets
import subprocess
import time
from pathlib import Path

import pytest
from labcheck import assert_no_residue, diff_root_state, root_netns_state

from lab import api, cli, planner, state
from lab.course import cli as course_cli
from lab.course.runner import Course
from lab.grading.helpers import Grader

ROOT = Path(__file__).resolve().parents[2]

# What the failing grader must say about the break, in a student's words.
SAYS = {
    "01": "no answer yet for 'ip' (the IP address of pod ticket)",
    "02": "no answer yet for 'token'",
    "03": "is not attached to any bridge: it must be a port of",
    "04": "node2 sends 10.244.0.0/24, node1's pod block via 192.168.56.1 (route default), but it should go via "
          "192.168.56.11 (node1)",
    "05": "the VPC router has no route to 172.16.0.128/25, node2's pod block",
    "06": "node1's flannel.1 has no FDB entry for",
    "07": "pod web's eth0 has MTU 1500, but node1's flannel.1 carries at most 1450 bytes",
    "08": "node2 does not forward packets (net.ipv4.ip_forward = 0)",
    "09": "outside host ecs has no route to 172.16.0.0/25, node1's pod block",
    "10": "the specification asks for 3",
    "11": "node2's kube-proxy map service-ips has no element for 10.96.0.2 . tcp . 80",
    "12": "to the kube-dns Service (10.96.0.10, 53/UDP) got no answer",
    "13": "henry003's BIRD runs with local as 64513, but the cluster's AS is 64512",
    "14": "proxy_arp is off on cali12d4a061371 (pod busybox's host end on henry002): the pod's ARP for 169.254.1.1 "
          "gets no answer",
    "15": "sends to 10.244.0.1 on eth0, but no machine in the lab has that address",
}


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    before = root_netns_state()
    base = tmp_path_factory.mktemp("course")
    c = Course(exercises_dir=ROOT / "exercises", state_dir=base / "state", workspace_root=base / "ws",
               lab_prefix=f"x{secrets.token_hex(2)}")
    yield c
    for ex in c.exercises():           # whatever a failed test left
        c.reset(ex)
    assert root_netns_state() == before, diff_root_state(before, root_netns_state())


def namespaces_of(lab: str) -> list[str]:
    return [op.ns for op in api.Lab(lab).plan.ops if hasattr(op, "hostname")]


def curl(lab: str, src: str, url: str, max_time: int = 3) -> subprocess.CompletedProcess:
    t = api.Lab(lab).target(src)
    return subprocess.run(["ip", "netns", "exec", t.netns, "curl", "-sS", "-o", "/dev/null", "-w", "%{size_download}",
                           "--max-time", str(max_time), url], capture_output=True, text=True, timeout=max_time + 10)


def mtu_break_really_breaks(lab: str) -> None:
    """Exercise 07's premise, checked with curl itself: small answers pass, a large one hangs."""
    web = api.Lab(lab).target("web").ip
    small = curl(lab, "client", f"http://{web}/large?bytes=1000")
    assert small.returncode == 0 and small.stdout == "1000", small
    large = curl(lab, "client", f"http://{web}/large?bytes=1000000")
    assert large.returncode == 28, f"the large GET should time out (curl exit 28), got {large}"


def mtu_fix_really_fixes(lab: str) -> None:
    web = api.Lab(lab).target("web").ip
    large = curl(lab, "client", f"http://{web}/large?bytes=1000000")
    assert large.returncode == 0 and large.stdout == "1000000", large


def on_node(lab: str, node: str, image: str) -> str:
    return next(p.name for p in api.Lab(lab).addresses.pods if p.node == node and p.name.startswith(image))


def service_break_really_breaks(lab: str) -> None:
    """Exercise 11's premise, checked with curl: the ClusterIP hangs from node2's client, answers on node1."""
    assert curl(lab, "client", "http://10.96.0.2/clientip").returncode == 28
    for _ in range(3):   # a healthy node answers; tolerate one slow try on a busy host
        ok = curl(lab, on_node(lab, "node1", "echo-"), "http://10.96.0.2/clientip")
        if ok.returncode == 0:
            break
    assert ok.returncode == 0 and int(ok.stdout) > 0, ok


def service_fix_really_fixes(lab: str) -> None:
    ok = curl(lab, "client", "http://10.96.0.2/clientip")
    assert ok.returncode == 0 and int(ok.stdout) > 0, ok


def dns_break_really_breaks(lab: str) -> None:
    """Exercise 12's premise, with podlab curl (the pod's own resolver): by name fails, by address answers."""
    code, out, err = run_cli("curl", "--lab", lab, "client", "web")
    assert code != 0 and "resolv" in (out + err).lower(), (code, out, err)   # timed out, or could not resolve
    code, out, err = run_cli("curl", "--lab", lab, "client", "10.96.0.2")
    assert code == 0 and "Welcome to the home page of host web-" in out, (code, out, err)
    code, out, err = run_cli("curl", "--lab", lab, on_node(lab, "node1", "web-"), "web")
    assert code == 0 and "Welcome to the home page of host web-" in out, (code, out, err)


def dns_fix_really_fixes(lab: str) -> None:
    code, out, err = run_cli("curl", "--lab", lab, "client", "web")
    assert code == 0 and "Welcome to the home page of host web-" in out, (code, out, err)


def bgp_break_really_breaks(lab: str) -> None:
    """Exercise 13's premise, as a student sees it: BIRD refuses henry003's sessions, and a pod on
    henry002 cannot ping one on henry003."""
    for _ in range(40):        # BIRD rereads its configuration, restarts the sessions, and is refused
        code, out, err = run_cli("bgp", "--lab", lab)
        if "Bad peer AS" in out:
            break
        time.sleep(0.25)
    assert "Bad peer AS" in out, (code, out, err)
    code, out, err = run_cli("ping", "--lab", lab, "-c", "1", "nginx-pod", "busybox")
    assert code != 0, (code, out, err)
    code, out, err = run_cli("ping", "--lab", lab, "-c", "1", "busybox", "api")    # henry003's own pods
    assert code == 0, (code, out, err)


def proxy_arp_break_really_breaks(lab: str) -> None:
    """Exercise 14's premise, with ping: busybox reaches not even the pod next to it; nginx-pod does."""
    code, out, err = run_cli("ping", "--lab", lab, "-c", "1", "busybox", "nginx-pod")
    assert code != 0, (code, out, err)
    code, out, err = run_cli("ping", "--lab", lab, "-c", "1", "nginx-pod", "web")
    assert code == 0, (code, out, err)


def bgp_fix_really_fixes(lab: str) -> None:
    code, out, err = run_cli("ping", "--lab", lab, "-c", "1", "nginx-pod", "busybox")
    assert code == 0, (code, out, err)


BROKEN = {"07": mtu_break_really_breaks, "11": service_break_really_breaks, "12": dns_break_really_breaks,
          "13": bgp_break_really_breaks, "14": proxy_arp_break_really_breaks}
FIXED = {"07": mtu_fix_really_fixes, "11": service_fix_really_fixes, "12": dns_fix_really_fixes,
         "13": bgp_fix_really_fixes}


@pytest.mark.parametrize("ex_id", [f"{i:02d}" for i in range(1, 16)])
def test_exercise_fails_broken_and_passes_solved(course, ex_id):
    ex = course.find(ex_id)
    course.start(ex)
    lab = course.lab_name(ex)
    names = namespaces_of(lab) if ex.topology else []
    try:
        if ex_id in BROKEN:
            BROKEN[ex_id](lab)
        broken = course.check(ex)
        failed = [c for c in broken.checks if not c.passed]
        assert failed, course_cli.format_result(broken)
        for c in failed:
            assert c.message and "grader itself failed" not in c.message and "Traceback" not in c.message, c
        assert any(SAYS[ex_id] in c.message for c in failed), course_cli.format_result(broken)
        assert course.status(ex) == "in progress"

        course.apply_solution(ex)
        fixed = course.check(ex)
        assert fixed.passed, course_cli.format_result(fixed) + "\n" + fixed.output[-2000:]
        assert course.status(ex) == "passed"
        if ex_id in FIXED:
            FIXED[ex_id](lab)
        if not ex.topology:            # the design exercise: its grader took its own lab down again
            design = api.load_topology(str(course.workspace(ex) / "design.yaml"), lab)
            names = [op.ns for op in planner.build(design).ops if hasattr(op, "hostname")]
            assert not state.lab_dir(lab).exists()
    finally:
        course.reset(ex)
    assert course.status(ex) == "not started"
    assert_no_residue(lab, names)


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return cli.main(list(argv), out, err), out.getvalue(), err.getvalue()


def test_cli_check_says_what_is_wrong_then_passes(course, monkeypatch):
    monkeypatch.setattr(course_cli, "course_factory", lambda: course)
    code, out, err = run_cli("exercise", "start", "08")
    assert code == 0, err
    assert "# 08 — A node that stopped forwarding" in out and "sudo podlab exercise check 08" in out
    lab = course.lab_name(course.find("08"))
    names = namespaces_of(lab)
    try:
        code, out, err = run_cli("exercise", "start", "08")
        assert code == 1 and "already running" in err

        code, out, _ = run_cli("exercise", "check")        # the exercise in progress
        assert code == 1
        lines = out.splitlines()
        assert lines[0] == f"exercise 08: A node that stopped forwarding (lab {lab})"
        assert "  ✗ every node forwards packets (net.ipv4.ip_forward = 1)" in lines
        assert ("      node2 does not forward packets (net.ipv4.ip_forward = 0): packets from pods to other nodes, "
                "and answers to them, stop there") in lines
        assert "  ✗ every pod reaches every other pod, on its node and across nodes (ping and HTTP, no NAT)" in lines
        assert any(line.strip().startswith("why: node2 does not forward packets") for line in lines)
        assert lines[-1].startswith("0 of 2 checks pass.")

        code, out, _ = run_cli("exercise", "hint", "08")
        assert code == 0 and out.startswith("→ hint 1/3: ")

        code, out, _ = run_cli("exercise", "solution", "08", "--apply")
        assert code == 0 and "sysctl -q -w net.ipv4.ip_forward=1" in out

        code, out, _ = run_cli("exercise", "check", "08")
        assert code == 0, out
        assert "  ✓ every node forwards packets (net.ipv4.ip_forward = 1)" in out
        assert "all 2 checks pass — exercise 08 is done." in out

        code, out, _ = run_cli("exercise", "list")
        assert any(line.startswith("08 ") and line.rstrip().endswith("passed") for line in out.splitlines())
    finally:
        code, out, _ = run_cli("exercise", "reset", "08")
    assert code == 0 and "exercise 08 reset" in out
    assert_no_residue(lab, names)


def test_answer_command_records_what_the_grader_checks(course, monkeypatch):
    monkeypatch.setattr(course_cli, "course_factory", lambda: course)
    ex = course.find("01")
    course.start(ex)
    lab = course.lab_name(ex)
    names = namespaces_of(lab)
    try:
        ip = str(api.Lab(lab).target("ticket").ip)
        code, out, _ = run_cli("exercise", "answer", "01", "ip=10.9.9.9", "ticket=nope")
        assert code == 0 and "recorded ip = 10.9.9.9" in out
        result = course.check(ex)
        messages = {c.title: c.message for c in result.checks}
        assert "10.9.9.9 is not pod ticket's address" in messages["you found the IP address of pod ticket"]
        assert "'nope' is not what ticket's page says" in messages["you fetched pod ticket's page by its IP address"]
        code, _, _ = run_cli("exercise", "answer", "01", f"ip={ip}")
        assert code == 0
        result = course.check(ex)
        assert [c.passed for c in result.checks] == [True, False]
    finally:
        course.reset(ex)
    assert_no_residue(lab, names)


# ---------------------------------------------------------------- the helpers, on a real lab

HELPER_LAB = """
mode: vxlan
nodes: [node1, node2]
pods:
  - {name: web, node: node1, image: nginx}
  - {name: echo, node: node2, image: echoserver}
  - {name: client, node: node2, image: netshoot}
"""


@pytest.fixture(scope="module")
def grader(lab_from_yaml):
    return Grader(lab_from_yaml(HELPER_LAB, prefix="grd"))


def test_traffic_helpers(grader):
    client_ip = str(grader.target("client").ip)
    r = grader.ping("client", "web")
    assert r.ok and r.seen_source == client_ip and not r.nat
    assert r.message == f"pod client on node2 reaches {grader.target('web').ip} (pod web on node1) over ICMP"
    assert all(x.ok for x in grader.reach("client", "web")) and len(grader.reach("client", "web")) == 2
    page = grader.http("client", "web")
    assert page.ok and page.status == 200 and "Welcome to the home page of host web!" in page.text
    big = grader.http("client", "web", "/large?bytes=200000", timeout=3)
    assert big.ok and len(big.body) == 200000
    assert grader.tcp("client", "web", 80).ok
    refused = grader.tcp("client", "web", 81)
    assert not refused.ok and refused.error == "connection refused"
    assert grader.seen_source("client", "echo") == client_ip
    assert grader.seen_source("web", "echo") == str(grader.target("web").ip)   # across nodes, no NAT
    assert grader.ping("client", "web", size=1400).ok
    too_big = grader.ping("client", "web", size=1472)                         # 1500 bytes > the pod MTU 1450
    assert not too_big.ok and "1450" in too_big.error
    assert grader.run("web", ["hostname"]).stdout.strip() == "web"
    trace = grader.trace("client", "web")       # lab.packets' tool, when installed
    assert trace is None or trace.verdict == "delivered"


def test_kernel_state_helpers(grader):
    a = grader.addresses
    node2 = a.node("node2")
    assert grader.sysctl("node1", "net.ipv4.ip_forward") == "1"
    assert grader.sysctl("node1", "net.ipv4.no.such.key") is None
    assert grader.ip_of("web") == str(a.pod("web").ip)
    assert 80 in grader.listening("web") and 8080 in grader.listening("echo")
    assert grader.mtu("node1", "flannel.1") == 1450
    neigh = [n for n in grader.neighbours("node1", "flannel.1") if n.address == str(node2.block.network_address)]
    assert neigh and neigh[0].mac == grader.link("node2", "flannel.1").mac and "PERMANENT" in neigh[0].state
    assert [f.dst for f in grader.fdb("node1", "flannel.1") if f.mac == neigh[0].mac] == [str(node2.ip)]
    route = grader.expect_route("node1", str(node2.block), via=str(node2.block.network_address), dev="flannel.1")
    assert route.onlink
    with pytest.raises(AssertionError, match=r"node1 sends 10\.244\.1\.0/24, node2's pod block via 10\.244\.1\.0 "
                                             r"\(route 10\.244\.1\.0/24\), but it should go via 192\.168\.56\.12"):
        grader.expect_route("node1", str(node2.block), via="node2")
    world = grader.world()
    assert set(world.names.values()) >= {"node1", "node2", "pod web", "pod echo", "pod client", "the underlay switch"}
    assert grader.diagnose("client", "web") is None


def test_failures_are_explained(grader):
    node1 = grader.target("node1")
    block = str(grader.addresses.node("node2").block)
    vtep = str(grader.addresses.node("node2").block.network_address)
    subprocess.run(["ip", "-n", node1.netns, "route", "del", block], check=True)
    # and the default route every node has for kube-proxy, which would take the packets elsewhere
    subprocess.run(["ip", "-n", node1.netns, "route", "del", "default"], check=True)
    try:
        grader.refresh()
        with pytest.raises(AssertionError) as e:
            grader.expect_reach("web", "client")
        assert str(e.value) == (f"pod web on node1 cannot reach {grader.target('client').ip} (pod client on node2) "
                                f"over ICMP (network unreachable (from {grader.addresses.node('node1').gateway})): "
                                f"node1 has no route to 10.244.1.0/24, node2's pod block")
        with pytest.raises(AssertionError) as e:
            grader.expect_pods_reach_each_other()
        text = str(e.value)
        # 4 pods (the cluster DNS pod on node1 too): 12 pings, HTTP only to web and echo (6)
        assert text.startswith("12 of 18 paths between pods fail:"), text
        assert "why: node1 has no route to 10.244.1.0/24, node2's pod block" in text
        assert "why: the answer cannot come back: node1 has no route to 10.244.1.0/24" in text
        with pytest.raises(AssertionError, match="node1 has no route to 10.244.1.0/24, node2's pod block"):
            grader.expect_route("node1", block)
    finally:
        subprocess.run(["ip", "-n", node1.netns, "route", "add", block, "via", vtep, "dev", "flannel.1", "onlink"],
                       check=True)
        subprocess.run(["ip", "-n", node1.netns, "route", "add", "default", "via", "192.168.56.1"], check=True)
    grader.refresh()
    grader.expect_pods_reach_each_other()
