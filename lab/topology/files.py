"""Topology files: finding one by path or built-in name, and reading it as text safely.

Whatever is on disk (a directory, megabytes of junk, a binary), load gives a Topology or a
PodlabError; the text itself is checked by lab.topology.build.loads.
"""
from __future__ import annotations

from pathlib import Path

from lab.errors import PodlabError, Problem, TopologyError
from lab.model import Topology
from lab.topology.build import loads
from lab.topology.wording import did_you_mean

MAX_FILE_BYTES = 8 * 1024 * 1024


def load(path: str | Path) -> Topology:
    """Read and validate a topology file; the lab name defaults to the file's stem."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise PodlabError(f"{path}: no such topology file") from None
    except IsADirectoryError:
        raise PodlabError(f"{path} is a directory; give a topology YAML file") from None
    except OSError as e:
        raise PodlabError(f"cannot read {path}: {e.strerror or e}") from None
    if len(data) > MAX_FILE_BYTES:
        too_big = f"larger than {MAX_FILE_BYTES // 2**20} MiB; a topology is a few lines (replicas: makes many pods)"
        raise TopologyError(str(path), [Problem("(file)", too_big)])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        not_text = f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); is this a YAML file?"
        raise TopologyError(str(path), [Problem("(file)", not_text, line)]) from None
    return loads(text, source=str(path), default_name=path.stem)


def resolve(name_or_path: str, topologies_dir: Path) -> Path:
    """A topology file: an existing path, or a name in topologies/ ("vxlan" or "vxlan.yaml")."""
    given = Path(name_or_path)
    if given.is_file():
        return given
    if "/" not in name_or_path and name_or_path not in ("", ".", ".."):
        for candidate in (name_or_path, f"{name_or_path}.yaml", f"{name_or_path}.yml"):
            path = Path(topologies_dir) / candidate
            if path.is_file():
                return path
    available = available_topologies(topologies_dir)
    hint = did_you_mean(given.stem, available)
    listing = ", ".join(available) if available else f"none found in {topologies_dir}"
    raise PodlabError(f"no topology file or name {name_or_path!r}: {hint}give a path to a YAML file "
                      f"or one of the built-in topologies: {listing}")


def available_topologies(topologies_dir: Path) -> list[str]:
    """Names of the topology files in a directory, without their .yaml suffix."""
    try:
        return sorted(p.stem for p in Path(topologies_dir).iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    except OSError:
        return []
