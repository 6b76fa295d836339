"""Labs side by side, and podlab commands racing each other.

- Two labs with the same pod CIDR and node subnet run at once, both pass `check`, and no
  packet crosses between them: traffic marked with a unique token, sent from every pod of one
  lab to every address of the design, is seen by packet sockets in that lab's namespaces and
  by none in the other lab's namespaces or in the root namespace.
- Two (or three) `up` of one lab at once: exactly one wins; the others get a one-line message.
- `down` or `clean` while `up` runs: either it is told the lab is busy and the lab comes up
  whole, or it ran before or after `up` and its result is whole too; never half a lab.
"""
from __future__ import annotations

import random
import secrets
import socket
import time

import pytest
from labcheck import diff_root_state, root_netns_state
from reliab import Design, podlab, residue, root, run, start  # noqa: F401  (root is a fixture)

from lab import api
from lab.engine import netns

TWIN = """\
mode: vxlan
nodes: [node1, node2]
pods:
  - {{name: client, node: node1, image: busybox}}
deployments:
  - {{name: web, replicas: 2, image: nginx}}
"""
ETH_P_ALL = 0x0003
FIGURES: dict[str, int] = {}


def sniffers(names: list[str]) -> list[socket.socket]:
    """A packet socket on every interface of each namespace (None: the root namespace)."""
    socks = []
    for name in names:
        make = lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))  # noqa: E731
        s = make() if name is None else netns.run_in(name, make)
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        socks.append(s)
    return socks


def seen(socks: list[socket.socket], token: bytes) -> int:
    hits = 0
    for s in socks:
        while True:
            try:
                frame = s.recv(65535)
            except BlockingIOError:
                break
            hits += token in frame
        s.close()
    return hits


def send_marked(lab: api.Lab, token: bytes) -> list[str]:
    """From every pod of `lab`, UDP datagrams carrying `token` to every pod and node address of
    the design, and an HTTP GET /<token> to every web pod; returns the pages served."""
    addresses = [str(t.ip) for t in lab.targets().values() if t.ip is not None]
    pages = []
    for pod in lab.addresses.pods:
        udp = netns.socket_in(pod.netns, socket.AF_INET, socket.SOCK_DGRAM)
        for ip in addresses:
            udp.sendto(token, (ip, 9))
        udp.close()
        for web in (p for p in lab.addresses.pods if p.name.startswith("web-")):
            tcp = netns.socket_in(pod.netns, socket.AF_INET, socket.SOCK_STREAM)
            tcp.settimeout(5)
            tcp.connect((str(web.ip), 80))
            tcp.sendall(b"GET /" + token + b" HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := tcp.recv(65536):
                data += chunk
            tcp.close()
            pages.append(data.decode(errors="replace"))
    return pages


def test_two_labs_with_the_same_pod_cidr_are_isolated(root, tmp_path):
    before = root_netns_state()
    a = Design.write(tmp_path, "twina", TWIN)
    b = Design.write(tmp_path, "twinb", TWIN)
    try:
        assert podlab("up", str(a.path), "--name", a.name)[0] == 0
        assert podlab("up", str(b.path), "--name", b.name)[0] == 0
        lab_a, lab_b = api.Lab(a.name), api.Lab(b.name)
        assert lab_a.topology.pod_cidr == lab_b.topology.pod_cidr
        assert [p.ip for p in lab_a.addresses.pods] == [p.ip for p in lab_b.addresses.pods]
        for lab in (a, b):
            code, out, err = podlab("check", "--lab", lab.name)
            assert code == 0, out + err
        sent = 0
        for sender, other in ((lab_a, lab_b), (lab_b, lab_a)):
            token = f"podlab-isolation-{secrets.token_hex(8)}".encode()
            own = sniffers([p.netns for p in sender.addresses.pods] + [n.netns for n in sender.addresses.nodes])
            foreign = sniffers(sorted({t.netns for t in other.targets().values()}) + [None])   # None: the host
            pages = send_marked(sender, token)
            time.sleep(0.3)
            assert seen(foreign, token) == 0, f"a packet of lab {sender.name} reached lab {other.name} or the host"
            assert seen(own, token) > 0, "the sniffers saw nothing at all: the test cannot prove isolation"
            web = {p.name for p in sender.addresses.pods if p.name.startswith("web-")}
            assert pages and all(any(f"host {w}!" in page for w in web) for page in pages), pages[:2]
            sent += len(pages)
        FIGURES["isolation_http_requests"] = sent
    finally:
        for d in (a, b):
            if (root / d.name).exists():
                api.down(d.name)
    assert not residue(a, root) and not residue(b, root)
    after = root_netns_state()
    assert after == before, diff_root_state(before, after)


def test_racing_ups_of_one_lab_one_wins(root, tmp_path):
    d = Design.write(tmp_path, "race", TWIN)
    rounds, contenders = 0, 0
    for n in (2, 2, 3, 2):
        procs = [start(["up", str(d.path), "--name", d.name], root) for _ in range(n)]
        results = [(p.wait(timeout=60), p.stdout.read(), p.stderr.read()) for p in procs]
        for p in procs:
            p.stdout.close()
            p.stderr.close()
        winners = [r for r in results if r[0] == 0]
        losers = [r for r in results if r[0] != 0]
        assert len(winners) == 1, results
        for code, out, err in losers:
            assert code == 1 and len(err.strip().splitlines()) == 1, err
            assert "is busy" in err or "is already up" in err, err
        assert (root / d.name / "lab.json").exists()
        assert run(["down", d.name], root).returncode == 0
        assert not residue(d, root)
        rounds += 1
        contenders += n
    FIGURES["racing_up_rounds"] = rounds
    FIGURES["racing_up_processes"] = contenders


@pytest.mark.parametrize("rival", ["down", "clean"])
def test_down_or_clean_during_up_is_safe(root, tmp_path, rival):
    d = Design.write(tmp_path, f"dur{rival[0]}", TWIN)
    rng = random.Random(rival)
    outcomes: dict[str, int] = {}
    for i in range(6):
        up = start(["up", str(d.path), "--name", d.name], root)
        time.sleep(rng.uniform(0.15, 0.6))   # the rival runs in this process: no start-up time of its own
        code, out, err = podlab(rival, d.name) if rival == "down" else podlab(rival)
        up_code = up.wait(timeout=60)
        up.stdout.close()
        up.stderr.close()
        if rival == "down":
            outcome = ("busy" if "is busy" in err else "not up yet" if "is not up" in err
                       else "after up" if code == 0 else err)
        else:
            outcome = "skipped busy" if "skipped" in out else "left alone" if "left alone" in out else "idle"
        assert outcome in ("busy", "not up yet", "after up", "skipped busy", "left alone", "idle"), outcome
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        # Whatever the order, the lab is either whole or entirely gone: never half.
        if (root / d.name).exists():
            assert up_code == 0 and (root / d.name / "lab.json").exists()
            assert all(netns.exists(n) for n in d.netns)
            assert run(["down", d.name], root).returncode == 0
        else:
            assert outcome == "after up"
        assert not residue(d, root)
    FIGURES[f"{rival}_during_up_rounds"] = sum(outcomes.values())
    print(f"\n{rival} during up: {outcomes}")


@pytest.fixture(scope="module", autouse=True)
def figures():
    """Printed once the module's tests are done (seen with -s): how much they tried. Not a test:
    it could not fail."""
    yield
    print(f"\nconcurrency figures: {FIGURES}")
