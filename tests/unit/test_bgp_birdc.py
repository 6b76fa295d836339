"""lab.bgp.birdc: BIRD's numbered replies, parsed from replies recorded off a real BIRD 2.0.12
(tests/unit/golden/bird/, a 3-node mesh: node 10.0.0.2 with peers .3 and .10), and the socket
conversation against a stand-in server."""
from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from lab.bgp import birdc
from lab.bgp.birdc import BirdError, Line

GOLDEN = Path(__file__).resolve().parent / "golden" / "bird"


def recorded(name: str) -> list[Line]:
    return birdc.parse_lines((GOLDEN / name).read_text())


def test_lines_carry_their_code_and_continuations_inherit_it():
    lines = birdc.parse_lines("0001 BIRD 2.0.12 ready.\n1002-a  BGP\n b  BGP\n+async message\n0000 \n")
    assert lines == [Line(1, "BIRD 2.0.12 ready."), Line(1002, "a  BGP"), Line(1002, "b  BGP"), Line(0, "")]
    with pytest.raises(BirdError, match="unexpected line"):
        birdc.parse_lines("garbage\n")


def test_a_reply_is_complete_at_a_code_followed_by_a_space():
    assert birdc.reply_complete("0001 BIRD 2.0.12 ready.\n")
    assert not birdc.reply_complete("2002-Name  Proto\n1002-kernel1 Kernel\n")
    assert not birdc.reply_complete("1002-kernel1 Kernel\n0000")      # the last line not yet whole
    assert birdc.reply_complete("1002-kernel1 Kernel\n 1006 up\n0000 \n")
    assert birdc.reply_complete("9001 syntax error\n")


def test_errors_raise_with_birds_message():
    with pytest.raises(BirdError, match="9001: syntax error, unexpected CF_SYM_UNDEFINED"):
        birdc.check(recorded("show_nonsense.txt"))


def test_show_protocols_rows():
    ps = birdc.parse_protocols(recorded("show_protocols.txt"))
    assert [(p.name, p.proto, p.table, p.state) for p in ps] == [
        ("kernel1", "Kernel", "master4", "up"), ("device1", "Device", "---", "up"),
        ("direct1", "Direct", "---", "up"), ("static1", "Static", "master4", "up"),
        ("Mesh_10_0_0_10", "BGP", "---", "up"), ("Mesh_10_0_0_3", "BGP", "---", "up")]
    bgp = ps[-1]
    assert (bgp.since, bgp.info, bgp.bgp_state, bgp.imported) == ("08:55:32", "Established", "Established", None)
    assert ps[0].bgp_state == "" and ps[0].info == ""


def test_show_protocols_all_adds_neighbour_and_route_counts():
    ps = {p.name: p for p in birdc.parse_protocols(recorded("show_protocols_all.txt"))}
    assert (ps["Mesh_10_0_0_10"].neighbor, ps["Mesh_10_0_0_10"].imported, ps["Mesh_10_0_0_10"].exported) == \
        ("10.0.0.10", 2, 1)
    assert (ps["Mesh_10_0_0_3"].imported, ps["Mesh_10_0_0_3"].exported) == (1, 1)
    assert (ps["kernel1"].imported, ps["kernel1"].exported) == (0, 4)
    assert ps["device1"].imported is None


def test_a_session_that_cannot_connect():
    # route reflector 10.0.0.2 while its client 10.0.0.10 had no BIRD yet
    ps = {p.name: p for p in birdc.parse_protocols(recorded("rr_show_protocols_all_peer_down.txt"))}
    down = ps["Node_10_0_0_10"]
    assert (down.state, down.bgp_state) == ("start", "Active")
    assert down.info == "Active        Socket: Connection refused"
    assert down.last_error == "Socket: Connection refused"
    assert ps["Node_10_0_0_3"].bgp_state == "Established"


def test_a_long_since_takes_two_fields():
    ps = birdc.parse_protocols(birdc.parse_lines(
        "1002-Mesh_10_0_0_3 BGP        ---        up     2024-01-31 10:00:00  Established   \n0000 \n"))
    assert (ps[0].since, ps[0].info) == ("2024-01-31 10:00:00", "Established")


@pytest.mark.parametrize("name", ["show_route.txt", "show_route_all.txt"])
def test_routes(name):
    rs = {r.net: r for r in birdc.parse_routes(recorded(name))}
    assert set(rs) == {"192.168.0.0/26", "192.168.0.64/26", "192.168.0.128/26", "192.168.1.0/26", "10.0.0.0/24"}
    assert (rs["192.168.0.0/26"].kind, rs["192.168.0.0/26"].proto, rs["192.168.0.0/26"].via) == \
        ("blackhole", "static1", ())
    remote = rs["192.168.0.128/26"]
    assert (remote.kind, remote.proto, remote.via, remote.dev, remote.primary) == \
        ("unicast", "Mesh_10_0_0_10", ("10.0.0.10",), "eth0", True)
    assert (rs["10.0.0.0/24"].via, rs["10.0.0.0/24"].dev) == ((), "eth0")


def test_a_second_route_of_a_net_belongs_to_that_net():
    rs = birdc.parse_routes(birdc.parse_lines(
        "1007-Table master4:\n 192.168.0.64/26      unicast [Mesh_10_0_0_3 08:55:32.979] * (100) [i]\n"
        " \tvia 10.0.0.3 on eth0\n                     unicast [Mesh_10_0_0_4 08:55:33.000] (100) [i]\n"
        " \tvia 10.0.0.4 on eth0\n0000 \n"))
    assert [(r.net, r.proto, r.primary, r.via) for r in rs] == [
        ("192.168.0.64/26", "Mesh_10_0_0_3", True, ("10.0.0.3",)),
        ("192.168.0.64/26", "Mesh_10_0_0_4", False, ("10.0.0.4",))]


class FakeBird:
    """A unix socket server that greets like BIRD and answers one command with a recording,
    written in small pieces so lines arrive split."""

    def __init__(self, path: Path, reply: str):
        self.path, self.reply, self.got = str(path), reply, b""
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(1)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            conn.sendall(b"0001 BIRD 2.0.12 ready.\n")
            while not self.got.endswith(b"\n"):
                self.got += conn.recv(100)
            data = self.reply.encode()
            for i in range(0, len(data), 7):
                conn.sendall(data[i:i + 7])

    def close(self) -> None:
        self.thread.join(timeout=5)
        self.server.close()


def test_the_socket_conversation(tmp_path):
    reply = (GOLDEN / "show_protocols_all.txt").read_text().split("\n", 1)[1]   # without the greeting
    fake = FakeBird(tmp_path / "bird.ctl", reply)
    try:
        ps = birdc.protocols(fake.path)
    finally:
        fake.close()
    assert fake.got == b"show protocols all\n"
    assert [p.name for p in ps if p.proto == "BGP"] == ["Mesh_10_0_0_10", "Mesh_10_0_0_3"]


def test_an_error_reply_and_a_missing_socket_raise(tmp_path):
    fake = FakeBird(tmp_path / "bird.ctl", "9001 syntax error, unexpected CF_SYM_UNDEFINED\n")
    try:
        with pytest.raises(BirdError, match="9001"):
            birdc.command(fake.path, "show nonsense")
    finally:
        fake.close()
    with pytest.raises(BirdError, match="control socket"):
        birdc.protocols(str(tmp_path / "absent.ctl"))
