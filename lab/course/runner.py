"""The course: start, hint, answer, check, solution and reset, over real labs.

An exercise runs in one lab of its own, named `ex<NN>` (a prefix tests change, so they never
touch a student's lab). `start` brings the lab up from the exercise's topology and applies its
break steps; `check` runs the exercise's pytest grader against the live lab in a subprocess
(with podlab's plugin, lab.grading.plugin) and reads back one line per check; `reset` takes
the lab down and forgets the progress.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lab import api, planner, state
from lab.course import catalog, steps
from lab.course.catalog import Exercise
from lab.course.progress import IN_PROGRESS, NOT_STARTED, PASSED, Progress
from lab.errors import PodlabError

Say = Callable[[str], None]
SOURCE_ROOT = Path(__file__).resolve().parents[2]
CHECK_TIMEOUT = 300.0


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class Check:
    title: str
    passed: bool
    message: str = ""
    nodeid: str = ""


@dataclass
class CheckResult:
    exercise: Exercise
    lab: str
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0
    output: str = ""            # pytest's own output, kept for when the grader itself breaks

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)


@dataclass(frozen=True)
class ExerciseContext:
    """What a grader may know about its exercise: the lab, the workspace and the student's answers."""
    exercise: Exercise
    lab: str
    workspace: Path
    answers: dict[str, str]

    @property
    def id(self) -> str:
        return self.exercise.id

    def answer(self, key: str) -> str:
        """The student's answer; a failing check that says how to give it when there is none."""
        if key in self.answers and self.answers[key].strip():
            return self.answers[key].strip()
        question = self.exercise.answers.get(key, key)
        raise AssertionError(f"no answer yet for '{key}' ({question}): give it with "
                             f"'sudo podlab exercise answer {self.id} {key}=...'")

    def path(self, name: str) -> Path:
        return self.workspace / name

    def read(self, name: str) -> str:
        """A file the student writes in the workspace; a failing check that says where, if missing."""
        p = self.path(name)
        try:
            return p.read_text()
        except FileNotFoundError:
            raise AssertionError(f"{p} does not exist yet: write your answer there") from None
        except (OSError, UnicodeDecodeError) as e:
            raise AssertionError(f"cannot read {p}: {e}") from None


def default_workspace_root() -> Path:
    """Where students write files: $PODLAB_WORKSPACE, else ~/podlab-exercises of the user behind sudo."""
    if os.environ.get("PODLAB_WORKSPACE"):
        return Path(os.environ["PODLAB_WORKSPACE"])
    user = os.environ.get("SUDO_USER")
    if user:
        try:
            return Path(pwd.getpwnam(user).pw_dir) / "podlab-exercises"
        except KeyError:
            pass
    return Path.home() / "podlab-exercises"


