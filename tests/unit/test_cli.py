import io

import pytest

from lab import cli


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def test_plan_needs_no_root_and_shows_capacity_and_addresses(monkeypatch):
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    code, out, err = run("plan", "l3-vpc-router")
    assert code == 0, err
    assert "65536 addresses / 128 per node block = at most 512 nodes" in out
    assert "172.16.0.0/25" in out and "172.16.0.128/25" in out
    assert "VPC router 192.168.0.1" in out


def test_plan_as_commands_prints_flannel_objects():
    code, out, _ = run("plan", "vxlan", "--as-commands")
    assert code == 0
    assert "type vxlan id 1 local 192.168.56.11 dev eth0 dstport 8472 nolearning" in out
    assert "route add 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink" in out
    assert "bridge fdb append" in out and "dst 192.168.56.12 self permanent" in out


@pytest.mark.parametrize("command", [["up"], ["down"], ["get", "pods"], ["exec", "x", "--", "true"], ["check"],
                                     ["status"]])
def test_commands_that_need_root_say_so_in_one_line(monkeypatch, command):
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    code, out, err = run(*command)
    assert code == 1
    assert err.count("\n") == 1 and "needs root" in err and f"sudo podlab {command[0]}" in err


def test_bad_topology_is_a_clear_error_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmode: vxlan\nnodes: [node1]\npods: [{name: a, node: node9, image: nginx}]\nfoo: 1\n")
    code, out, err = run("plan", str(bad))
    assert code == 1
    assert "Traceback" not in err
    assert "node9" in err and "foo" in err


def test_unknown_topology_name_lists_the_available_ones():
    code, _, err = run("plan", "no-such-design")
    assert code == 1 and "vxlan" in err and "l3-vpc-router" in err


def parsed(monkeypatch, command: str, *argv: str) -> dict:
    """What `command`'s handler receives for this command line (the handler is a stand-in)."""
    seen = {}

    def handler(args, out, err):
        seen.update(vars(args))
        return 7
    monkeypatch.setitem(cli.COMMANDS, command, handler)
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert run(*argv)[0] == 7
    return seen


def test_exec_takes_everything_after_double_dash_as_the_command(monkeypatch):
    seen = parsed(monkeypatch, "exec", "exec", "pod", "-c", "nginx", "--", "ip", "-br", "--lab", "addr")
    assert seen["argv"] == ["ip", "-br", "--lab", "addr"] and seen["container"] == "nginx" and seen["lab"] is None


def test_double_dash_ends_options_for_commands_other_than_exec(monkeypatch):
    """`podlab down -- NAME` is NAME, as with any command line (it was dropped)."""
    assert parsed(monkeypatch, "down", "down", "--", "mylab")["lab"] == "mylab"
