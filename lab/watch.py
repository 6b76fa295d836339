"""`podlab get pods|services|endpoints -w`: the listing, then a line for each row that changes, as
`kubectl get -w` prints them.

One loop for every kind: twice a second it reads the lab again (its record, and the agent's status,
which says which pods run and are ready) and prints each row that is new or differs from the one
last printed (the AGE column aside: it changes by itself), and a line for each row that went.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from lab import api
from lab.errors import PodlabError

INTERVAL = 0.5
Rows = Callable[[api.Lab], list[list[str]]]


def _line(cells: list[str], widths: list[int]) -> str:
    return "   ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()


def watch(name: str, columns: list[str], shown_rows: list[list[str]], rows_of: Rows, ident: int,
          seconds: float | None, out: TextIO) -> int:
    """After the listing (`columns` and the `shown_rows` printed), print changes until Ctrl-C, the
    lab going down, or `seconds` (tests). A row is named by its first `ident` cells (NAME; for
    Services NAMESPACE and NAME); lines line up with the listing's columns."""
    skip = {i for i, c in enumerate(columns) if c == "AGE"}

    def compared(cells: list[str]) -> tuple[str, ...]:
        return tuple(c for i, c in enumerate(cells) if i not in skip)

    widths = [max([len(columns[i])] + [len(r[i]) for r in shown_rows]) for i in range(len(columns))]
    shown = {tuple(r[:ident]): compared(r) for r in shown_rows}
    deadline = time.monotonic() + seconds if seconds is not None else None
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(INTERVAL)
            try:
                lab = api.Lab(name)
            except PodlabError:
                print(f"lab {name} is down", file=out)
                return 0
            now = [[str(c) for c in r] for r in rows_of(lab)]
            for cells in now:
                key = tuple(cells[:ident])
                if shown.get(key) != compared(cells):
                    shown[key] = compared(cells)
                    print(_line(cells, widths), file=out, flush=True)
            current = {tuple(r[:ident]) for r in now}
            for gone in [k for k in shown if k not in current]:
                del shown[gone]
                print("   ".join([*gone, "deleted"]), file=out, flush=True)
    except KeyboardInterrupt:
        pass
    return 0
