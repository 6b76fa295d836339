"""The exercises: one folder each, `exercises/NN-slug/`, described by its exercise.yaml.

    exercises/04-host-routes/
      exercise.yaml     title, level, hints, answers, and the break and solution steps
      README.md         the story and the task, as the student reads it
      topology.yaml     the lab it runs on (optional: a design exercise brings up the student's own)
      test_ex04.py      the grader: plain pytest with podlab's fixtures (lab.grading.plugin)
      files/            starter files copied into the student's workspace (optional)

Everything in exercise.yaml is checked when the course is read, every problem at once, so an
author sees all mistakes in one run (`podlab exercise list` reads them all).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab.course import steps
from lab.errors import PodlabError

EXERCISES = Path(os.environ.get("PODLAB_EXERCISES") or Path(__file__).resolve().parents[2] / "exercises")
FOLDER = re.compile(r"^(\d{2})-([a-z0-9]+(?:-[a-z0-9]+)*)$")
LEVELS = ("beginner", "intermediate", "advanced")
ANSWER_KEY = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
KEYS = {"title": str, "level": str, "summary": str, "topology": (str, type(None)), "hints": list,
        "break": list, "solution": list, "answers": dict}
REQUIRED = ("title", "level")


@dataclass(frozen=True)
class Exercise:
    id: str                       # "04"
    slug: str                     # "host-routes"
    dir: Path
    title: str
    level: str
    summary: str = ""
    topology: Path | None = None
    hints: tuple[str, ...] = ()
    break_steps: tuple[steps.Step, ...] = ()
    solution: tuple[steps.Step, ...] = ()
    answers: dict[str, str] = field(default_factory=dict)   # key -> the question, in words

    @property
    def folder(self) -> str:
        return self.dir.name

    def readme(self) -> str:
        try:
            return (self.dir / "README.md").read_text()
        except OSError:
            return f"# {self.title}\n\n(this exercise has no README.md)\n"

    def graders(self) -> list[Path]:
        return sorted(self.dir.glob("test_*.py"))

    @property
    def files(self) -> Path:
        return self.dir / "files"


def load(folder: Path) -> Exercise:
    """Read and check one exercise folder; PodlabError lists every problem found."""
    folder = Path(folder)
    m = FOLDER.match(folder.name)
    if not m:
        raise PodlabError(f"{folder}: an exercise folder is named NN-slug, e.g. 04-host-routes")
    meta_path = folder / "exercise.yaml"
    try:
        raw = yaml.safe_load(meta_path.read_text())
    except OSError as e:
        raise PodlabError(f"{meta_path}: cannot read it ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise PodlabError(f"{meta_path}: not valid YAML: {e}") from None
    problems: list[str] = []
    if not isinstance(raw, dict):
        raise PodlabError(f"{meta_path}: must be a mapping with title, level, hints, break, solution")
    for key, value in raw.items():
        if key not in KEYS:
            problems.append(f"{key}: unknown key (known: {', '.join(KEYS)})")
        elif not isinstance(value, KEYS[key]):
            problems.append(f"{key}: wrong type {type(value).__name__}")
    problems += [f"{key}: required" for key in REQUIRED if key not in raw]
    level = raw.get("level", "beginner")
    if level not in LEVELS:
        problems.append(f"level: {level!r} is not one of {', '.join(LEVELS)}")
    hints = raw.get("hints") or []
    if not all(isinstance(h, str) and h.strip() for h in hints if isinstance(hints, list)):
        problems.append("hints: each hint is a non-empty string")
    answers = raw.get("answers") or {}
    if isinstance(answers, dict):
        for key, question in answers.items():
            if not (isinstance(key, str) and ANSWER_KEY.match(key)) or not isinstance(question, str):
                problems.append(f"answers.{key}: an answer key is a lowercase word and its value the question")
    topology: Path | None = None
    if "topology" in raw:
        if raw["topology"] is not None:
            topology = _inside(folder, raw["topology"], "topology", problems)
    elif (folder / "topology.yaml").exists():
        topology = folder / "topology.yaml"
    if topology is not None and not topology.is_file():
        problems.append(f"topology: {topology.name} does not exist")
    answer_keys = set(answers) if isinstance(answers, dict) else set()
    break_steps = steps.parse(raw.get("break") or [], "break", problems, answer_keys)
    solution = steps.parse(raw.get("solution") or [], "solution", problems, answer_keys)
    if topology is None:
        for where, seq in (("break", break_steps), ("solution", solution)):
            if any(isinstance(s, steps.Run) or (isinstance(s, steps.Answer) and s.run) for s in seq):
                problems.append(f"{where}: commands run inside a lab, but this exercise has no topology")
    if not list(folder.glob("test_*.py")):
        problems.append("no grader: add a test_*.py file")
    if problems:
        raise PodlabError(f"{meta_path}: {len(problems)} problem{'s' if len(problems) > 1 else ''}\n"
                          + "\n".join(f"  - {p}" for p in problems))
    return Exercise(id=m.group(1), slug=m.group(2), dir=folder, title=raw["title"].strip(), level=level,
                    summary=(raw.get("summary") or "").strip(), topology=topology,
                    hints=tuple(h.strip() for h in hints), break_steps=break_steps, solution=solution,
                    answers=dict(answers))


def _inside(folder: Path, name: Any, what: str, problems: list[str]) -> Path | None:
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        problems.append(f"{what}: a file name inside the exercise folder, e.g. topology.yaml")
        return None
    return folder / name


def discover(root: Path | None = None) -> list[Exercise]:
    """Every exercise under root, in order. A broken exercise is an error naming its file."""
    root = Path(root or EXERCISES)
    if not root.is_dir():
        raise PodlabError(f"no exercises folder at {root}")
    found = [load(d) for d in sorted(root.iterdir()) if d.is_dir() and FOLDER.match(d.name)]
    ids = [e.id for e in found]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise PodlabError(f"{root}: two exercises share the number {', '.join(dupes)}")
    return found


def find(ident: str, exercises: list[Exercise]) -> Exercise:
    """An exercise by number ('4', '04'), folder ('04-host-routes') or slug ('host-routes')."""
    text = str(ident).strip().lower()
    if text.isdigit():
        text = f"{int(text):02d}"
    for e in exercises:
        if text in (e.id, e.folder, e.slug):
            return e
    prefix = [e for e in exercises if e.slug.startswith(text) or e.folder.startswith(text)]
    if len(prefix) == 1:
        return prefix[0]
    known = ", ".join(f"{e.id} ({e.slug})" for e in exercises)
    raise PodlabError(f"no exercise {ident!r}; the exercises are: {known}")
