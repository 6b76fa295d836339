"""`make demo`'s command: brings up the default lab, checks it, says what to try next."""
import io

import pytest
from labcheck import assert_no_residue, root_netns_state

from lab import api, cli


def test_demo_brings_up_checks_and_guides(monkeypatch):
    if "default" in api.running():
        pytest.fail("a lab named 'default' is already up on this machine; take it down to run this test")
    before = root_netns_state()
    out, err = io.StringIO(), io.StringIO()
    try:
        code = cli.main(["demo"], out, err)
        text = out.getvalue()
        assert code == 0, text + err.getvalue()
        assert "PASS" in text and "what to try next" in text and "nginx-" in text
        lab = api.Lab("default")
        names = [op.ns for op in lab.plan.ops if hasattr(op, "hostname")]
    finally:
        if "default" in api.running():
            api.down("default")
    assert_no_residue("default", names)
    assert root_netns_state() == before
