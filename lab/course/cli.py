"""`podlab exercise ...`: the course's commands, registered as a CLI extension (lab.cli.EXTENSIONS).

    podlab exercise list                      id, title, level, status
    podlab exercise start ID                  bring up the exercise's lab, break it, print the task
    podlab exercise show ID                   print the task again
    podlab exercise hint ID                   the next hint, one at a time
    podlab exercise answer ID KEY=VALUE ...   answer the exercise's questions
    podlab exercise check [ID]                grade the live lab, one plain line per check
    podlab exercise solution ID [--apply]     the reference fix (for instructors)
    podlab exercise reset ID | --all          take the lab down and forget the progress
"""
from __future__ import annotations

import argparse
import os
from typing import TextIO

from lab.errors import NeedsRoot, PodlabError

NEEDS_ROOT: set[str] = set()      # decided per action below: `list` and `solution` need no root
ROOT_ACTIONS = {"start", "hint", "answer", "check", "reset"}


def register(sub: argparse._SubParsersAction) -> dict:
    p = sub.add_parser("exercise", help="the course: list, start, hint, answer, check, solution, reset",
                       description="Guided exercises on real labs, graded against the live kernel state "
                                   "and real traffic.")
    acts = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    acts.add_parser("list", help="every exercise with its level and your status")
    a = acts.add_parser("start", help="bring up the exercise's lab (broken on purpose) and print the task")
    a.add_argument("id", help="exercise number or name, e.g. 04 or host-routes")
    a = acts.add_parser("show", help="print the task of an exercise again")
    a.add_argument("id")
    a = acts.add_parser("hint", help="the next hint, one at a time")
    a.add_argument("id")
    a = acts.add_parser("answer", help="answer the exercise's questions: answer ID KEY=VALUE ...")
    a.add_argument("id")
    a.add_argument("values", nargs="+", metavar="KEY=VALUE", help="e.g. ip=10.244.0.3 (or just the value "
                   "when the exercise asks one question)")
    a = acts.add_parser("check", help="grade the live lab: one line per check; exit 0 only when all pass")
    a.add_argument("id", nargs="?", help="default: the exercise in progress")
    a = acts.add_parser("solution", help="the reference fix, for instructors")
    a.add_argument("id")
    a.add_argument("--apply", action="store_true", help="apply it to the running lab")
    a = acts.add_parser("reset", help="take the exercise's lab down and clear its progress")
    a.add_argument("id", nargs="?")
    a.add_argument("--all", action="store_true", help="every exercise")
    return {"exercise": cmd_exercise}


def course_factory():
    from lab.course.runner import Course
    return Course()


