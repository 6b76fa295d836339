"""Fixtures that build small real labs (unique names) and prove nothing is left after them."""
from __future__ import annotations

import secrets

import pytest
from labcheck import assert_no_residue, root_netns_state

from lab import api, state


@pytest.fixture(scope="module")
def lab_from_yaml(tmp_path_factory):
    """Build labs from YAML text; every lab is taken down at the end and checked for residue."""
    made: list[tuple[str, list[str]]] = []
    before = root_netns_state()

    def build(text: str, prefix: str = "it") -> api.Lab:
        name = f"{prefix}-{secrets.token_hex(3)}"
        path = tmp_path_factory.mktemp("topo") / f"{name}.yaml"
        path.write_text(text)
        lab = api.up(api.load_topology(str(path), name))
        names = [op.ns for op in lab.plan.ops if hasattr(op, "hostname")]
        made.append((name, names))
        return lab

    yield build
    for name, names in made:
        if state.lab_dir(name).exists():
            api.down(name)
        assert_no_residue(name, names)
    assert root_netns_state() == before, "the root network namespace changed"
