"""Shared test helpers. Integration tests need root: CI runs as root, so they never skip there."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    if os.environ.get("CI"):
        raise pytest.UsageError("CI must run the integration tests as root")
    skip = pytest.mark.skip(reason="needs root: run 'sudo make test'")
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(skip)
