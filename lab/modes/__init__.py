"""Mode planners, registered by name. Each adds what is particular to its design on top of
the wiring every mode shares (lab.modes.common)."""
from __future__ import annotations

from collections.abc import Callable

from lab.addressing import AddressPlan
from lab.errors import PodlabError
from lab.model import Topology
from lab.ops import Op

ModePlanner = Callable[[Topology, AddressPlan], list[Op]]
_MODES: dict[str, ModePlanner] = {}


def register(name: str) -> Callable[[ModePlanner], ModePlanner]:
    def add(fn: ModePlanner) -> ModePlanner:
        _MODES[name] = fn
        return fn
    return add


def known() -> list[str]:
    return sorted(_MODES)


def planner(name: str) -> ModePlanner:
    try:
        return _MODES[name]
    except KeyError:
        raise PodlabError(f"unknown mode {name!r}: known modes are {', '.join(known())}") from None


from lab.modes import l2, l3, vxlan  # noqa: E402,F401  (registration)
