"""Shared fixtures: recorded data location and the event-loop matrix."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.recording import data_dir


def _need(path: Path) -> Path:
    if path.exists():
        return path
    msg = f"recorded data not found at {path} (set MM_DATA_DIR to the shared data folder)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg + "; under CI the data must be present")
    pytest.skip(msg)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The recorded market data folder (skips, or fails under CI=true, if absent)."""
    return _need(data_dir())


@pytest.fixture(scope="session")
def need_data():
    """Return a function mapping a path relative to the data folder to an existing Path."""
    def get(rel: str) -> Path:
        return _need(data_dir() / rel)
    return get
