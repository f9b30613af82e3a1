"""Start the loopback Binance simulator: stream server, WS API and REST on 127.0.0.1.

One picows server (one event loop) routes by request path like Binance's hosts
(venue-protocols.md 1.1, section 2, 3.1):

* ``/ws``, ``/ws/<stream>[/<stream>...]``: raw payloads (subscribe later with ``SUBSCRIBE``);
* ``/stream?streams=a/b/c``: combined envelope ``{"stream":..,"data":..}``;
* the USD-M 2026 route prefixes ``/public`` and ``/market`` are accepted before both (0, 1.7);
* ``/ws-api/v3``: the trading side's ``engine.sim.wsapi.WsApiSession``
  (with the fault plan ``SimulatorHandle.ws_api_faults``, :mod:`engine.sim.faults`,
  when one is set).

Faults: ``start_simulator(..., faults=FaultPlan.profile("chaos", seed))`` injects
the plan's stream faults through the hub and its WS API faults through the
sessions (:class:`engine.sim.faults.FaultPlan`); ``plan.injected`` counts them.

The REST app of the trading side (``engine.sim.rest.make_app``, aiohttp) runs on a
second port. Both trading-side parts are imported lazily; when they are missing
the market-data side still runs and :func:`describe` says why they are not.

Example
-------
>>> handle = await start_simulator("btcusdt_20240808.gz")       # doctest: +SKIP
>>> print("\\n".join(describe(handle)))                           # doctest: +SKIP
>>> await handle.ended; await handle.close()                     # doctest: +SKIP
"""
from __future__ import annotations

import asyncio
import importlib
import logging
import os
from typing import Any, Callable, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

from picows import WSListener, WSUpgradeRequest, WSUpgradeResponse, WSUpgradeResponseWithListener, ws_create_server

from engine.instruments import USDM

from .market import MarketSource, VenueMarket, run_source
from .playback import PlaybackSource
from .streams import (SPOT_LIMITS, USDM_LIMITS, Connection, StreamConnection, StreamHub, StreamLimits,
                      valid_stream)
from .synthetic import SyntheticSource

log = logging.getLogger(__name__)

WS_API_PATH = "/ws-api/v3"
# USD-M split its stream host into /public (depth, bookTicker) and /market (trades, ...)
# (venue-protocols.md section 0); both prefixes route to the same streams here.
_ROUTE_PREFIXES = ("/public", "/market")


class WsApiConnection(Connection):
    """A ``/ws-api/v3`` client handed to the trading side's ``WsApiSession``.

    The session gets ``send(data: bytes)``; this connection calls
    ``session.on_message(data)`` per TEXT frame and ``session.on_close()`` at the end.
    Keepalive follows the hub's limits; the message limit is the WS API's own business.
    """

    def __init__(self, hub: StreamHub, session_factory: Callable[[Callable[[bytes], None]], Any]) -> None:
        super().__init__(hub, limit_incoming=False)
        self._factory = session_factory
        self.session: Any = None

    def connected(self) -> None:
        self.session = self._factory(self.send)

    def on_message(self, data: bytes) -> None:
        if self.session is not None:
            self.session.on_message(data)

    def disconnected(self) -> None:
        if self.session is not None:
            self.session.on_close()
            self.session = None


def make_source(spec: Any = None, *, speed: float | None = 1.0, **kwargs: Any) -> MarketSource:
    """Return a market source from a spec.

    Parameters
    ----------
    spec : None, path, sequence of paths, or a source
        None: the synthetic market (:class:`~engine.sim.synthetic.SyntheticSource`);
        path(s): a recorded session (:class:`~engine.sim.playback.PlaybackSource`);
        an object with ``bind`` and ``events``: returned as is.
    speed : float or None
        Pacing factor of a source built here (None or 0: as fast as possible).
    **kwargs
        Passed to the source's constructor.
    """
    if spec is None:
        return SyntheticSource(speed=speed, **kwargs)
    if hasattr(spec, "events") and hasattr(spec, "bind"):
        return spec
    if isinstance(spec, (str, os.PathLike)) or isinstance(spec, Sequence):
        return PlaybackSource(spec, speed=speed, **kwargs)
    raise TypeError(f"cannot make a market source from {spec!r}")


