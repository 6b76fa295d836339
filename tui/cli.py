"""`podlab tui`: registered as a CLI extension (lab.cli.EXTENSIONS); builds the app and runs it."""
from __future__ import annotations

import argparse
import os
from typing import TextIO

from lab.cliopts import lab_option
from lab.errors import NeedsRoot

# `--preview` needs no root, so the handler checks for root itself.
NEEDS_ROOT: set[str] = set()


def register(sub: argparse._SubParsersAction) -> dict:
    sp = sub.add_parser("tui", help="the interactive lab: cluster tree, kernel state, ping/curl/trace, capture, "
                        "shells", description="A terminal UI over a running lab. With no lab up it offers to "
                        "bring one up; with several it asks which.")
    lab_option(sp)
    sp.add_argument("--preview", metavar="TOPOLOGY", help="explore a design's plan without root: nothing is "
                    "built, nothing runs")
    sp.add_argument("--refresh", type=float, default=2.0, metavar="SECONDS",
                    help="how often the selected namespace is re-read from the kernel (default 2)")
    return {"tui": cmd_tui}


def build_app(args: argparse.Namespace):
    """The app `podlab tui` would run (tests call this without running it)."""
    from lab import api
    from tui.app import PodlabApp
    from tui.source import LabSource
    refresh = max(0.2, args.refresh)
    if args.preview:
        from lab import planner
        from tui.preview import PlanSource
        return PodlabApp(PlanSource(planner.build(api.load_topology(args.preview))), refresh_every=refresh)
    if os.geteuid() != 0:
        raise NeedsRoot("tui")
    labs = api.running()
    if args.lab:
        return PodlabApp(LabSource(api.Lab(args.lab)), refresh_every=refresh)
    if len(labs) == 1:
        return PodlabApp(LabSource(api.Lab(labs[0])), refresh_every=refresh)
    return PodlabApp(None, labs=labs, refresh_every=refresh)


def cmd_tui(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    build_app(args).run()
    return 0
