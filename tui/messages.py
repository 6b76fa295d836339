"""Messages the widgets and the thread workers exchange: small dataclasses.

Workers never touch widgets: they read the kernel (or run a command) and post one of these;
the handler, on the app's thread, updates the screen.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

from lab.inspect import Snapshot

from tui.source import Cluster, Entity, Peer, Workload


@dataclass
class ClusterRead(Message):
    cluster: Cluster


@dataclass
class EntityChosen(Message):
    """The tree's cursor rests on an entity (or the user typed its name)."""
    entity: Entity


@dataclass
class Inspected(Message):
    entity: Entity
    snapshot: Snapshot | None
    peers: dict[str, Peer] = field(default_factory=dict)   # link name -> where its veth peer lives
    error: str | None = None


@dataclass
class NftRead(Message):
    entity: Entity
    text: str


@dataclass
class WorkloadRead(Message):
    entity: Entity
    workload: Workload | None
    error: str | None = None


@dataclass
class BgpRead(Message):
    entity: Entity
    report: dict             # lab.bgp.cli.node_status's: peers, protocols, texts, or `error`


@dataclass
class PictureDrawn(Message):
    picture: Any             # rich Text


@dataclass
class JumpTo(Message):
    """Go to an entity and, once its links are read, to one of its interfaces."""
    entity: str
    iface: str | None = None


@dataclass
class Output(Message):
    """Lines for the run panel's log (str, or rich renderables)."""
    lines: list[Any]


@dataclass
class TraceDone(Message):
    trace: Any | None
    error: str | None = None


@dataclass
class Captured(Message):
    lines: list[Any]


@dataclass
class CaptureEnded(Message):
    error: str | None = None
    token: int = 0           # which capture ended (a new one may have replaced it)


@dataclass
class UpProgress(Message):
    line: str


@dataclass
class LabReady(Message):
    source: Any
