"""The options that podlab's commands share, declared once: the core's (lab.cli) and the extensions'."""
from __future__ import annotations

import argparse

LAB_HELP = "which lab, when several are up"


def lab_option(parser: argparse.ArgumentParser) -> None:
    """--lab: the lab a command works on (none: the one that is up, lab.api.pick)."""
    parser.add_argument("--lab", help=LAB_HELP)
