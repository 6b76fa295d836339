"""The course without root: the exercises as data, steps and placeholders, progress, the CLI's
plain answers, and the grader report's messages."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lab import api, cli, planner
from lab.course import catalog, steps
from lab.course import cli as course_cli
from lab.course.progress import IN_PROGRESS, NOT_STARTED, Progress
from lab.course.runner import Check, CheckResult, Course, ExerciseContext
from lab.errors import PodlabError
from lab.grading.helpers import Reach, summarize

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- the course as shipped

def test_the_course_has_fifteen_ordered_exercises_that_all_load():
    exercises = catalog.discover(ROOT / "exercises")
    assert [e.id for e in exercises] == [f"{i:02d}" for i in range(1, 16)]
    for ex in exercises:
        assert ex.title and ex.level in catalog.LEVELS
        assert ex.graders(), ex.folder
        assert (ex.dir / "README.md").is_file(), ex.folder
        assert ex.solution, f"{ex.folder} has no reference solution"
        assert ex.hints, f"{ex.folder} has no hints"
        if ex.topology is not None:
            plan = planner.build(api.load_topology(str(ex.topology), f"ex{ex.id}"))   # the design is valid
            ctx = steps.Context(f"ex{ex.id}", plan, Path("/tmp/ws"))
            for step in (*ex.break_steps, *ex.solution):
                assert steps.render(step, ctx)                            # every placeholder resolves


@pytest.mark.parametrize("ex_id", ["11", "12"])
def test_service_solutions_restore_exactly_what_kube_proxy_writes(ex_id):
    """Exercises 11 and 12 delete one element of kube-proxy's service-ips map and put it back: the
    element the solution adds is, word for word, one that the lab's rendered table holds."""
    from lab.services import endpoints, nft
    ex = catalog.find(ex_id, catalog.discover(ROOT / "exercises"))
    plan = planner.build(api.load_topology(str(ex.topology), f"ex{ex.id}"))
    table = nft.kube_proxy(endpoints.plan(plan.topology, plan.addresses), plan.topology.pod_cidr)
    (broke,), (fixed,) = ex.break_steps, ex.solution
    assert broke.argv[:5] == ("nft", "delete", "element", "ip", "kube-proxy")
    assert fixed.argv[:5] == ("nft", "add", "element", "ip", "kube-proxy")
    element = fixed.argv[-1].strip("{} ")
    assert element.partition(" : ")[0] == broke.argv[-1].strip("{} ")
    assert element in table, f"{element!r} is not in the table podlab renders for {ex.folder}"


def test_exercises_are_found_by_number_folder_or_name():
    exercises = catalog.discover(ROOT / "exercises")
    assert catalog.find("4", exercises).slug == "host-routes"
    assert catalog.find("04", exercises).id == "04"
    assert catalog.find("04-host-routes", exercises).id == "04"
    assert catalog.find("host-routes", exercises).id == "04"
    with pytest.raises(PodlabError, match="no exercise '99'"):
        catalog.find("99", exercises)


def _exercise(tmp_path: Path, meta: str, grader: bool = True, name: str = "01-demo") -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "exercise.yaml").write_text(textwrap.dedent(meta))
    (d / "topology.yaml").write_text("nodes: [node1]\npods: [{name: web, node: node1, image: nginx}]\n")
    if grader:
        (d / "test_demo.py").write_text("def test_x():\n    pass\n")
    return d


def test_a_broken_exercise_lists_every_problem(tmp_path):
    d = _exercise(tmp_path, """
        title: Demo
        level: expert
        colour: blue
        hints: [""]
        answers: {IP: 3}
        break:
          - [node1]
          - {write: ../escape, text: x}
          - {answer: nope, value: x}
          - [node1, ip, route, del, "{blok:node1}"]
          - [node1, ip, route, del, "{block}"]
          - 42
    """, grader=False)
    with pytest.raises(PodlabError) as e:
        catalog.load(d)
    text = str(e.value)
    for phrase in ("colour: unknown key", "level: 'expert'", "hints: each hint", "answers.IP",
                   "break[0]: a command is a list", "break[1]: '../escape' must be a plain file name",
                   "break[2]: answer 'nope'", "unknown placeholder {blok:node1}", "{block:NAME} needs",
                   "break[5]: a step is", "no grader"):
        assert phrase in text, phrase


def test_an_exercise_without_a_lab_cannot_run_commands(tmp_path):
    d = _exercise(tmp_path, """
        title: Demo
        level: beginner
        topology: null
        solution:
          - [node1, ip, link]
    """)
    with pytest.raises(PodlabError, match="this exercise has no topology"):
        catalog.load(d)