class Course:
    def __init__(self, exercises_dir: Path | None = None, state_dir: Path | None = None,
                 workspace_root: Path | None = None, lab_prefix: str = "ex"):
        self.exercises_dir = Path(exercises_dir or catalog.EXERCISES)
        self.state_dir = Path(state_dir or state.ROOT / ".course")
        self.workspace_root = Path(workspace_root or default_workspace_root())
        self.lab_prefix = lab_prefix
        self.progress = Progress(self.state_dir / "progress.json")
        self._exercises: list[Exercise] | None = None

    # ------------------------------------------------------------------ reading
    def exercises(self) -> list[Exercise]:
        if self._exercises is None:
            self._exercises = catalog.discover(self.exercises_dir)
        return self._exercises

    def find(self, ident: str) -> Exercise:
        return catalog.find(ident, self.exercises())

    def lab_name(self, ex: Exercise) -> str:
        return self.progress.entry(ex.id).get("lab") or f"{self.lab_prefix}{ex.id}"

    def workspace(self, ex: Exercise) -> Path:
        return self.workspace_root / ex.folder

    def status(self, ex: Exercise) -> str:
        return self.progress.status(ex.id)

    def context(self, ex: Exercise, lab: str | None = None) -> ExerciseContext:
        return ExerciseContext(ex, lab or self.lab_name(ex), self.workspace(ex),
                               dict(self.progress.entry(ex.id).get("answers", {})))

    def step_context(self, ex: Exercise, lab: str | None = None) -> steps.Context:
        """Placeholders are filled from the design (a pure plan), so they work before `start` too."""
        name = lab or self.lab_name(ex)
        plan = planner.build(api.load_topology(str(ex.topology), name)) if ex.topology else None
        return steps.Context(name, plan, self.workspace(ex))

    def current(self) -> Exercise:
        """The exercise `check` means without an ID: the one in progress (the latest started)."""
        entries = self.progress.read()
        started = sorted(((e.get("started", 0), i) for i, e in entries.items() if e.get("status") == IN_PROGRESS),
                         reverse=True)
        if not started:
            raise PodlabError("no exercise is in progress: 'podlab exercise list' shows them, "
                              "'sudo podlab exercise start 01' starts the first")
        return self.find(started[0][1])

    # ------------------------------------------------------------------ doing
    def start(self, ex: Exercise, say: Say = _quiet) -> ExerciseContext:
        lab = f"{self.lab_prefix}{ex.id}"
        if state.lab_dir(lab).exists():
            raise PodlabError(f"exercise {ex.id} is already running in lab {lab}: carry on "
                              f"('podlab exercise show {ex.id}' prints the task again), "
                              f"or start over with 'sudo podlab exercise reset {ex.id}'")
        self._prepare_workspace(ex)
        ctx = self.step_context(ex, lab)
        self.progress.clear(ex.id)
        if ex.topology is not None:
            api.up(api.load_topology(str(ex.topology), lab), say)
            try:
                _wait_for_ports(lab)
                for step in ex.break_steps:
                    steps.apply(step, ctx, lambda k, v: self.progress.set_answers(ex.id, {k: v}))
            except BaseException:
                say("the exercise could not be set up; taking its lab down again")
                api.down(lab)
                raise
        self.progress.update(ex.id, status=IN_PROGRESS, lab=lab, started=time.time(), hints=0)
        return self.context(ex, lab)

    def _prepare_workspace(self, ex: Exercise) -> None:
        ws = self.workspace(ex)
        new_dirs = [p for p in (self.workspace_root, ws) if not p.exists()]
        ws.mkdir(parents=True, exist_ok=True)
        made = list(new_dirs)
        if ex.files.is_dir():
            for f in sorted(ex.files.iterdir()):
                dest = ws / f.name
                if f.is_file() and not dest.exists():   # never overwrite the student's own work
                    shutil.copyfile(f, dest)
                    made.append(dest)
        _give_to_sudo_user(made)

    def hint(self, ex: Exercise) -> tuple[int, int, list[str]]:
        """Show one more hint: (shown, total, the hints shown so far)."""
        if not ex.hints:
            return 0, 0, []
        shown = self.progress.next_hint(ex.id, len(ex.hints))
        return shown, len(ex.hints), list(ex.hints[:shown])

    def answer(self, ex: Exercise, given: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(given) - set(ex.answers))
        if not ex.answers:
            raise PodlabError(f"exercise {ex.id} asks for no answers: fix the lab, then 'podlab exercise check {ex.id}'")
        if unknown:
            raise PodlabError(f"exercise {ex.id} has no question {unknown[0]!r}; its answers are: "
                              + ", ".join(f"{k} ({q})" for k, q in ex.answers.items()))
        if self.status(ex) == NOT_STARTED:
            raise PodlabError(f"exercise {ex.id} is not started: 'sudo podlab exercise start {ex.id}' first")
        return self.progress.set_answers(ex.id, given)

    def check(self, ex: Exercise, lab: str | None = None, timeout: float = CHECK_TIMEOUT) -> CheckResult:
        """Run the grader against the live lab; record a pass in the progress."""
        lab = lab or self.lab_name(ex)
        result = run_grader(ex, lab, self.state_dir, self.workspace_root, timeout)
        if self.status(ex) != NOT_STARTED:
            self.progress.update(ex.id, status=PASSED if result.passed else IN_PROGRESS, last_check=time.time(),
                                 checks_passed=sum(c.passed for c in result.checks), checks=len(result.checks))
        return result

    def solution_lines(self, ex: Exercise) -> list[str]:
        ctx = self.step_context(ex)
        return [steps.render(s, ctx).replace("answer ID ", f"answer {ex.id} ") for s in ex.solution]

    def apply_solution(self, ex: Exercise, say: Say = _quiet) -> None:
        lab = self.lab_name(ex)
        if ex.topology is not None and not (state.lab_dir(lab) / "lab.json").exists():
            raise PodlabError(f"exercise {ex.id} is not running (lab {lab} is not up): "
                              f"'sudo podlab exercise start {ex.id}' first")
        ctx = self.step_context(ex, lab)
        made: list[Path] = []
        for step in ex.solution:
            say(steps.apply(step, ctx, lambda k, v: self.progress.set_answers(ex.id, {k: v})))
            if isinstance(step, steps.Write):
                made.append(ctx.workspace / step.path)
        _give_to_sudo_user(made)

    def reset(self, ex: Exercise, say: Say = _quiet) -> bool:
        """Take the exercise's lab down (whatever state it is in) and forget its progress."""
        lab = self.lab_name(ex)
        removed = False
        for name in dict.fromkeys((lab, f"{self.lab_prefix}{ex.id}")):
            if state.lab_dir(name).exists():
                api.down(name, say)
                removed = True
        self.progress.clear(ex.id)
        return removed