class SimulatorHandle:
    """A running simulator.

    Attributes
    ----------
    market : VenueMarket
        The venue's market (the trading side's ``MarketView``).
    hub : StreamHub
        Stream connections; fault injection lives here.
    source : MarketSource
    exchange : object or None
        The trading side's exchange, if it could be created.
    streams_url : str
        Base URL of the stream server, e.g. ``ws://127.0.0.1:PORT`` (append ``/ws/<stream>``
        or ``/stream?streams=..``).
    ws_api_url : str
        ``ws://127.0.0.1:PORT/ws-api/v3``.
    rest_url : str or None
        ``http://127.0.0.1:PORT`` of the REST app, None if it is not running.
    unavailable : dict
        Why a trading-side part is not running (``"ws-api"``, ``"rest"`` -> reason).
    ended : asyncio.Future
        Resolves to the number of market events processed when the source has ended
        (raises if the market failed; cancelled if closed before the end).
    ws_api_faults : engine.sim.faults.WsApiFaults or None
        Fault plan of the WS API sessions opened from now on (None: no faults).
    faults : engine.sim.faults.FaultPlan or None
        The simulator-wide fault plan given to :func:`start_simulator` (None: none).
    """

    def __init__(self, market: VenueMarket, hub: StreamHub, source: MarketSource, exchange: Any) -> None:
        self.market = market
        self.hub = hub
        self.source = source
        self.exchange = exchange
        self.host = "127.0.0.1"
        self.port = 0
        self.rest_port: int | None = None
        self.unavailable: dict[str, str] = {}
        self.ws_api_faults: Any = None
        self.faults: Any = None
        self.ended: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._server: asyncio.AbstractServer | None = None
        self._rest_runner: Any = None
        self._task: asyncio.Task[int] | None = None

    @property
    def streams_url(self) -> str:
        """Base URL of the stream server."""
        return f"ws://{self.host}:{self.port}"

    @property
    def ws_api_url(self) -> str:
        """URL of the WebSocket API."""
        return f"ws://{self.host}:{self.port}{WS_API_PATH}"

    @property
    def rest_url(self) -> str | None:
        """Base URL of the REST app, or None if it is not running."""
        return None if self.rest_port is None else f"http://{self.host}:{self.rest_port}"

    @property
    def started(self) -> bool:
        """True once the market has been started."""
        return self._task is not None

    def start(self) -> None:
        """Start feeding the market (idempotent); :attr:`ended` resolves when it ends."""
        if self._task is not None:
            return
        speed = getattr(self.source, "speed", None)
        self._task = asyncio.get_running_loop().create_task(
            run_source(self.market, self.source.events(), speed), name="sim-market")
        self._task.add_done_callback(self._on_market_done)

    def _on_market_done(self, task: asyncio.Task[int]) -> None:
        if self.faults is not None and self.hub.plan is not None:
            # Nothing drives the market clock any more: end stalls and spikes, send held frames.
            self.faults.finish()
            self.hub.flush_held()
        if self.ended.done():
            return
        if task.cancelled():
            self.ended.cancel()
        elif task.exception() is not None:
            log.error("the simulated market failed", exc_info=task.exception())
            self.ended.set_exception(task.exception())  # type: ignore[arg-type]
        else:
            self.ended.set_result(task.result())

    async def close(self) -> None:
        """Stop the market, drop every connection, close the servers."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if not self.ended.done():
            self.ended.cancel()
        await self.hub.stop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._rest_runner is not None:
            await self._rest_runner.cleanup()
            self._rest_runner = None

    async def __aenter__(self) -> "SimulatorHandle":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- routing ------------------------------------------------------------------------------
    def route(self, request: WSUpgradeRequest) -> WSListener | WSUpgradeResponseWithListener | None:
        """Pick the listener for an upgrade request by its path (None: 404)."""
        parts = urlsplit(request.path.decode("latin-1"))
        path = unquote(parts.path)
        for prefix in _ROUTE_PREFIXES:
            if path.startswith(prefix + "/"):
                path = path[len(prefix):]
                break
        if path == WS_API_PATH:
            # ?returnRateLimits=false turns off rateLimits in responses (venue-protocols.md 3.2).
            rl = parse_qs(parts.query).get("returnRateLimits", [""])[0].lower()
            return self._ws_api({"return_rate_limits": False} if rl == "false" else {})
        if path in ("/ws", "/ws/"):
            return StreamConnection(self.hub, [], combined=False)
        if path.startswith("/ws/"):
            return self._streams([s for s in path[4:].split("/") if s], combined=False)
        if path in ("/stream", "/stream/"):
            names = parse_qs(parts.query).get("streams", [""])[0]
            return self._streams([s for s in names.split("/") if s], combined=True)
        return None

    def _streams(self, names: list[str], combined: bool) -> WSListener | WSUpgradeResponseWithListener:
        bad = [n for n in names if not valid_stream(n)]
        if bad or len(names) > self.hub.limits.max_streams:
            body = f'{{"code":-1100,"msg":"Invalid stream name: {bad[0] if bad else "too many streams"}"}}'
            return WSUpgradeResponseWithListener(
                WSUpgradeResponse.create_error_response(400, body.encode(), {"Content-Type": "application/json"}),
                None)
        return StreamConnection(self.hub, names, combined=combined)

    def _ws_api(self, options: dict[str, Any]) -> WSListener | WSUpgradeResponseWithListener:
        reason = self.unavailable.get("ws-api")
        if reason is None:
            try:
                session_cls = importlib.import_module("engine.sim.wsapi").WsApiSession
            except (ImportError, AttributeError) as e:
                reason = f"engine.sim.wsapi.WsApiSession is not available: {e}"
        if reason is not None:
            log.error("refusing a WS API connection: %s", reason)
            return WSUpgradeResponseWithListener(
                WSUpgradeResponse.create_error_response(503, reason.encode()), None)
        exchange, market = self.exchange, self.market
        faults = self.ws_api_faults
        if faults is None:
            return WsApiConnection(self.hub, lambda send: session_cls(exchange, market, send, **options))
        conn = WsApiConnection(self.hub, lambda send: session_cls(exchange, market, send, faults=faults,
                                                                   close=lambda: conn.close(), **options))
        return conn


def _make_exchange(market: VenueMarket) -> tuple[Any, str | None]:
    # The trading side's exchange: engine.sim.exchange.make_exchange(market) or Exchange(market).
    try:
        mod = importlib.import_module("engine.sim.exchange")
    except ImportError as e:
        return None, f"engine.sim.exchange is not importable: {e}"
    factory = getattr(mod, "make_exchange", None) or getattr(mod, "Exchange", None)
    if factory is None:
        return None, "engine.sim.exchange has neither make_exchange nor Exchange"
    try:
        return factory(market), None
    except Exception as e:  # a trading-side bug must not take the market data down
        log.exception("creating the simulated exchange failed")
        return None, f"creating the exchange failed: {e!r}"


async def _start_rest(handle: SimulatorHandle, host: str, port: int) -> None:
    try:
        make_app = importlib.import_module("engine.sim.rest").make_app
        from aiohttp import web
    except (ImportError, AttributeError) as e:
        handle.unavailable["rest"] = f"engine.sim.rest.make_app / aiohttp not available: {e}"
        return
    runner = web.AppRunner(make_app(handle.exchange, handle.market))
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    handle._rest_runner = runner
    handle.rest_port = runner.addresses[0][1]


async def start_simulator(
    source: Any = None,
    host: str = "127.0.0.1",
    port: int = 0,
    rest_port: int = 0,
    *,
    limits: StreamLimits | None = None,
    exchange: Any = None,
    exchange_factory: Callable[[VenueMarket], Any] | None = None,
    autostart: bool = True,
    rest: bool = True,
    ws_api_faults: Any = None,
    faults: Any = None,
) -> SimulatorHandle:
    """Start the simulator on the running loop and return its handle.

    Parameters
    ----------
    source : None, path(s) or MarketSource
        See :func:`make_source` (None: the synthetic market at real time).
    host : str
        Interface to listen on (loopback by default).
    port : int
        Stream + WS API port; 0 picks a free port.
    rest_port : int
        REST port; 0 picks a free port.
    limits : StreamLimits, optional
        Stream connection rules; default spot's (:data:`SPOT_LIMITS`) or USD-M's
        (:data:`USDM_LIMITS`) by the source's market.
    exchange : object, optional
        The trading side's exchange; default ``engine.sim.exchange.make_exchange(market)``
        or ``engine.sim.exchange.Exchange(market)``, whichever exists, if importable.
    exchange_factory : callable, optional
        ``f(market) -> exchange``, used instead of ``exchange`` when the exchange needs
        the venue market.
    autostart : bool
        Start the market at once; if False call :meth:`SimulatorHandle.start` later
        (e.g. after clients have connected, so they see the first frame).
    rest : bool
        Start the REST app if the trading side provides it.
    ws_api_faults : str, FaultProfile or WsApiFaults, optional
        Fault plan of the WS API (:mod:`engine.sim.faults`; a profile name uses seed 0).
    faults : FaultPlan, PlanProfile or str, optional
        Simulator-wide fault plan (:class:`engine.sim.faults.FaultPlan`: streams and WS API;
        a profile name uses seed 0). Exclusive with ``ws_api_faults`` (a plan carries its own
        WS API part; pass ``FaultPlan(..., ws_api=WsApiFaults(...))`` to combine). A plan that
        injects nothing (``"none"``) changes nothing on the wire.

    Raises
    ------
    ValueError
        Both ``faults`` and ``ws_api_faults`` given, or an unknown profile name.
    """
    plan = None
    if faults is not None:
        if ws_api_faults is not None:
            raise ValueError("give either faults= (a FaultPlan) or ws_api_faults=, not both")
        plan = importlib.import_module("engine.sim.faults").make_plan(faults)
    src = make_source(source)
    market = VenueMarket(speed=getattr(src, "speed", None))
    src.bind(market)
    if limits is None:
        limits = USDM_LIMITS if getattr(src, "market", None) == USDM else SPOT_LIMITS
    hub = StreamHub(limits)
    market.add_stream_listener(hub.publish)
    reason = None
    if exchange_factory is not None:
        exchange = exchange_factory(market)
    elif exchange is None:
        exchange, reason = _make_exchange(market)
    handle = SimulatorHandle(market, hub, src, exchange)
    if ws_api_faults is not None:
        handle.ws_api_faults = importlib.import_module("engine.sim.faults").make_faults(ws_api_faults)
    if plan is not None:
        handle.faults = plan
        plan.bind(lambda: market.event_time_ms)
        # Only the parts that inject anything are wired in: "none" leaves every path as it was.
        if plan.streams_active:
            hub.plan = plan
        if plan.ws_api.active:
            handle.ws_api_faults = plan.ws_api
    if reason is not None:
        handle.unavailable["ws-api"] = reason
        handle.unavailable["rest"] = reason
    else:
        try:
            importlib.import_module("engine.sim.wsapi").WsApiSession
        except (ImportError, AttributeError) as e:
            handle.unavailable["ws-api"] = f"engine.sim.wsapi.WsApiSession is not available: {e}"
    handle.host = host
    try:
        handle._server = await ws_create_server(
            handle.route, host, port,
            # Pings and pongs are handled by the hub (Binance's payload echo and timeouts).
            enable_auto_ping=False, enable_auto_pong=False,
            websocket_handshake_timeout=5, logger_name="sim",
        )
        handle.port = handle._server.sockets[0].getsockname()[1]
        if rest and "rest" not in handle.unavailable:
            await _start_rest(handle, host, rest_port)
        elif not rest:
            handle.unavailable["rest"] = "disabled"
        hub.start()
        if autostart:
            handle.start()
    except BaseException:
        await handle.close()
        raise
    return handle


def describe(handle: SimulatorHandle) -> list[str]:
    """Return the three lines the CLI prints: ``streams ws://..``, ``ws-api ws://..``, ``rest http://..``.

    A part that is not running says why, e.g. ``rest unavailable (engine.sim.rest ...)``.
    """
    ws_api = handle.ws_api_url if "ws-api" not in handle.unavailable \
        else f"unavailable ({handle.unavailable['ws-api']})"
    rest = handle.rest_url or f"unavailable ({handle.unavailable.get('rest', 'not started')})"
    return [f"streams {handle.streams_url}", f"ws-api {ws_api}", f"rest {rest}"]


__all__ = ["SimulatorHandle", "WsApiConnection", "describe", "make_source", "start_simulator"]
