"""Binance REST over aiohttp: the cancel-all fallback route and USD-M's dead man's switch.

The engine trades over the WebSocket API; REST is its **second route** to the
venue, used when the WS API connection is down or does not answer
(:mod:`engine.live.supervisor`):

* spot ``DELETE /api/v3/openOrders`` (cancel every open order of a symbol; weight
  1, ``-2011`` when nothing is open), ``GET /api/v3/openOrders`` (weight 6 with a
  symbol) to confirm, ``DELETE /api/v3/order`` by ``origClientOrderId``;
* USD-M ``POST /fapi/v1/countdownCancelAll`` (weight 10, venue-protocols.md 8.1):
  the venue cancels every open order of the symbol when ``countdownTime`` ms pass
  without a new call. :class:`DeadMansSwitch` re-arms it on a heartbeat and
  disarms it (``countdownTime=0``) at a clean stop. Spot has no equivalent (8.1).

Signing (4.1): parameters percent-encoded in the order given, ``timestamp``
(+ ``recvWindow``) appended, HMAC-SHA256 hex (or Ed25519 base64, itself
percent-encoded, 4.3) over that exact query string, which is sent byte for byte
(``yarl.URL(..., encoded=True)``); the key goes in ``X-MBX-APIKEY``. Every
request takes its weight from the shared :class:`~engine.ratelimit.RateLimiter`
first (cancels are priority requests) and every response feeds it back
(``X-MBX-USED-WEIGHT-*``, ``Retry-After``, 429 / 418,
:meth:`~engine.ratelimit.RateLimiter.on_rest_response`). Error bodies are
``{"code", "msg"}`` (:class:`RestError`).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Iterable

import aiohttp
import msgspec
import yarl

from engine.orders.signing import Signer

log = logging.getLogger(__name__)

# Request weights (SPOT-REST; USD-M countdownCancelAll from venue-protocols.md 8.1).
_W_CANCEL_ALL = 1
_W_CANCEL = 1
_W_OPEN_ORDERS = 6
_W_COUNTDOWN = 10
# "Unknown order sent." -- nothing to cancel (6.1).
_UNKNOWN_ORDER = -2011


class RestError(Exception):
    """An error answer from the REST API (or a request refused locally by the rate limiter).

    Attributes
    ----------
    status : int
        HTTP status (0 for a local refusal).
    code : int
        Binance error code from the body (0 if none).
    msg : str
    """

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(f"HTTP {status}, code {code}: {msg}")
        self.status = status
        self.code = code
        self.msg = msg


class RestClient:
    """Signed REST requests to one venue (spot ``/api/v3``, USD-M ``/fapi/v1``).

    Parameters
    ----------
    base_url : str
        ``https://api.binance.com``, or the simulator's ``handle.rest_url``.
    signer : Signer
    recv_window_ms : int, optional
        ``recvWindow`` of signed requests (4.4); None sends none.
    limiter : RateLimiter, optional
        Shared with the WS API (the venue counts weight per IP, 6.2).
    timeout_s : float
        Bound of one request, s.
    on_ban : callable, optional
        ``f(detail)`` on an HTTP 418 (IP banned).

    Attributes
    ----------
    requests, errors, rate_limited_local : int
    """

    def __init__(self, base_url: str, signer: Signer, *, recv_window_ms: int | None = 5000, limiter: Any = None,
                 timeout_s: float = 5.0, on_ban: Callable[[str], None] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.signer = signer
        self.recv_window_ms = recv_window_ms
        self.limiter = limiter
        self.timeout_s = timeout_s
        self.on_ban = on_ban
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0
        self.errors = 0
        self.rate_limited_local = 0

    def __repr__(self) -> str:
        return f"RestClient({self.base_url}, requests={self.requests}, errors={self.errors})"

    async def start(self) -> None:
        """Open the HTTP session (connection pool)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the request --------------------------------------------------------------------------------
    async def signed(self, method: str, path: str, params: Iterable[tuple[str, Any]], *, weight: int,
                     priority: bool = False, timeout_s: float | None = None) -> Any:
        """Send a SIGNED request (query string) and return the decoded JSON body.

        Raises
        ------
        RestError
            An error status (body ``{"code", "msg"}``), or a local rate-limit refusal (status 0).
        asyncio.TimeoutError, aiohttp.ClientError
            No answer / transport failure.
        """
        lim = self.limiter
        if lim is not None and not lim.try_acquire(weight, 0, priority=priority):
            self.rate_limited_local += 1
            raise RestError(0, 0, f"{method} {path} held back by the local rate limiter")
        q = list(params)
        q.append(("timestamp", time.time_ns() // 1_000_000))
        if self.recv_window_ms is not None:
            q.append(("recvWindow", self.recv_window_ms))
        query = self.signer.signed_rest_query(q)
        url = yarl.URL(f"{self.base_url}{path}?{query}", encoded=True)
        await self.start()
        assert self._session is not None
        self.requests += 1
        timeout = aiohttp.ClientTimeout(total=timeout_s if timeout_s is not None else self.timeout_s)
        async with self._session.request(method, url, headers={"X-MBX-APIKEY": self.signer.api_key},
                                         timeout=timeout) as resp:
            raw = await resp.read()
            headers = dict(resp.headers)
            status = resp.status
        try:
            body = msgspec.json.decode(raw) if raw else None
        except msgspec.DecodeError:
            body = None
        code = body.get("code") if isinstance(body, dict) and status >= 400 else None
        if lim is not None:
            try:
                lim.on_rest_response(status, headers, code if isinstance(code, int) else None)
            except Exception:  # noqa: BLE001 - feedback must not hide the answer
                log.exception("REST rate-limit feedback failed")
        if status == 418 and self.on_ban is not None:
            self.on_ban(f"418 from REST {path}: {body!r}")
        if status >= 400:
            self.errors += 1
            msg = body.get("msg", "") if isinstance(body, dict) else raw[:200].decode("latin-1")
            raise RestError(status, code if isinstance(code, int) else 0, str(msg))
        return body

    # -- spot ---------------------------------------------------------------------------------------
    async def cancel_all(self, symbol: str, timeout_s: float | None = None) -> list[dict]:
        """``DELETE /api/v3/openOrders``: cancel every open order of ``symbol``; [] if none was open."""
        try:
            res = await self.signed("DELETE", "/api/v3/openOrders", [("symbol", symbol)], weight=_W_CANCEL_ALL,
                                    priority=True, timeout_s=timeout_s)
        except RestError as e:
            if e.code == _UNKNOWN_ORDER:
                return []
            raise
        return res if isinstance(res, list) else []

    async def open_orders(self, symbol: str, timeout_s: float | None = None) -> list[dict]:
        """``GET /api/v3/openOrders`` of ``symbol``."""
        res = await self.signed("GET", "/api/v3/openOrders", [("symbol", symbol)], weight=_W_OPEN_ORDERS,
                                timeout_s=timeout_s)
        if not isinstance(res, list):
            raise RestError(200, 0, f"openOrders: expected a list, got {type(res).__name__}")
        return res

    async def cancel_order(self, symbol: str, client_order_id: str, timeout_s: float | None = None) -> dict:
        """``DELETE /api/v3/order`` by ``origClientOrderId``."""
        return await self.signed("DELETE", "/api/v3/order", [("symbol", symbol),
                                                             ("origClientOrderId", client_order_id)],
                                 weight=_W_CANCEL, priority=True, timeout_s=timeout_s)

    # -- USD-M ----------------------------------------------------------------------------------------
    async def countdown_cancel_all(self, symbol: str, countdown_ms: int, timeout_s: float | None = None) -> dict:
        """``POST /fapi/v1/countdownCancelAll``: arm (or, with 0, disarm) the venue's dead man's switch (8.1)."""
        return await self.signed("POST", "/fapi/v1/countdownCancelAll",
                                 [("symbol", symbol), ("countdownTime", countdown_ms)], weight=_W_COUNTDOWN,
                                 priority=True, timeout_s=timeout_s)


class DeadMansSwitch:
    """Keep USD-M's ``countdownCancelAll`` armed: a heartbeat every ``heartbeat_ms``.

    If the engine dies, hangs or loses every route, the venue cancels the symbol's
    open orders ``countdown_ms`` after the last heartbeat (venue-protocols.md 8.1).
    A failed heartbeat is logged, counted and retried at the next beat (the venue's
    countdown is still running from the previous one).

    Parameters
    ----------
    rest : RestClient
    symbol : str
    countdown_ms, heartbeat_ms : int
        ``heartbeat_ms < countdown_ms`` (``[dead_man_switch]`` of the configuration).

    Attributes
    ----------
    heartbeats, errors : int
        Successful and failed arming calls.
    armed : bool
    """

    def __init__(self, rest: RestClient, symbol: str, countdown_ms: int, heartbeat_ms: int) -> None:
        if heartbeat_ms >= countdown_ms:
            raise ValueError("heartbeat_ms must be < countdown_ms")
        self.rest = rest
        self.symbol = symbol
        self.countdown_ms = countdown_ms
        self.heartbeat_ms = heartbeat_ms
        self.heartbeats = 0
        self.errors = 0
        self.armed = False
        self._task: asyncio.Task | None = None

    async def beat(self) -> bool:
        """Arm the countdown once; True on success."""
        try:
            await self.rest.countdown_cancel_all(self.symbol, self.countdown_ms)
        except Exception as e:  # noqa: BLE001 - the venue's countdown keeps running; retry next beat
            self.errors += 1
            log.warning("countdownCancelAll heartbeat for %s failed: %r", self.symbol, e)
            return False
        self.heartbeats += 1
        self.armed = True
        return True

    async def _run(self) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(self.heartbeat_ms / 1000.0)

    def start(self) -> None:
        """Start the heartbeat task on the running loop (the first beat is immediate)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="dead-mans-switch")

    async def stop(self, disarm: bool = True) -> None:
        """Stop the heartbeat; with ``disarm`` set the countdown to 0 (after a confirmed clean stop)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
            self._task = None
        if disarm and self.armed:
            try:
                await self.rest.countdown_cancel_all(self.symbol, 0)
                self.armed = False
            except Exception as e:  # noqa: BLE001 - the countdown then fires: harmless, nothing is open
                self.errors += 1
                log.warning("disarming countdownCancelAll for %s failed: %r", self.symbol, e)


__all__ = ["DeadMansSwitch", "RestClient", "RestError"]
