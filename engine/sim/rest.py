"""Binance spot REST API (``/api/v3``) on aiohttp, over :class:`~engine.sim.exchange.Exchange`.

Parameters come from the query string and, for POST/PUT/DELETE, also from an
``application/x-www-form-urlencoded`` body; a parameter in both places takes
the query-string value (venue-protocols.md 4.1, SPOT-REST "General Information
on Endpoints"). SIGNED endpoints need the ``X-MBX-APIKEY`` header and a
signature over the raw query string + raw body (4.1, :mod:`engine.sim.auth`).

Errors are ``{"code", "msg"}`` bodies with HTTP 400 (401 for API-key errors,
409 / 400 for cancelReplace, 429 for rate limits, with ``Retry-After`` in
seconds). Every response carries ``X-MBX-USED-WEIGHT-1M``; successful order
placements carry ``X-MBX-ORDER-COUNT-10S`` and ``X-MBX-ORDER-COUNT-1D`` (6.2).
"""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qsl

import msgspec
from aiohttp import web

from engine.sim.auth import AuthError
from engine.sim.exchange import Exchange, VenueError, depth_weight, get_param, parse_int
from engine.sim.market_view import MarketView

log = logging.getLogger(__name__)

_encode = msgspec.json.encode

Handler = Callable[[dict[str, str]], Any]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encode(body), status=status, content_type="application/json")


def _parse_form(raw: str) -> dict[str, str]:
    # A parameter repeated in one place is -1101 (SPOT-ERR TOO_MANY_PARAMETERS).
    out: dict[str, str] = {}
    for k, v in parse_qsl(raw, keep_blank_values=True):
        if k in out:
            raise VenueError(-1101, "Duplicate values for a parameter detected.")
        out[k] = v
    return out


class _Api:
    """Route handlers bound to one exchange."""

    def __init__(self, exchange: Exchange, market: MarketView) -> None:
        self.exchange = exchange
        self.market = market

    def endpoint(self, fn: Handler, *, weight: int | Callable[[dict[str, str]], int], signed: bool,
                 zero_on_success: bool = False, counts_order: bool = False
                 ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """Wrap ``fn(params) -> body`` with parameter decoding, auth, weights and error bodies."""

        async def handler(request: web.Request) -> web.Response:
            ex = self.exchange
            raw_query = request.rel_url.raw_query_string
            raw_body = ""
            w = 1
            try:
                params = _parse_form(raw_query)
                if request.method in ("POST", "PUT", "DELETE") and request.can_read_body:
                    raw_body = await request.text()
                    for k, v in _parse_form(raw_body).items():
                        params.setdefault(k, v)
                w = weight(params) if callable(weight) else weight
                ex.rate.check_weight()
                if signed:
                    ex.auth.verify_rest(request.headers.get("X-MBX-APIKEY"), raw_query, raw_body,
                                        get_param(params, "timestamp"), get_param(params, "recvWindow"))
                body = fn(params)
            except (VenueError, AuthError) as e:
                ex.rate.add_weight(w)
                ex.record_error(e.code)
                err: dict[str, Any] = {"code": e.code, "msg": e.msg}
                if isinstance(e, VenueError) and e.code in (-2021, -2022):
                    # cancelReplace failures carry both legs in `data` (3.5).
                    err["data"] = e.data
                resp = _json(err, e.status)
                if e.status in (418, 429):
                    resp.headers["Retry-After"] = "60"
                resp.headers["X-MBX-USED-WEIGHT-1M"] = str(ex.rate.weight())
                return resp
            except Exception:  # noqa: BLE001 - a simulator bug must not look like a venue reply
                log.exception("REST %s %s failed", request.method, request.path)
                ex.rate.add_weight(w)
                resp = _json({"code": -1000, "msg": "An unknown error occurred while processing the request."}, 500)
                resp.headers["X-MBX-USED-WEIGHT-1M"] = str(ex.rate.weight())
                return resp
            ex.rate.add_weight(0 if zero_on_success else w)
            resp = _json(body)
            resp.headers["X-MBX-USED-WEIGHT-1M"] = str(ex.rate.weight())
            if counts_order:
                n10, n1d = ex.rate.orders()
                resp.headers["X-MBX-ORDER-COUNT-10S"] = str(n10)
                resp.headers["X-MBX-ORDER-COUNT-1D"] = str(n1d)
            return resp

        return handler

    # -- bodies ---------------------------------------------------------------------------------
    def ping(self, params: dict[str, str]) -> dict:
        return {}

    def time(self, params: dict[str, str]) -> dict:
        return {"serverTime": self.exchange.server_time_ms()}

    def exchange_info(self, params: dict[str, str]) -> dict:
        sym = get_param(params, "symbol")
        if sym is not None:
            return self.exchange.exchange_info([sym])
        syms = get_param(params, "symbols")
        if syms is not None:
            try:
                lst = msgspec.json.decode(syms)
            except msgspec.DecodeError:
                lst = None
            if not isinstance(lst, list) or not all(isinstance(s, str) for s in lst):
                raise VenueError(-1100, "Illegal characters found in parameter 'symbols'; legal range is "
                                        "'^\\[\"[A-Z0-9-_.]{1,20}\"(,\"[A-Z0-9-_.]{1,20}\"){0,}\\]$'.")
            return self.exchange.exchange_info(lst)
        return self.exchange.exchange_info()


def _depth_weight(params: dict[str, str]) -> int:
    try:
        lim = parse_int(params, "limit")
    except VenueError:
        lim = None
    return depth_weight(100 if lim is None else lim)


def make_app(exchange: Exchange, market: MarketView) -> web.Application:
    """Build the aiohttp application serving Binance spot's ``/api/v3`` endpoints.

    Routes: ``GET ping, time, depth, exchangeInfo, order, openOrders, account``;
    ``POST order, order/cancelReplace``; ``DELETE order, openOrders``.
    Weights per SPOT-REST; successful order placement / cancel cost 0 (section 0).
    """
    api = _Api(exchange, market)
    ex = exchange
    app = web.Application()
    r = app.router
    r.add_get("/api/v3/ping", api.endpoint(api.ping, weight=1, signed=False))
    r.add_get("/api/v3/time", api.endpoint(api.time, weight=1, signed=False))
    r.add_get("/api/v3/depth", api.endpoint(ex.depth, weight=_depth_weight, signed=False))
    r.add_get("/api/v3/exchangeInfo", api.endpoint(api.exchange_info, weight=20, signed=False))
    r.add_post("/api/v3/order", api.endpoint(ex.place_order, weight=1, signed=True,
                                             zero_on_success=True, counts_order=True))
    r.add_delete("/api/v3/order", api.endpoint(ex.cancel_order, weight=1, signed=True, zero_on_success=True))
    r.add_get("/api/v3/order", api.endpoint(ex.query_order, weight=4, signed=True))
    r.add_post("/api/v3/order/cancelReplace", api.endpoint(ex.cancel_replace, weight=1, signed=True,
                                                           zero_on_success=True, counts_order=True))
    r.add_get("/api/v3/openOrders", api.endpoint(
        ex.open_orders, weight=lambda p: 6 if get_param(p, "symbol") else 80, signed=True))
    r.add_delete("/api/v3/openOrders", api.endpoint(ex.cancel_open_orders, weight=1, signed=True,
                                                    zero_on_success=True))
    r.add_get("/api/v3/account", api.endpoint(ex.account, weight=20, signed=True))
    return app
