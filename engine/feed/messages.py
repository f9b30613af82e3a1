"""Typed views of Binance market-data messages (msgspec Structs).

Each Struct declares only the fields mm-engine uses; unknown fields are
ignored by msgspec. Prices and quantities stay strings here and are turned
into exact integers (ticks, lots) by ``ext.parsers.LevelParser`` against the
symbol's instrument. Field meanings: Binance spot ``web-socket-streams.md``
and USD-M "Diff Book Depth Streams" (venue-protocols.md 1.2, 1.7).
"""
from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta, Struct, field

Level = tuple[str, str]
# Depth levels stay raw JSON (``[["price","qty"],...]``) until ext.parsers.LevelParser
# parses them in place: no Python object per level on the hot path. Tests may pass
# lists of (price, qty) string pairs instead; the parser takes both.
Levels = msgspec.Raw
# Venue sequence numbers are int64 in the book; anything outside is a decoding error.
UpdateId = Annotated[int, Meta(ge=0, le=2**63 - 1)]
PrevUpdateId = Annotated[int, Meta(ge=-1, le=2**63 - 1)]


class DepthUpdate(Struct, gc=False):
    """``depthUpdate`` diff (spot and USD-M).

    ``first_update_id`` is ``U``, ``final_update_id`` is ``u``; ``prev_final_update_id``
    is USD-M's ``pu`` (-1 on spot, which has none). Times are ms since the epoch.
    """

    symbol: str = field(name="s")
    first_update_id: UpdateId = field(name="U")
    final_update_id: UpdateId = field(name="u")
    bids: Levels = field(name="b")
    asks: Levels = field(name="a")
    event: str = field(name="e", default="depthUpdate")
    event_time_ms: int = field(name="E", default=0)
    transaction_time_ms: int = field(name="T", default=0)
    prev_final_update_id: PrevUpdateId = field(name="pu", default=-1)


class DepthSnapshot(Struct, gc=False):
    """Depth snapshot: REST ``GET /api/v3/depth`` (or ``/fapi/v1/depth``) body, or WS API ``depth`` result.

    ``symbol`` is only present on COIN-M bodies; elsewhere the caller knows it.
    """

    last_update_id: UpdateId = field(name="lastUpdateId")
    bids: Levels
    asks: Levels
    event_time_ms: int = field(name="E", default=0)
    transaction_time_ms: int = field(name="T", default=0)
    symbol: str = ""


class Trade(Struct, gc=False):
    """``trade`` event. ``buyer_is_maker`` is ``m`` (True: the aggressor sold)."""

    symbol: str = field(name="s")
    trade_id: int = field(name="t")
    price: str = field(name="p")
    qty: str = field(name="q")
    buyer_is_maker: bool = field(name="m")
    event: str = field(name="e", default="trade")
    event_time_ms: int = field(name="E", default=0)
    trade_time_ms: int = field(name="T", default=0)


class AggTrade(Struct, gc=False):
    """``aggTrade`` event: trades ``first_trade_id..last_trade_id`` aggregated at one price."""

    symbol: str = field(name="s")
    agg_id: int = field(name="a")
    price: str = field(name="p")
    qty: str = field(name="q")
    first_trade_id: int = field(name="f")
    last_trade_id: int = field(name="l")
    buyer_is_maker: bool = field(name="m")
    event: str = field(name="e", default="aggTrade")
    event_time_ms: int = field(name="E", default=0)
    trade_time_ms: int = field(name="T", default=0)


class BookTicker(Struct, gc=False):
    """``bookTicker``: best bid/offer after book update ``update_id`` (``u``)."""

    update_id: UpdateId = field(name="u")
    symbol: str = field(name="s")
    bid_price: str = field(name="b")
    bid_qty: str = field(name="B")
    ask_price: str = field(name="a")
    ask_qty: str = field(name="A")
    event_time_ms: int = field(name="E", default=0)
    transaction_time_ms: int = field(name="T", default=0)


class WsApiError(Struct, gc=False):
    """WS API error body ``{"code": int, "msg": str}`` (venue-protocols.md 3)."""

    code: int
    msg: str


class WsApiDepthResponse(Struct, gc=False):
    """WS API response to the ``depth`` method."""

    id: str | int | None
    status: int
    result: DepthSnapshot | None = None
    error: WsApiError | None = None


# Combined-stream envelopes, one per payload type, so a frame decodes in one pass.
class DepthEnvelope(Struct, gc=False):
    stream: str
    data: DepthUpdate


class TradeEnvelope(Struct, gc=False):
    stream: str
    data: Trade


class AggTradeEnvelope(Struct, gc=False):
    stream: str
    data: AggTrade


class BookTickerEnvelope(Struct, gc=False):
    stream: str
    data: BookTicker


class RawEnvelope(Struct, gc=False):
    """Fallback envelope: the payload is kept raw and decoded once its stream is known."""

    stream: str
    data: msgspec.Raw


class Probe(Struct, gc=False):
    """Fields that tell a bare (non-enveloped) frame's kind."""

    e: str | None = None
    lastUpdateId: int | None = None
    u: int | None = None
    B: str | None = None
    id: str | int | None = None
    result: msgspec.Raw | None = None