def cmd_exercise(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    action = args.action
    if (action in ROOT_ACTIONS or (action == "solution" and args.apply)) and os.geteuid() != 0:
        raise NeedsRoot(f"exercise {action}")
    course = course_factory()
    handler = {"list": _list, "start": _start, "show": _show, "hint": _hint, "answer": _answer,
               "check": _check, "solution": _solution, "reset": _reset}[action]
    try:
        return handler(course, args, out)
    except OSError as e:      # a workspace or state file we cannot write: say which, no traceback
        where = f"{e.filename}: " if e.filename else ""
        raise PodlabError(f"exercise {action}: {where}{e.strerror or e}") from None


def _say(out: TextIO):
    return lambda line: print(line, file=out, flush=True)


def _list(course, args, out: TextIO) -> int:
    from lab.render import table
    readable = os.access(course.progress.path.parent, os.R_OK | os.X_OK) or not course.progress.path.parent.exists()
    rows = []
    for ex in course.exercises():
        status = course.status(ex) if readable else "? (run as root)"
        rows.append([ex.id, ex.title, ex.level, status])
    print(table(["ID", "TITLE", "LEVEL", "STATUS"], rows), file=out)
    print("\nstart one with: sudo podlab exercise start ID", file=out)
    return 0


def _task(course, ex, out: TextIO) -> None:
    print(ex.readme().rstrip(), file=out)
    print("", file=out)
    lab = course.lab_name(ex)
    if ex.topology is not None:
        print(f"Your lab is {lab}: 'sudo podlab get pods -o wide --lab {lab}', "
              f"'sudo podlab inspect NAME --lab {lab}'.", file=out)
    print(f"Your workspace (files you write): {course.workspace(ex)}", file=out)
    if ex.answers:
        print("Answer with: " + "; ".join(f"sudo podlab exercise answer {ex.id} {k}=...  ({q})"
                                          for k, q in ex.answers.items()), file=out)
    if ex.hints:
        print(f"Stuck? 'sudo podlab exercise hint {ex.id}' ({len(ex.hints)} hints, one at a time).", file=out)
    print(f"Done? 'sudo podlab exercise check {ex.id}'.", file=out)


def _start(course, args, out: TextIO) -> int:
    ex = course.find(args.id)
    print(f"exercise {ex.id}: {ex.title} ({ex.level})", file=out)
    course.start(ex, _say(out))
    print("", file=out)
    _task(course, ex, out)
    return 0


def _show(course, args, out: TextIO) -> int:
    ex = course.find(args.id)
    print(f"exercise {ex.id}: {ex.title} ({ex.level}) — {course.status(ex)}\n", file=out)
    _task(course, ex, out)
    return 0


def _hint(course, args, out: TextIO) -> int:
    ex = course.find(args.id)
    shown, total, hints = course.hint(ex)
    if not total:
        print(f"exercise {ex.id} has no hints", file=out)
        return 0
    for i, h in enumerate(hints, 1):
        marker = "→" if i == shown else " "
        print(f"{marker} hint {i}/{total}: {h}", file=out)
    if shown == total:
        print("(that was the last hint)", file=out)
    return 0


def parse_answers(values: list[str], keys: list[str]) -> dict[str, str]:
    """KEY=VALUE pairs; a bare VALUE when the exercise asks exactly one question."""
    given: dict[str, str] = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep:
            if len(keys) != 1 or len(values) != 1:
                raise PodlabError(f"say which answer {v!r} is: KEY=VALUE, with KEY one of {', '.join(keys)}")
            key, value = keys[0], v
        key, value = key.strip(), value.strip()
        if not value:
            raise PodlabError(f"answer {key!r} is empty")
        given[key] = value
    return given


def _answer(course, args, out: TextIO) -> int:
    ex = course.find(args.id)
    given = parse_answers(args.values, list(ex.answers))
    course.answer(ex, given)
    for k, v in given.items():
        print(f"recorded {k} = {v}", file=out)
    print(f"now: sudo podlab exercise check {ex.id}", file=out)
    return 0


def format_result(result) -> str:
    lines = [f"exercise {result.exercise.id}: {result.exercise.title} (lab {result.lab})"]
    for c in result.checks:
        lines.append(f"  {'✓' if c.passed else '✗'} {c.title}")
        if not c.passed and c.message:
            lines += [f"      {line}" for line in c.message.splitlines()]
    passed = sum(c.passed for c in result.checks)
    if result.passed:
        lines.append(f"\nall {passed} checks pass — exercise {result.exercise.id} is done. Well done!")
    else:
        lines.append(f"\n{passed} of {len(result.checks)} checks pass. Fix what is still wrong, then run "
                     f"'sudo podlab exercise check {result.exercise.id}' again.")
    return "\n".join(lines)


def _check(course, args, out: TextIO) -> int:
    ex = course.find(args.id) if args.id else course.current()
    result = course.check(ex)
    print(format_result(result), file=out)
    return 0 if result.passed else 1


def _solution(course, args, out: TextIO) -> int:
    ex = course.find(args.id)
    if args.apply:
        print(f"applying the reference solution of exercise {ex.id} to lab {course.lab_name(ex)}:", file=out)
        course.apply_solution(ex, lambda line: print(f"  {line}", file=out, flush=True))
        print(f"now: sudo podlab exercise check {ex.id}", file=out)
        return 0
    print(f"reference solution of exercise {ex.id} ({ex.title}), in lab {course.lab_name(ex)}:", file=out)
    for line in course.solution_lines(ex):
        print(f"  {line}", file=out)
    print(f"(apply it with: sudo podlab exercise solution {ex.id} --apply)", file=out)
    return 0


def _reset(course, args, out: TextIO) -> int:
    if args.all == bool(args.id):
        raise PodlabError("reset needs an exercise ID, or --all")
    exercises = course.exercises() if args.all else [course.find(args.id)]
    for ex in exercises:
        removed = course.reset(ex, _say(out))
        if removed or not args.all:
            print(f"exercise {ex.id} reset" + ("" if removed else " (its lab was not up)")
                  + f"; your files in {course.workspace(ex)} are kept", file=out)
    return 0
