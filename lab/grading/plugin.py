"""podlab's pytest plugin, for exercise graders (registered as the pytest11 entry point `podlab`).

Fixtures
    podlab            a lab.grading.Grader on the exercise's running lab (fresh kernel reads per test)
    podlab_lab        the running lab (lab.api.Lab)
    podlab_exercise   the exercise: .answer(key), .read(file), .workspace, .lab, .id
    podlab_up         bring up a topology file for the length of the module: podlab_up(path) -> Grader

Which lab and exercise: --podlab-lab / --podlab-exercise (what `podlab exercise check` passes),
or, when an author runs `pytest exercises/04-host-routes`, the folder of the test file and the
lab that exercise was started in. --podlab-report FILE writes one JSON row per check (its title
is the test's docstring, its message the failure in plain words) for `podlab exercise check`.

Outside an exercise folder the fixtures are simply unused: the plugin changes nothing else.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lab.errors import PodlabError


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("podlab", "podlab exercise graders")
    group.addoption("--podlab-lab", help="the lab to grade (default: the exercise's own lab)")
    group.addoption("--podlab-exercise", help="the exercise folder (default: the test file's folder)")
    group.addoption("--podlab-state", help="the course state directory (progress and answers)")
    group.addoption("--podlab-workspace", help="the students' workspace root")
    group.addoption("--podlab-report", help="write each check's outcome as JSON to this file")


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--podlab-report", default=None)
    if path:
        config.pluginmanager.register(Reporter(Path(path)), "podlab-reporter")


# ---------------------------------------------------------------- fixtures

def _course(config: pytest.Config):
    from lab.course.runner import Course
    state_dir = config.getoption("--podlab-state")
    workspace = config.getoption("--podlab-workspace")
    return Course(state_dir=Path(state_dir) if state_dir else None,
                  workspace_root=Path(workspace) if workspace else None)


def _exercise_dir(request: pytest.FixtureRequest) -> Path:
    given = request.config.getoption("--podlab-exercise")
    if given:
        return Path(given)
    return Path(str(request.path)).resolve().parent


@pytest.fixture(scope="module")
def podlab_exercise(request: pytest.FixtureRequest):
    """The exercise this grader belongs to, with the student's answers and workspace."""
    from lab.course import catalog
    folder = _exercise_dir(request)
    try:
        ex = catalog.load(folder)
    except PodlabError as e:
        pytest.fail(f"this grader is not in an exercise folder: {e}", pytrace=False)
    course = _course(request.config)
    return course.context(ex, request.config.getoption("--podlab-lab") or None)


@pytest.fixture(scope="module")
def podlab_lab(podlab_exercise):
    """The exercise's lab, which must be up."""
    from lab import api
    try:
        return api.Lab(podlab_exercise.lab)
    except (PodlabError, ValueError):
        pytest.fail(f"the lab of exercise {podlab_exercise.id} ({podlab_exercise.lab}) is not up: "
                    f"start it with 'sudo podlab exercise start {podlab_exercise.id}'", pytrace=False)


@pytest.fixture
def podlab(podlab_lab):
    """Real traffic and kernel state of the running lab; every test reads the kernel afresh."""
    from lab.grading.helpers import Grader
    return Grader(podlab_lab)


@pytest.fixture(scope="module")
def podlab_up(podlab_exercise):
    """Bring up a topology file (e.g. one the student designed) as the exercise's lab; down at the end."""
    from lab import api, state
    from lab.grading.helpers import Grader
    made: list[str] = []

    def up(path: str | Path, name: str | None = None) -> Grader:
        name = name or podlab_exercise.lab
        path = Path(path)
        if not path.is_file():
            raise AssertionError(f"{path} does not exist yet: write your design there")
        try:
            topo = api.load_topology(str(path), name)
        except PodlabError as e:
            raise AssertionError(f"{path.name} is not a valid topology:\n{e}") from None
        if state.lab_dir(name).exists():      # left by an earlier check that was interrupted
            api.down(name)
        try:
            lab = api.up(topo)
        except PodlabError as e:
            raise AssertionError(f"{path.name} could not be brought up: {e}") from None
        made.append(name)
        return Grader(lab)

    yield up
    for name in made:
        if state.lab_dir(name).exists():
            api.down(name)


# ---------------------------------------------------------------- the report

def plain_message(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    """A failure as a student reads it: the assertion's own message, without pytest's introspection."""
    e = excinfo.value
    if isinstance(e, AssertionError):
        text = str(e)
        kept = []
        for line in text.split("\n"):
            if line.startswith("assert ") or line.startswith("+  where") or line.startswith(" +  where"):
                break
            kept.append(line)
        message = "\n".join(kept).strip()
        return message or f"a check failed: {text.splitlines()[0] if text else 'assert'}"
    if isinstance(e, pytest.fail.Exception):
        return str(e.msg) if hasattr(e, "msg") else str(e)
    if isinstance(e, pytest.skip.Exception):
        return f"skipped: {getattr(e, 'msg', e)}"
    if isinstance(e, PodlabError):
        return str(e)
    return f"the grader itself failed ({type(e).__name__}: {e}); tell your instructor"


def _title(item: pytest.Item) -> str:
    fn = getattr(item, "function", None)
    doc = (fn.__doc__ or "").strip() if fn is not None else ""
    if doc:
        return doc.splitlines()[0].strip()
    name = item.name.split("[")[0]
    return name.removeprefix("test_").replace("_", " ")


class Reporter:
    """Collects one row per test (and per file that failed to load) and writes them as JSON."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: dict[str, dict[str, Any]] = {}

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]):
        outcome = yield
        rep = outcome.get_result()
        row = self.rows.setdefault(item.nodeid, {"nodeid": item.nodeid, "title": _title(item),
                                                 "passed": True, "message": ""})
        if rep.skipped and row["passed"]:   # a grader that skips has not shown the check passes
            row.update(passed=False, message=plain_message(call.excinfo) if call.excinfo else "skipped")
        elif rep.failed and row["passed"]:
            row.update(passed=False, message=plain_message(call.excinfo) if call.excinfo else str(rep.longrepr))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            text = str(report.longrepr).strip().splitlines()
            self.rows[report.nodeid] = {"nodeid": report.nodeid, "title": f"the grader {report.nodeid} loads",
                                        "passed": False, "message": "\n".join(text[-5:])}

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.path.write_text(json.dumps(list(self.rows.values()), indent=1))