def test_bad_yaml_is_a_clear_error(tmp_path):
    d = tmp_path / "01-demo"
    d.mkdir()
    (d / "exercise.yaml").write_text("title: [unclosed\n")
    with pytest.raises(PodlabError, match="not valid YAML"):
        catalog.load(d)
    with pytest.raises(PodlabError, match="NN-slug"):
        catalog.load(tmp_path)


# ---------------------------------------------------------------- steps and placeholders

def _plan(text: str, name: str = "demo"):
    from lab import topology
    return planner.build(topology.loads(text, default_name=name))


def test_placeholders_name_the_labs_own_objects():
    plan = _plan("mode: vxlan\nnodes: [node1, node2]\npods: [{name: web, node: node2, image: nginx}]\n"
                 "outside: [ecs]\n")
    ctx = steps.Context("demo", plan, Path("/ws"))
    a = plan.addresses
    assert steps.expand("{block:node2} via {ip:node2}", ctx) == f"{a.nodes[1].block} via {a.nodes[1].ip}"
    assert steps.expand("{ip:web} {veth:web} {gateway:node2}", ctx) == \
        f"{a.pods[0].ip} {a.pods[0].veth} {a.nodes[1].gateway}"
    assert steps.expand("{vtep:node1} {vtepmac:node1}", ctx) == f"{a.nodes[0].block.network_address} {a.nodes[0].vtep_mac}"
    assert steps.expand("{podmtu} {mtu} {bridge} {lab} {workspace} {ip:ecs}", ctx) == \
        f"1450 1500 cni0 demo /ws {a.outside[0].ip}"
    assert steps.expand("{ type filter hook output priority 0; }", ctx) == "{ type filter hook output priority 0; }"
    with pytest.raises(PodlabError, match="no node 'node9'"):
        steps.expand("{block:node9}", ctx)
    with pytest.raises(PodlabError, match="no pod, node or host named 'nobody'"):
        steps.expand("{ip:nobody}", ctx)


def test_bird_placeholders_name_a_calico_nodes_files_in_the_labs_state_directory():
    from lab import state
    plan = _plan("design: calico\nnodes: [henry001, henry002]\n")
    ctx = steps.Context("demo", plan, Path("/ws"))
    assert steps.expand("{birdconf:henry002} {birdctl:henry002}", ctx) == \
        f"{state.lab_dir('demo')}/bird/henry002.conf {state.lab_dir('demo')}/bird/henry002.ctl"
    flannel = steps.Context("demo", _plan("mode: vxlan\nnodes: [node1]\n"), Path("/ws"))
    with pytest.raises(PodlabError, match="runs no BIRD on node1"):
        steps.expand("{birdctl:node1}", flannel)


def test_capacity_placeholder_is_seed_000s_arithmetic():
    plan = _plan("mode: l3\nrouting: gateway\nnetwork: {podCIDR: 172.16.0.0/16, nodeCIDRMaskSize: 25}\n"
                 "nodes: [node1]\n")
    assert steps.expand("{max_nodes}", steps.Context("d", plan, Path("/ws"))) == "512"


def test_steps_render_as_commands_a_person_types():
    plan = _plan("mode: l3\nnodes: [node1, node2]\n")
    ctx = steps.Context("demo", plan, Path("/ws"))
    problems: list[str] = []
    parsed = steps.parse([["node2", "ip", "route", "add", "{block:node1}", "via", "{ip:node1}"],
                          {"write": "capacity.txt", "text": "{max_nodes}\n"},
                          {"answer": "ip", "value": "{ip:node1}"},
                          {"answer": "code", "run": ["node1", "curl", "-s", "http://x/"]}], "solution", problems,
                         {"ip", "code"})
    assert not problems
    lines = [steps.render(s, ctx) for s in parsed]
    assert lines[0] == "sudo podlab exec node2 -- ip route add 10.244.0.0/24 via 192.168.56.11"
    assert lines[1] == "write into /ws/capacity.txt: 256"
    assert lines[2] == "sudo podlab exercise answer ID ip=192.168.56.11"
    assert lines[3].startswith("sudo podlab exec node1 -- curl -s http://x/\n    then: sudo podlab exercise answer")


def test_write_and_answer_steps_apply_without_a_lab(tmp_path):
    ctx = steps.Context("demo", None, tmp_path)
    got = {}
    steps.apply(steps.Write("answer.txt", "{lab}\n"), ctx, got.__setitem__)
    steps.apply(steps.Answer("x", value="{workspace}"), ctx, got.__setitem__)
    assert (tmp_path / "answer.txt").read_text() == "demo\n"
    assert got == {"x": str(tmp_path)}
    with pytest.raises(PodlabError, match="needs a lab"):
        steps.expand("{ip:web}", ctx)


