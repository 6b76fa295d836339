"""`podlab clean` and `podlab restart-agent`: the reliability commands (a lab.cli extension)."""
from __future__ import annotations

import argparse
import json
from typing import TextIO

NEEDS_ROOT = {"clean", "restart-agent"}


def register(sub: argparse._SubParsersAction) -> dict:
    sp = sub.add_parser("clean", help="remove what crashed or broken labs left behind, by their ownership "
                        "records; labs that are up, and anything podlab did not make, are left alone")
    sp.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    sp.add_argument("-o", "--output", choices=["text", "json"], default="text")

    sp = sub.add_parser("restart-agent", help="start a lab's workload agent again after it died "
                        "(its containers restart; RESTARTS counts it)")
    sp.add_argument("lab", nargs="?", help="lab name (default: the only one up)")
    return {"clean": cmd_clean, "restart-agent": cmd_restart_agent}


def _say(out: TextIO):
    def say(line: str) -> None:
        print(line, file=out, flush=True)
    return say


def cmd_clean(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from lab import clean
    text = args.output == "text"
    report = clean.clean(dry_run=args.dry_run, say=_say(out) if text else (lambda _: None))
    if not text:
        print(json.dumps({"dryRun": args.dry_run,
                          "orphans": [{"lab": o.lab, "reason": o.reason, "namespaces": o.namespaces}
                                      for o in report.orphans],
                          "busy": report.busy, "healthy": report.healthy, "staleLocks": report.locks,
                          "failed": [{"lab": lab, "error": error} for lab, error in report.failed]},
                         indent=2), file=out)
        return 1 if report.failed else 0
    if not report.orphans:
        print("nothing to clean: no lab was left behind by a crash", file=out)
    elif not args.dry_run:
        removed = len(report.orphans) - len(report.failed)
        print(f"removed {removed} orphaned lab{'s' if removed != 1 else ''}", file=out)
    if report.locks and args.dry_run:
        print(f"{len(report.locks)} stale lock files would be removed", file=out)
    if report.healthy:
        print(f"left alone (up): {', '.join(report.healthy)}", file=out)
    if report.failed:
        print(f"podlab: could not remove {len(report.failed)} lab(s): {', '.join(lab for lab, _ in report.failed)}; "
              "see the messages above", file=err)
        return 1
    return 0


def cmd_restart_agent(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from lab import api
    lab = args.lab or api.pick(None).name
    api.restart_agent(lab, _say(out))
    return 0