def run_grader(ex: Exercise, lab: str, state_dir: Path, workspace_root: Path,
               timeout: float = CHECK_TIMEOUT) -> CheckResult:
    """pytest on the exercise's graders in a fresh interpreter; one Check per test."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="podlab-check-") as tmp:
        report = Path(tmp) / "report.json"
        argv = [sys.executable, "-m", "pytest", *map(str, ex.graders()),
                "-p", "lab.grading.plugin", "-p", "no:cacheprovider", "-q", "--no-header", "-rN",
                "--import-mode=importlib", "-c", os.devnull, "--rootdir", str(ex.dir),
                "--podlab-lab", lab, "--podlab-exercise", str(ex.dir), "--podlab-state", str(state_dir),
                "--podlab-workspace", str(workspace_root), "--podlab-report", str(report)]
        env = dict(os.environ, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", PYTHONDONTWRITEBYTECODE="1",
                   PODLAB_STATE_DIR=str(state.ROOT),
                   PYTHONPATH=os.pathsep.join(p for p in (str(SOURCE_ROOT), os.environ.get("PYTHONPATH")) if p))
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                                  cwd=tmp, stdin=subprocess.DEVNULL)
            output = done.stdout + done.stderr
        except subprocess.TimeoutExpired:
            return CheckResult(ex, lab, [Check("the grader finished in time", False,
                                               f"it ran for more than {timeout:.0f} s and was stopped")],
                               time.monotonic() - started)
        try:
            rows = json.loads(report.read_text())
        except (OSError, ValueError):
            rows = []
    checks = [Check(r.get("title", r.get("nodeid", "?")), bool(r.get("passed")), r.get("message", ""),
                    r.get("nodeid", "")) for r in rows if isinstance(r, dict)]
    if not checks:
        tail = "\n".join(output.strip().splitlines()[-15:])
        checks = [Check("the grader ran", False, f"pytest reported no checks (exit {done.returncode}):\n{tail}")]
    return CheckResult(ex, lab, checks, time.monotonic() - started, output)


def _wait_for_ports(lab: str, timeout: float = 15.0) -> None:
    """Wait until the pods' own programs (command containers) listen on the ports they declare, so the
    task can be tried at once. Built-in workloads already listen when `up` returns."""
    from lab.grading.helpers import Grader
    g = Grader(api.Lab(lab))
    wanted = {p.name: {port for c in p.containers if c.workload == "command" for port in c.ports}
              for p in g.topology.pods}
    wanted = {pod: ports for pod, ports in wanted.items() if ports}
    deadline = time.monotonic() + timeout
    while wanted and time.monotonic() < deadline:
        wanted = {pod: ports for pod, ports in wanted.items() if not ports <= g.listening(pod)}
        if wanted:
            time.sleep(0.1)


def _give_to_sudo_user(paths: list[Path]) -> None:
    """Files made for a student under sudo belong to the student, so they can edit them without sudo."""
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if os.geteuid() != 0 or not uid or not gid or not uid.isdigit() or not gid.isdigit():
        return
    for p in paths:
        try:
            os.chown(p, int(uid), int(gid), follow_symlinks=False)
        except OSError:
            pass