# ---------------------------------------------------------------- progress

def test_progress_records_answers_hints_and_status(tmp_path):
    p = Progress(tmp_path / "state" / "progress.json")
    assert p.status("04") == NOT_STARTED
    p.update("04", status=IN_PROGRESS, lab="ex04")
    assert p.next_hint("04", 2) == 1 and p.next_hint("04", 2) == 2 and p.next_hint("04", 2) == 2
    assert p.set_answers("04", {"ip": "1.2.3.4"}) == {"ip": "1.2.3.4"}
    assert p.set_answers("04", {"code": "x"}) == {"ip": "1.2.3.4", "code": "x"}
    assert p.entry("04")["lab"] == "ex04" and p.status("04") == IN_PROGRESS
    assert oct(os.stat(p.path).st_mode & 0o777) == "0o600"
    assert p.clear("04") and not p.clear("04") and p.status("04") == NOT_STARTED


def test_damaged_progress_reads_as_none(tmp_path):
    p = Progress(tmp_path / "progress.json")
    p.path.write_text("{not json")
    assert p.read() == {}
    p.path.write_text(json.dumps({"exercises": {"01": "junk", "02": {"status": "passed"}}}))
    assert p.read() == {"02": {"status": "passed"}}


def test_answers_are_plain_checks(tmp_path):
    ex = catalog.discover(ROOT / "exercises")[0]
    ctx = ExerciseContext(ex, "ex01", tmp_path, {"ip": " 10.244.0.3 "})
    assert ctx.answer("ip") == "10.244.0.3"
    with pytest.raises(AssertionError, match="no answer yet for 'ticket'.*sudo podlab exercise answer 01 ticket="):
        ctx.answer("ticket")
    with pytest.raises(AssertionError, match="does not exist yet"):
        ctx.read("capacity.txt")


def test_answer_parsing():
    assert course_cli.parse_answers(["ip=1.2.3.4", "code = x"], ["ip", "code"]) == {"ip": "1.2.3.4", "code": "x"}
    assert course_cli.parse_answers(["1.2.3.4"], ["ip"]) == {"ip": "1.2.3.4"}
    with pytest.raises(PodlabError, match="KEY=VALUE"):
        course_cli.parse_answers(["1.2.3.4"], ["ip", "code"])
    with pytest.raises(PodlabError, match="empty"):
        course_cli.parse_answers(["ip="], ["ip"])


# ---------------------------------------------------------------- messages

def _reach(src, dst, proto, why, ok=False):
    return Reach(src, f"pod {src} on node2", dst, f"pod {dst} on node1", "10.244.0.2", proto, ok,
                 error="timeout", why=why)


def test_failures_sharing_a_cause_read_once():
    why = "node2 has no route to 10.244.0.0/24, node1's pod block"
    text = summarize([_reach("a", "w", "ICMP", why), _reach("a", "w", "HTTP", why), _reach("b", "w", "ICMP", why)],
                     8, "paths between pods")
    assert text.splitlines() == [
        "3 of 8 paths between pods fail:",
        "  pod a on node2 cannot reach 10.244.0.2 (pod w on node1): ICMP: timeout; HTTP: timeout",
        "  pod b on node2 cannot reach 10.244.0.2 (pod w on node1): ICMP: timeout",
        f"  why: {why}"]
    single = _reach("a", "w", "ICMP", why)
    assert summarize([single], 1) == single.message == \
        f"pod a on node2 cannot reach 10.244.0.2 (pod w on node1) over ICMP (timeout): {why}"


def test_check_output_lists_each_check_in_words():
    ex = catalog.discover(ROOT / "exercises")[3]
    failing = CheckResult(ex, "ex04", [Check("routes are there", True),
                                       Check("pods reach pods", False, "line one\nline two")])
    text = course_cli.format_result(failing)
    assert "  ✓ routes are there" in text and "  ✗ pods reach pods" in text
    assert "      line one\n      line two" in text and "1 of 2 checks pass" in text
    passing = CheckResult(ex, "ex04", [Check("routes are there", True)])
    assert passing.passed and "all 1 checks pass" in course_cli.format_result(passing)
    assert not CheckResult(ex, "ex04", []).passed      # no checks ran: never a pass


# ---------------------------------------------------------------- the CLI, without root

@pytest.fixture
def course(tmp_path, monkeypatch):
    c = Course(exercises_dir=ROOT / "exercises", state_dir=tmp_path / "state", workspace_root=tmp_path / "ws",
               lab_prefix="u")
    monkeypatch.setattr(course_cli, "course_factory", lambda: c)
    return c


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return cli.main(list(argv), out, err), out.getvalue(), err.getvalue()


