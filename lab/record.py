"""A running lab's record, and the record of a change in progress.

The record is what every command reads instead of the user's file: the topology document as it
was loaded (topology.yaml) and the allocation with the placement (allocation.json: addresses,
the pods that have none yet, which node each pod is bound to).

A change writes what it is about to do (change.json: the record it starts from and the one it
makes) before it touches anything, the way Kubernetes stores the desired state before any
controller acts on it. While change.json exists the lab's record is the one it started from (the
two record files may be half rewritten by a commit that was cut short); the change is committed
when the record files hold the new record and change.json is gone. Whoever finds change.json with
nobody changing the lab (a SIGKILL, a power cut of the process) finishes it (lab.converge).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lab import allocation, faults, planner, topology
from lab.addressing import AddressPlan
from lab.model import Topology
from lab.planner import Plan

TOPOLOGY = "topology.yaml"
ALLOCATION = "allocation.json"
CONFLIST = "conflist.template"   # the cni attachment's conflist file as it was read (the file is not read again)
CHANGE = "change.json"


@dataclass(frozen=True)
class Record:
    text: str                    # the topology document as loaded
    allocation: dict[str, Any]   # allocation.record(), with the placement under "scheduling"
    conflist: str | None = None  # a cni lab's conflist from its own file (an inline one is in `text`)

    def to_json(self) -> dict[str, Any]:
        return {"topology": self.text, "allocation": self.allocation,
                **({"conflist": self.conflist} if self.conflist is not None else {})}

    @classmethod
    def from_json(cls, data: Any) -> "Record":
        if not isinstance(data, dict) or not isinstance(data.get("topology"), str) \
                or not isinstance(data.get("allocation"), dict) \
                or not isinstance(data.get("conflist", ""), str):
            raise ValueError("not a lab record")
        return cls(data["topology"], data["allocation"], data.get("conflist"))


def of(topo: Topology, addrs: AddressPlan, scheduling: topology.Scheduling) -> Record:
    conflist = topo.cni.conflist if topo.cni is not None and topo.cni.source != "inline" else None
    return Record(topo.text, {**allocation.record(addrs), "scheduling": scheduling.record()}, conflist)


def read_files(d: Path) -> Record:
    """The record files as they are; OSError or ValueError if they are not there or not whole."""
    conflist = d / CONFLIST
    return Record((d / TOPOLOGY).read_text(), json.loads((d / ALLOCATION).read_text()),
                  conflist.read_text() if conflist.exists() else None)


def committed(d: Path) -> Record:
    """The lab's record: the one a change in progress started from, else the record files."""
    pending = read_change(d)
    return pending.committed if pending is not None else read_files(d)


def write(d: Path, r: Record) -> None:
    """Each file through a rename: a reader sees the old file or the new one, never half of one."""
    files = [(TOPOLOGY, r.text), (ALLOCATION, json.dumps(r.allocation) + "\n")]
    if r.conflist is not None:
        files.insert(0, (CONFLIST, r.conflist))
    elif (d / CONFLIST).exists():
        (d / CONFLIST).unlink()      # the lab's list is inline now (or it has none)
    for name, text in files:
        tmp = d / f".{name}.tmp"
        tmp.write_text(text)
        tmp.rename(d / name)
        faults.point(f"record {name} written")


def load(r: Record, name: str, source: str, document_name: str,
         ) -> tuple[Topology, AddressPlan, topology.Scheduling | None]:
    """The record read back: the document read under the name it was first read under (generated
    pod names derive from it) over the recorded placement, without the pods that have no address
    (Pending); the allocation; the placement. Raises what loading raises (PodlabError for the
    document, KeyError/TypeError/ValueError for an allocation that is not one)."""
    addrs = allocation.from_record(r.allocation)
    scheduling = topology.Scheduling.from_record(r.allocation.get("scheduling"))
    topo = allocation.without_pending(replace(topology.loads(r.text, source=source, default_name=document_name,
                                                             bound=scheduling, conflist=r.conflist),
                                              name=name), addrs)
    if {p.name for p in topo.pods} != {p.name for p in addrs.pods}:
        # A record written by another podlab, whose loader made other pods of the same document
        # (one from before the cluster DNS was in every lab has no DNS pod).
        raise ValueError("its pods are not the ones its topology gives (was it made by another version of podlab?)")
    return topo, addrs, scheduling


def plan(r: Record, name: str, source: str, document_name: str) -> Plan:
    """The record as a plan (its ops), as `load` reads it."""
    topo, addrs, _ = load(r, name, source, document_name)
    return planner.build(topo, addrs)


@dataclass(frozen=True)
class PendingChange:
    """A change journalled before it was made: the record it started from, the record it makes,
    and which way it is going (`undo`: back to where it started, after it failed half way)."""
    committed: Record
    proposed: Record
    undo: bool = False
    pid: int = 0
    started: float = 0.0

    @property
    def target(self) -> Record:
        return self.committed if self.undo else self.proposed

    @property
    def other(self) -> Record:
        """The record the kernel may still partly follow."""
        return self.proposed if self.undo else self.committed


def write_change(d: Path, change: PendingChange) -> None:
    data = {"committed": change.committed.to_json(), "proposed": change.proposed.to_json(), "undo": change.undo,
            "pid": change.pid or os.getpid(), "started": change.started or time.time()}
    tmp = d / f".{CHANGE}.tmp"
    tmp.write_text(json.dumps(data) + "\n")
    tmp.rename(d / CHANGE)
    faults.point("change intent written" if not change.undo else "change undo written")


def read_change(d: Path) -> PendingChange | None:
    """The change in progress (or cut short), if any. A change.json that is not whole is never
    seen: it is written through a rename."""
    try:
        data = json.loads((d / CHANGE).read_text())
    except FileNotFoundError:
        return None
    return PendingChange(Record.from_json(data["committed"]), Record.from_json(data["proposed"]),
                         bool(data.get("undo")), int(data.get("pid") or 0), float(data.get("started") or 0))


def change_pending(d: Path) -> bool:
    return (d / CHANGE).exists()


def end_change(d: Path) -> None:
    """The change is committed (or undone): the record files are the lab's record again."""
    (d / CHANGE).unlink(missing_ok=True)
    faults.point("change ended")
