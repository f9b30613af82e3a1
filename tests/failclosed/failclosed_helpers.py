"""Shared pieces of the fail-closed tests (not a test module; imported by them).

* :func:`run_loop` -- every async test runs on asyncio and on uvloop (style habit 12), bounded in time;
* :func:`run_config` -- a RunConfig against a running simulator with tight liveness and back-off;
* :class:`Resting` -- keeps a few far-from-touch post-only bids resting on the venue (so a
  cancel-all has something to cancel) and records every placement with the state it saw;
* :class:`Timeline` -- the run's observer: every fail-closed event with its time, plus the
  venue's open orders at each disconnect and at each confirmed cancel-all.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import uvloop

from engine.bus import BUY, OrderError, Strategy, TradingDisabled
from engine.config import LivenessConfig, RateLimitConfig, ReconnectConfig, StalenessConfig
from engine.live.runner import RunConfig
from engine.orders.signing import HmacSigner
from engine.sim.auth import DEFAULT_API_KEY, DEFAULT_API_SECRET


@pytest.fixture(params=["asyncio", "uvloop"])
def run_loop(request):
    """Run a coroutine on a fresh loop of each kind, bounded in time (s)."""
    factory = asyncio.new_event_loop if request.param == "asyncio" else uvloop.new_event_loop

    def runner(coro, timeout: float = 60.0):
        with asyncio.Runner(loop_factory=factory) as r:
            return r.run(asyncio.wait_for(coro, timeout))

    return runner


def fast_liveness(depth_ms: int = 400, ping_ms: int = 1000, pong_ms: int = 400) -> LivenessConfig:
    """Liveness thresholds for a synthetic market at real time (diffs every 100 ms)."""
    return LivenessConfig(ping_interval_ms=ping_ms, pong_timeout_ms=pong_ms,
                          max_staleness=StalenessConfig(depth_ms=depth_ms))


def fast_reconnect(**kw: Any) -> ReconnectConfig:
    """Short back-off and bounds."""
    base = dict(initial_ms=100, max_ms=800, multiplier=2.0, jitter=0.2, max_attempts=10, connect_timeout_ms=3000,
                resync_timeout_ms=3000, max_connection_age_ms=0)
    base.update(kw)
    return ReconnectConfig(**base)


def run_config(handle: Any, strategy: Strategy, **kw: Any) -> RunConfig:
    """A RunConfig against ``handle`` (the simulator): REST fallback on, limiter on, signals off."""
    kw.setdefault("signer", HmacSigner(DEFAULT_API_KEY, DEFAULT_API_SECRET))
    kw.setdefault("handle_sigint", False)
    kw.setdefault("handle_sigusr1", False)
    kw.setdefault("rest_url", handle.rest_url)
    kw.setdefault("liveness", fast_liveness())
    kw.setdefault("reconnect", fast_reconnect())
    kw.setdefault("rate_limit", RateLimitConfig())
    kw.setdefault("timer_interval_s", 0.05)
    kw.setdefault("max_reconnects", None)
    kw.setdefault("max_ws_reconnects", None)
    kw.setdefault("cancel_timeout_s", 1.0)
    kw.setdefault("seed", 1)
    return RunConfig(streams_url=handle.streams_url, ws_api_url=handle.ws_api_url, strategy=strategy, **kw)


class Resting(Strategy):
    """Keep ``n`` post-only bids ``depth`` ticks under the best bid; record every placement.

    ``placements`` holds ``(monotonic s, client order id, book valid, halted, sender ready)``
    as seen *by the context* at the moment ``place_limit`` returned.
    """

    def __init__(self, symbol: str = "BTCUSDT", n: int = 3, depth: int = 3000, churn_s: float = 0.0) -> None:
        self.symbol = symbol
        self.n = n
        self.depth = depth
        # > 0: cancel the oldest order once it is this old (so placing goes on all the time).
        self.churn_s = churn_s
        self._placed_at: dict[str, float] = {}
        self.placements: list[tuple[float, str, bool, bool, bool]] = []
        self.refused = 0
        self.invalid_books_seen = 0
        self.books: list[float] = []
        self.events: list[tuple[float, str, str]] = []

    def on_book(self, symbol: str, book: Any) -> None:
        if not book.valid:
            self.invalid_books_seen += 1
            return
        self.books.append(time.monotonic())
        self._top_up(book.best_bid())

    def on_timer(self, now_ns: int) -> None:
        if self.churn_s:
            now = time.monotonic()
            for o in self.ctx.open_orders(self.symbol):
                t = self._placed_at.get(o.client_order_id)
                if t is not None and now - t > self.churn_s and not o.cancel_pending:
                    self.ctx.cancel(o.client_order_id)
                    break
        v = self.ctx.book(self.symbol)
        if v is not None and v.valid:
            self._top_up(v.best_bid())

    def on_connection(self, event: Any) -> None:
        self.events.append((time.monotonic(), event.name, event.state))

    def _top_up(self, best_bid: int) -> None:
        ctx = self.ctx
        live = [o for o in ctx.open_orders(self.symbol) if not o.cancel_pending]
        for i in range(self.n - len(live)):
            price = best_bid - self.depth - i
            try:
                cid = ctx.place_limit(self.symbol, BUY, price, ctx.min_qty_steps(self.symbol, price))
            except (OrderError, TradingDisabled):
                self.refused += 1
                return
            self.placements.append((time.monotonic(), cid, ctx.book_valid(self.symbol), ctx.halted,
                                    ctx.sender.ready))
            self._placed_at[cid] = time.monotonic()


class Timeline:
    """Observer of a run: ``(monotonic s, kind, payload)`` per event, and venue snapshots."""

    def __init__(self, exchange: Any = None, symbol: str = "BTCUSDT") -> None:
        self.exchange = exchange
        self.symbol = symbol
        self.items: list[tuple[float, str, Any]] = []
        self.open_at_disconnect: list[int] = []
        self.open_at_confirm: list[tuple[str, str, int]] = []

    def __call__(self, kind: str, payload: Any) -> None:
        self.items.append((time.monotonic(), kind, payload))
        if self.exchange is None:
            return
        if kind == "disconnect":
            self.open_at_disconnect.append(len(self.exchange.open_order_ids(self.symbol)))
        elif kind == "cancel_all_confirmed":
            self.open_at_confirm.append((payload.kind, payload.route, len(self.exchange.open_order_ids(self.symbol))))

    def times(self, kind: str) -> list[float]:
        """Times of the events of ``kind``."""
        return [t for t, k, _ in self.items if k == kind]

    def of(self, kind: str) -> list[Any]:
        """Payloads of the events of ``kind``."""
        return [p for _, k, p in self.items if k == kind]


async def drop_streams_at(handle: Any, delay_s: float) -> int:
    """Close the simulator's market-stream connections after ``delay_s``; return how many."""
    from engine.sim.streams import StreamConnection

    await asyncio.sleep(delay_s)
    conns = [c for c in handle.hub.connections if isinstance(c, StreamConnection)]
    for c in conns:
        c.close()
    return len(conns)


async def drop_ws_api_at(handle: Any, delay_s: float) -> int:
    """Close the simulator's WS API connections after ``delay_s``; return how many."""
    from engine.sim.server import WsApiConnection

    await asyncio.sleep(delay_s)
    conns = [c for c in handle.hub.connections if isinstance(c, WsApiConnection)]
    for c in conns:
        c.close()
    return len(conns)