def test_list_needs_no_root(course):
    code, out, _ = run_cli("exercise", "list")
    assert code == 0
    assert out.splitlines()[0].split() == ["ID", "TITLE", "LEVEL", "STATUS"]
    assert "04   Across nodes: a missing host route" in out and "not started" in out


def test_solution_prints_commands_for_the_design(course):
    code, out, _ = run_cli("exercise", "solution", "04")
    assert code == 0
    assert "sudo podlab exec node2 -- ip route add 10.244.0.0/24 via 192.168.56.11 dev eth0" in out


def test_show_prints_the_task(course):
    code, out, _ = run_cli("exercise", "show", "host-routes")
    assert code == 0 and "# 04" in out and "sudo podlab exercise check 04" in out


def test_root_actions_say_so_without_a_traceback(course, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)          # as a student without sudo
    for argv in (["start", "04"], ["check"], ["solution", "04", "--apply"], ["reset", "--all"]):
        code, _, err = run_cli("exercise", *argv)
        assert code == 1 and "needs root" in err and "sudo podlab exercise" in err and "Traceback" not in err
    assert run_cli("exercise", "list")[0] == 0 and run_cli("exercise", "solution", "04")[0] == 0


def test_bad_input_is_a_clear_error(course):
    code, _, err = run_cli("exercise", "solution", "99")
    assert code == 1 and err.startswith("podlab: no exercise '99'") and "Traceback" not in err
    code, _, err = run_cli("exercise", "show", "nope")
    assert code == 1 and "the exercises are: 01 (first-look)" in err


def test_an_unwritable_workspace_is_a_clear_error(course, tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)      # exercise 10 builds no lab: root is not needed here
    blocker = tmp_path / "file"
    blocker.write_text("")
    course.workspace_root = blocker / "ws"          # a path that cannot be a folder
    code, _, err = run_cli("exercise", "start", "10")  # exercise 10 needs no lab
    assert code == 1 and err.startswith("podlab: exercise start: ") and "Traceback" not in err


def test_answers_need_a_started_exercise(course):
    with pytest.raises(PodlabError, match="not started"):
        course.answer(course.find("01"), {"ip": "1.2.3.4"})
    with pytest.raises(PodlabError, match="no question 'colour'"):
        course.answer(course.find("01"), {"colour": "blue"})
    with pytest.raises(PodlabError, match="asks for no answers"):
        course.answer(course.find("04"), {"ip": "1.2.3.4"})


def test_hints_come_one_at_a_time(course):
    ex = course.find("04")
    shown = [course.hint(ex)[0] for _ in range(len(ex.hints) + 2)]
    assert shown == list(range(1, len(ex.hints) + 1)) + [len(ex.hints)] * 2


# ---------------------------------------------------------------- the plugin's report

GRADER = '''
import pytest

def test_passes():
    """this one passes"""

def test_message():
    """a plain assertion message"""
    x = 1
    assert x == 2, "node2 has no route to 10.244.0.0/24"

def test_helper_style():
    raise AssertionError("first line\\nsecond line")

def test_bare_assert():
    assert 1 == 2

def test_fail():
    pytest.fail("the lab is not up", pytrace=False)

def test_skip():
    pytest.skip("not today")

def test_bug():
    {}["missing"]
'''


def test_report_rows_carry_titles_and_plain_messages(tmp_path):
    (tmp_path / "test_g.py").write_text(GRADER)
    report = tmp_path / "report.json"
    env = dict(os.environ, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", PYTHONDONTWRITEBYTECODE="1",
               PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "pytest", str(tmp_path / "test_g.py"), "-p", "lab.grading.plugin",
                           "-p", "no:cacheprovider", "-q", "-c", os.devnull, "--rootdir", str(tmp_path),
                           "--podlab-report", str(report)], capture_output=True, text=True, env=env, cwd=tmp_path)
    rows = {r["nodeid"].split("::")[1]: r for r in json.loads(report.read_text())}
    assert done.returncode == 1
    assert rows["test_passes"] == {"nodeid": rows["test_passes"]["nodeid"], "title": "this one passes",
                                   "passed": True, "message": ""}
    assert rows["test_message"]["title"] == "a plain assertion message"
    assert rows["test_message"]["message"] == "node2 has no route to 10.244.0.0/24"
    assert rows["test_helper_style"]["title"] == "helper style"
    assert rows["test_helper_style"]["message"] == "first line\nsecond line"
    assert rows["test_bare_assert"]["message"].startswith("a check failed")
    assert rows["test_fail"]["message"] == "the lab is not up"
    assert not rows["test_skip"]["passed"] and rows["test_skip"]["message"] == "skipped: not today"
    assert "the grader itself failed (KeyError" in rows["test_bug"]["message"]
