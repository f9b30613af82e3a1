"""Market-data stream client over picows: frames straight into the feed.

One combined-stream connection (venue-protocols.md 1.1, section 2)::

    <base>/stream?streams=<sym>@depth@100ms/<sym>@trade/<sym>@bookTicker

Every TEXT frame goes to :meth:`engine.feed.market.MarketDataFeed.on_frame`
from inside picows' ``on_ws_frame`` callback, on the same loop iteration,
with its local receive time (``time.time_ns()``, ns since the epoch, the
recording timestamp). The frame's arrival is also stamped with
``time.monotonic_ns()`` into ``ctx.trigger_rx_ns`` while it is processed, so an
order sent by the strategy in reaction can measure tick-to-order latency.

Keepalive (section 2): the server pings every 20 s (spot) and drops clients
whose pong does not echo the ping payload within a minute; this client answers
every ping with a pong carrying the same payload. Its only own messages are the
liveness pings of :class:`engine.live.liveness.Liveness` (at most one per
``ping_interval_ms`` >= 1 s; the spot limit is 5 incoming messages per second,
pings and pongs included), whose pongs give the round-trip time; every decoded
frame stamps its stream kind's freshness.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Iterable

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from engine.live.conn import ConnectionMixin
from engine.bus import CONNECTED, DISCONNECTED, SHUTDOWN, ConnectionEvent

log = logging.getLogger(__name__)

_SHUTDOWN_MARK = b'"serverShutdown"'


def stream_names(symbols: Iterable[str], depth_speed: str = "100ms", trades: bool = True,
                 book_ticker: bool = True) -> list[str]:
    """Return the stream names for ``symbols`` (lower-case symbol, 1.1).

    ``depth_speed`` ``"100ms"`` gives ``<sym>@depth@100ms``; ``""`` gives ``<sym>@depth`` (1000 ms).
    """
    out = []
    for s in symbols:
        sym = s.lower()
        out.append(f"{sym}@depth@{depth_speed}" if depth_speed else f"{sym}@depth")
        if trades:
            out.append(f"{sym}@trade")
        if book_ticker:
            out.append(f"{sym}@bookTicker")
    return out


def combined_stream_url(base_url: str, streams: Iterable[str]) -> str:
    """Return ``<base>/stream?streams=a/b/c`` (section 2); ``base_url`` is e.g. ``ws://127.0.0.1:9000``."""
    return f"{base_url.rstrip('/')}/stream?streams={'/'.join(streams)}"


class MarketStreamClient(ConnectionMixin, WSListener):
    """One combined market-data stream connection feeding a :class:`MarketDataFeed`.

    Parameters
    ----------
    url : str
        Full combined-stream URL (:func:`combined_stream_url`).
    feed : MarketDataFeed
    ctx : StrategyContext, optional
        Its ``trigger_rx_ns`` is set to the frame's monotonic arrival time (ns)
        while the frame is processed, and reset to 0 afterwards.
    on_connection : callable, optional
        ``f(ConnectionEvent)`` on connect, disconnect and ``serverShutdown``.
    liveness : Liveness, optional
        Receives each frame's kind and arrival time, and the PONGs of our pings.

    Attributes
    ----------
    frames, bytes_received, pings_answered, handler_errors : int
    last_frame_ns : int
        Monotonic ns of the last data frame (idle detection).
    """

    conn_name = "streams"

    def __init__(self, url: str, feed: Any, ctx: Any = None,
                 on_connection: Callable[[ConnectionEvent], None] | None = None, liveness: Any = None) -> None:
        super().__init__()
        self.url = url
        self.feed = feed
        self.ctx = ctx
        self.on_connection = on_connection
        self.liveness = liveness
        self.pongs = 0
        self.transport: WSTransport | None = None
        self.connected = False
        self.closing = False
        self.server_shutdown = False
        self.disconnected: asyncio.Future[None] | None = None
        self._fragments: list[bytes] = []
        self.frames = 0
        self.bytes_received = 0
        self.pings_answered = 0
        self.handler_errors = 0
        self.last_frame_ns = 0
        self.close_code: Any = None

    def __repr__(self) -> str:
        return f"MarketStreamClient({self.url}, connected={self.connected}, frames={self.frames})"

    async def connect(self, timeout: float = 10.0) -> None:
        """Open the connection (auto-pong off: this client echoes ping payloads itself)."""
        self.disconnected = asyncio.get_running_loop().create_future()
        self.closing = False
        self.server_shutdown = False
        await asyncio.wait_for(
            ws_connect(lambda: self, self.url, enable_auto_pong=False, websocket_handshake_timeout=timeout,
                       logger_name="mm.streams"),
            timeout)

    # -- picows callbacks -----------------------------------------------------------------------
    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.connected = True
        self._event(CONNECTED, "")

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.connected = False
        if self.disconnected is not None and not self.disconnected.done():
            self.disconnected.set_result(None)
        self._event(DISCONNECTED, "closing" if self.closing else f"lost ({self.close_code})")

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        t_rx = time.monotonic_ns()
        t = frame.msg_type
        if t == WSMsgType.TEXT or (t == WSMsgType.CONTINUATION and self._fragments):
            if not frame.fin:
                self._fragments.append(frame.get_payload_as_bytes())
                return
            data = frame.get_payload_as_bytes()
            if self._fragments:
                self._fragments.append(data)
                data = b"".join(self._fragments)
                self._fragments.clear()
            self.frames += 1
            self.bytes_received += len(data)
            self.last_frame_ns = t_rx
            ctx = self.ctx
            if ctx is not None:
                ctx.trigger_rx_ns = t_rx
            try:
                kind = self.feed.on_frame(data, time.time_ns(), "ws")
                if kind >= 0:
                    if self.liveness is not None:
                        self.liveness.on_data(kind, t_rx)
                elif _SHUTDOWN_MARK in data:
                    # Undecodable for the feed, but the venue announced it will close (section 2).
                    self.server_shutdown = True
                    self._event(SHUTDOWN, "serverShutdown")
            except Exception:
                self.handler_errors += 1
                if self.handler_errors <= 10:
                    log.exception("market-data frame handling failed")
            finally:
                if ctx is not None:
                    ctx.trigger_rx_ns = 0
        elif t == WSMsgType.PING:
            # Pong must echo the ping's payload (section 2).
            transport.send_pong(frame.get_payload_as_bytes())
            self.pings_answered += 1
        elif t == WSMsgType.PONG:
            self.pongs += 1
            if self.liveness is not None:
                self.liveness.on_pong(frame.get_payload_as_bytes(), t_rx)
        elif t == WSMsgType.CLOSE:
            self.close_code = frame.get_close_code()
            if not transport.is_close_frame_sent:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()



__all__ = ["MarketStreamClient", "combined_stream_url", "stream_names"]
