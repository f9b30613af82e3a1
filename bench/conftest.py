"""Benchmarks are opt-in: run them with ``pytest bench`` (``pytest`` alone collects tests/ only)."""
from __future__ import annotations

import os
import platform
import sys

import pytest

from engine.recording import data_dir


@pytest.fixture(scope="session")
def need_data():
    """Map a path relative to the data folder to an existing Path (skip, or fail under CI)."""
    def get(rel: str):
        p = data_dir() / rel
        if not p.exists():
            msg = f"recorded data not found at {p} (set MM_DATA_DIR)"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(msg)
            pytest.skip(msg)
        return p
    return get


def pytest_report_header(config):
    import Cython
    import msgspec
    import numpy
    try:
        import order_book
        ob = getattr(order_book, "__version__", "installed")
    except ImportError:
        ob = "missing"
    return (f"mm-engine bench: python {sys.version.split()[0]} {platform.machine()} "
            f"{platform.processor() or ''} cython {Cython.__version__} msgspec {msgspec.__version__} "
            f"numpy {numpy.__version__} order-book {ob}")
