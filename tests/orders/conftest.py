"""Fixtures of the order-entry tests: every async test runs on asyncio and on uvloop (style habit 12)."""
from __future__ import annotations

import asyncio

import pytest
import uvloop


@pytest.fixture(params=["asyncio", "uvloop"])
def run_loop(request):
    """Run a coroutine on a fresh loop of each kind, bounded in time (s)."""
    factory = asyncio.new_event_loop if request.param == "asyncio" else uvloop.new_event_loop

    def runner(coro, timeout: float = 60.0):
        with asyncio.Runner(loop_factory=factory) as r:
            return r.run(asyncio.wait_for(coro, timeout))

    return runner
