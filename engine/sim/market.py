"""The venue's market: exact books, clock, listeners and outgoing stream payloads.

:class:`VenueMarket` implements the :class:`~engine.sim.market_view.MarketView`
protocol for the trading side, and is driven by :class:`MarketEvent` records
from a source (:mod:`engine.sim.playback`, :mod:`engine.sim.synthetic`) through
:func:`run_source`. For every event it updates the venue's book, publishes the
event's payload to the stream listeners (the stream server), derives the
streams the source does not carry (coarser diff-depth streams, ``aggTrade``)
and notifies the book and trade listeners.

Books are exact: prices are integer ticks and quantities integer lots of
``10**-qty_decimals`` (:mod:`engine.instruments`), held in
:class:`sortedcontainers.SortedDict`. A book fed by recorded diffs follows the
Binance sync rules: spot venue-protocols.md 1.5/1.6, USD-M 1.7.

Units: ``*_ms`` are exchange times in ms since the epoch, ``ts_local_ns`` are
local (recorded or generated) receive times in ns since the epoch.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Protocol

import msgspec
from sortedcontainers import SortedDict

from engine.instruments import SPOT, USDM, Instrument

log = logging.getLogger(__name__)

BUY = "BUY"
SELL = "SELL"

# MarketEvent kinds.
DEPTH = 1        #: a diff-depth payload (``depthUpdate``), data: :class:`DepthDiff`
TRADE = 2        #: a ``trade`` payload, data: :class:`Trade`
AGG_TRADE = 3    #: an ``aggTrade`` payload, data: :class:`AggTrade` (or None)
BOOK_TICKER = 4  #: a ``bookTicker`` payload, data: :class:`BookTicker`
SNAPSHOT = 5     #: a REST depth snapshot (not streamed), data: :class:`Snapshot`
LEVEL = 6        #: one venue book change (not streamed), data: :class:`LevelChange`
OTHER = 7        #: any other payload, streamed as is

TradeListener = Callable[[str, Decimal, Decimal, bool, int], None]
BookListener = Callable[[str], None]
StreamListener = Callable[[str, bytes, "bytes | None"], None]


class BookIntegrityError(RuntimeError):
    """The venue book received an update that breaks its sequence or crosses it."""


class BookUnavailable(LookupError):
    """The venue book of a symbol is not synchronised (no snapshot yet, or a gap)."""


# -- payload structs (field order = Binance's key order when encoded) -------------------------
class DepthDiff(msgspec.Struct, gc=False, omit_defaults=True):
    """``depthUpdate`` payload; ``T``/``pu`` only on USD-M (venue-protocols.md 1.2, 1.7)."""

    e: str
    E: int
    s: str
    U: int
    u: int
    b: list[tuple[str, str]]
    a: list[tuple[str, str]]
    T: int | None = None
    pu: int | None = None


class UsdmDepthDiff(msgspec.Struct, gc=False):
    """USD-M ``depthUpdate`` in Binance's key order, for derived streams (1.7)."""

    e: str
    E: int
    T: int
    s: str
    U: int
    u: int
    pu: int
    b: list[tuple[str, str]]
    a: list[tuple[str, str]]


class Trade(msgspec.Struct, gc=False, omit_defaults=True):
    """Spot ``trade`` payload; USD-M drops ``M`` and adds ``X`` (``MARKET``, ``INSURANCE_FUND``, ...)."""

    e: str
    E: int
    s: str
    t: int
    p: str
    q: str
    T: int
    m: bool
    M: bool | None = None
    X: str | None = None


class AggTrade(msgspec.Struct, gc=False):
    """Spot ``aggTrade`` payload (spot ``web-socket-streams.md``, Aggregate Trade Streams)."""

    e: str
    E: int
    s: str
    a: int
    p: str
    q: str
    f: int
    l: int  # noqa: E741 - Binance's field name
    T: int
    m: bool
    M: bool


class UsdmAggTrade(msgspec.Struct, gc=False):
    """USD-M ``aggTrade`` payload in Binance's key order (as recorded by cryptofeed)."""

    e: str
    E: int
    a: int
    s: str
    p: str
    q: str
    f: int
    l: int  # noqa: E741
    T: int
    m: bool


class BookTicker(msgspec.Struct, gc=False, omit_defaults=True):
    """Spot ``bookTicker`` payload; USD-M adds ``e``, ``T``, ``E`` (ignored when decoding)."""

    u: int
    s: str
    b: str
    B: str
    a: str
    A: str
    E: int | None = None


class Snapshot(msgspec.Struct, gc=False, omit_defaults=True):
    """REST depth snapshot body (venue-protocols.md 1.3); ``E``/``T`` on USD-M."""

    lastUpdateId: int
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]
    E: int | None = None
    T: int | None = None
    symbol: str | None = None


class LevelChange(NamedTuple):
    """One change of the venue book, with the update id it consumed.

    Attributes
    ----------
    side : str
        ``"BUY"`` (bids) or ``"SELL"`` (asks).
    ticks : int
        Price in ticks.
    lots : int
        New absolute quantity in lots (0 removes the level).
    update_id : int
        The book's update id after this change (must be the previous id + 1).
    event_ms : int
        Exchange time of the change, ms.
    """

    side: str
    ticks: int
    lots: int
    update_id: int
    event_ms: int


class MarketEvent(NamedTuple):
    """One event of a market source.

    Attributes
    ----------
    ts_local_ns : int
        Local (recorded or generated) time, ns since the epoch; drives pacing.
    kind : int
        One of ``DEPTH``, ``TRADE``, ``AGG_TRADE``, ``BOOK_TICKER``, ``SNAPSHOT``, ``LEVEL``, ``OTHER``.
    symbol : str
        Venue symbol, upper case.
    stream : str or None
        Stream name the payload goes out on (``btcusdt@depth@100ms``); None if not streamed.
    payload : bytes or None
        The raw payload as sent on ``/ws/<stream>`` (byte-exact for recordings).
    frame : bytes or None
        The combined-stream envelope as recorded (byte-exact), or None to build it.
    data : object
        The decoded payload (a struct above) used to update the venue.
    """

    ts_local_ns: int
    kind: int
    symbol: str
    stream: str | None
    payload: bytes | None
    frame: bytes | None
    data: Any


class MarketSource(Protocol):
    """What :func:`run_source` needs from a source of market events."""

    speed: float | None

    def bind(self, venue: "VenueMarket") -> None:
        """Register the source's symbols with ``venue``."""
        ...

    def events(self) -> Iterator[MarketEvent]:
        """Yield the market's events in order."""
        ...


# -- exact decimal-string <-> integer conversions ---------------------------------------------
def scaled_int(text: str, decimals: int) -> int:
    """Parse a non-negative decimal string into an integer of ``10**-decimals`` units.

    Raises ``ValueError`` if ``text`` has non-zero digits beyond ``decimals`` places.
    """
    whole, _, frac = text.partition(".")
    if len(frac) > decimals:
        if frac[decimals:].strip("0"):
            raise ValueError(f"{text!r} has more than {decimals} decimal places")
        frac = frac[:decimals]
    return int((whole or "0") + frac.ljust(decimals, "0"))


def format_scaled(units: int, decimals: int) -> str:
    """Format an integer of ``10**-decimals`` units as a decimal string with ``decimals`` places."""
    if decimals == 0:
        return str(units)
    s = str(units).rjust(decimals + 1, "0")
    return s[:-decimals] + "." + s[-decimals:]


def fraction_digits(text: str) -> int:
    """Return the number of digits after the decimal point of ``text``."""
    _, dot, frac = text.partition(".")
    return len(frac) if dot else 0


# -- one book -----------------------------------------------------------------------------------
class SymbolBook:
    """The venue's full book of one symbol in integer ticks and lots.

    Parameters
    ----------
    instrument : Instrument
        Tick size and lot precision.
    from_diffs : bool
        True if the book follows recorded diff-depth events (with the Binance sync
        rules of venue-protocols.md 1.5-1.7); False if a source sets levels one
        by one (:class:`LevelChange`).
    price_out_decimals, qty_out_decimals : int
        Decimal places of the strings in outgoing bodies (spot: 8 and 8, as
        Binance renders spot amounts; USD-M: the symbol's price/quantity precision).
    """

    # Binance keeps diffs received before the snapshot; nautilus caps its buffer at
    # 10,000 diffs (venue-protocols.md 1.6 [NT-SYNC]); we keep the same bound.
    MAX_BUFFER = 10_000

    def __init__(self, instrument: Instrument, from_diffs: bool, price_out_decimals: int, qty_out_decimals: int) -> None:
        if price_out_decimals < instrument.price_decimals or qty_out_decimals < instrument.qty_decimals:
            raise ValueError(f"{instrument.symbol}: output decimals finer than the instrument grid are required")
        self.instrument = instrument
        self.from_diffs = from_diffs
        self.bids: SortedDict = SortedDict()
        self.asks: SortedDict = SortedDict()
        self.last_update_id: int | None = None
        self.txn_ms: int | None = None
        self.synced = False
        self._bridging = True
        self.buffer: deque[DepthDiff] = deque(maxlen=self.MAX_BUFFER)
        self.stats = {"applied": 0, "dropped": 0, "gaps": 0, "crossed": 0, "snapshots": 0}
        self.price_out_decimals = price_out_decimals
        self.qty_out_decimals = qty_out_decimals
        self._pd = instrument.price_decimals
        self._tu = instrument.tick_units
        self._qd = instrument.qty_decimals
        self._price_mult = instrument.tick_units * 10 ** (price_out_decimals - instrument.price_decimals)
        self._qty_mult = 10 ** (qty_out_decimals - instrument.qty_decimals)

    # -- conversions --------------------------------------------------------------------
    def ticks(self, price: str) -> int:
        """Convert a price string to ticks; ``ValueError`` if off the tick grid."""
        units = scaled_int(price, self._pd)
        q, r = divmod(units, self._tu)
        if r:
            raise ValueError(f"{self.instrument.symbol}: price {price} is off the tick grid")
        return q

    def lots(self, qty: str) -> int:
        """Convert a quantity string to lots; ``ValueError`` if finer than a lot."""
        return scaled_int(qty, self._qd)

    def price_str(self, ticks: int) -> str:
        """Format ticks as an outgoing price string."""
        return format_scaled(ticks * self._price_mult, self.price_out_decimals)

    def qty_str(self, lots: int) -> str:
        """Format lots as an outgoing quantity string."""
        return format_scaled(lots * self._qty_mult, self.qty_out_decimals)

    # -- mutation -------------------------------------------------------------------------
    def seed(self, snap: Snapshot) -> None:
        """Replace the book with a snapshot (venue-protocols.md 1.5 step 5)."""
        self.bids.clear()
        self.asks.clear()
        self._set_levels(self.bids, snap.bids)
        self._set_levels(self.asks, snap.asks)
        self.last_update_id = snap.lastUpdateId
        self.txn_ms = snap.T
        self.synced = True
        # The next diff kept must bridge the snapshot (1.5 step 4, 1.7).
        self._bridging = True
        self.stats["snapshots"] += 1

    def apply_diff(self, diff: DepthDiff) -> bool:
        """Apply a diff under the sync rules; return True if it changed the book.

        Spot (venue-protocols.md 1.5/1.6): while bridging drop ``u <= lastUpdateId``
        and require ``U <= lastUpdateId + 1``; afterwards ignore ``u < local`` and
        treat ``U > local + 1`` as a gap. USD-M (1.7): while bridging drop
        ``u < lastUpdateId`` and require ``U <= lastUpdateId``; afterwards
        ``pu`` must equal the previous ``u``. A gap un-syncs the book until the
        next snapshot; diffs are buffered while the book is not synced.
        """
        if not self.synced:
            self.buffer.append(diff)
            return False
        lid = self.last_update_id
        assert lid is not None
        usdm = self.instrument.market == USDM
        if self._bridging:
            if (diff.u < lid) if usdm else (diff.u <= lid):
                self.stats["dropped"] += 1
                return False
            if diff.U > (lid if usdm else lid + 1):
                self._gap(diff)
                return False
        elif usdm:
            if diff.pu != lid:
                if diff.u <= lid:
                    self.stats["dropped"] += 1
                    return False
                self._gap(diff)
                return False
        else:
            if diff.u < lid:
                self.stats["dropped"] += 1
                return False
            if diff.U > lid + 1:
                self._gap(diff)
                return False
        self._bridging = False
        self._set_levels(self.bids, diff.b)
        self._set_levels(self.asks, diff.a)
        self.last_update_id = diff.u
        if diff.T is not None:
            self.txn_ms = diff.T
        self.stats["applied"] += 1
        if self.crossed():
            self.stats["crossed"] += 1
        return True

    def resync(self, snap: Snapshot) -> list[DepthDiff]:
        """Seed from ``snap`` and re-apply the buffered diffs; return those applied."""
        self.seed(snap)
        pending = list(self.buffer)
        self.buffer.clear()
        return [d for d in pending if self.apply_diff(d)]

    def set_level(self, change: LevelChange) -> None:
        """Apply one :class:`LevelChange`; raise :class:`BookIntegrityError` on an id gap."""
        if self.last_update_id is None or change.update_id != self.last_update_id + 1:
            raise BookIntegrityError(
                f"{self.instrument.symbol}: level change id {change.update_id} after {self.last_update_id}")
        side = self.bids if change.side == BUY else self.asks
        if change.lots:
            side[change.ticks] = change.lots
        else:
            side.pop(change.ticks, None)
        self.last_update_id = change.update_id
        self.txn_ms = change.event_ms
        if self.crossed():
            raise BookIntegrityError(f"{self.instrument.symbol}: book crossed at update {change.update_id}")

    def _gap(self, diff: DepthDiff) -> None:
        log.error("%s: depth gap at U=%d u=%d (book at %s); waiting for a snapshot",
                  self.instrument.symbol, diff.U, diff.u, self.last_update_id)
        self.stats["gaps"] += 1
        self.synced = False
        self.buffer.clear()
        self.buffer.append(diff)

    def _set_levels(self, side: SortedDict, levels: Iterable[tuple[str, str]]) -> None:
        ticks = self.ticks
        lots = self.lots
        for p, q in levels:
            t = ticks(p)
            n = lots(q)
            if n:
                side[t] = n
            else:
                side.pop(t, None)

    # -- queries --------------------------------------------------------------------------
    def crossed(self) -> bool:
        """Return True if best bid >= best ask."""
        return bool(self.bids) and bool(self.asks) and self.bids.peekitem(-1)[0] >= self.asks.peekitem(0)[0]

    def best(self, side: str) -> tuple[int, int] | None:
        """Return ``(ticks, lots)`` of the best level of ``side`` or None."""
        book = self.bids if side == BUY else self.asks
        if not book:
            return None
        return book.peekitem(-1) if side == BUY else book.peekitem(0)

    def levels(self, side: str, limit: int) -> list[list[str]]:
        """Return the top ``limit`` levels of ``side`` as ``[[price, qty], ...]`` strings."""
        book = self.bids if side == BUY else self.asks
        n = min(limit, len(book))
        keys = book.islice(len(book) - n, reverse=True) if side == BUY else book.islice(0, n)
        ps, qs = self.price_str, self.qty_str
        return [[ps(t), qs(book[t])] for t in keys]


# -- derived streams ----------------------------------------------------------------------------
# Diff-depth stream names and their update intervals (ms): spot venue-protocols.md 1.1,
# USD-M 1.7 (``@depth`` is 1000 ms on spot, 250 ms on USD-M; ``@depth@0ms`` is the
# unthrottled USD-M stream of the recordings, README section 1b).
DEPTH_INTERVALS_MS: dict[str, dict[str, int]] = {
    SPOT: {"@depth@100ms": 100, "@depth": 1000},
    USDM: {"@depth@0ms": 0, "@depth@100ms": 100, "@depth": 250, "@depth@500ms": 500},
}


def depth_suffix(stream: str) -> str:
    """Return the ``@depth...`` suffix of a diff-depth stream name (``""`` if none)."""
    i = stream.find("@")
    return stream[i:] if i >= 0 else ""


class _DepthWindow:
    """Merges the diffs of one source depth stream into a coarser stream's windows."""

    __slots__ = ("stream", "interval_ms", "usdm", "window", "first", "last", "bids", "asks")

    def __init__(self, stream: str, interval_ms: int, usdm: bool) -> None:
        self.stream = stream
        self.interval_ms = interval_ms
        self.usdm = usdm
        self.window = -1
        self.first: DepthDiff | None = None
        self.last: DepthDiff | None = None
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}

    def add(self, diff: DepthDiff) -> None:
        # A diff belongs to the window of its event time, but never to a window already sent.
        self.window = max(self.window, diff.E // self.interval_ms)
        if self.first is None:
            self.first = diff
        self.last = diff
        for p, q in diff.b:
            self.bids[p] = q
        for p, q in diff.a:
            self.asks[p] = q

    def due(self, now_ms: int) -> bool:
        return self.first is not None and now_ms // self.interval_ms > self.window

    def flush(self) -> bytes | None:
        first, last = self.first, self.last
        if first is None or last is None:
            return None
        b = list(self.bids.items())
        a = list(self.asks.items())
        self.first = self.last = None
        self.bids = {}
        self.asks = {}
        if self.usdm:
            return msgspec.json.encode(UsdmDepthDiff(
                "depthUpdate", last.E, last.T or last.E, last.s, first.U, last.u,
                first.pu if first.pu is not None else first.U - 1, b, a))
        return msgspec.json.encode(DepthDiff("depthUpdate", last.E, last.s, first.U, last.u, b, a))


class _AggTrades:
    """Folds consecutive trades of one taker order into ``aggTrade`` payloads.

    Trades with the same trade time, price and side and consecutive ids belong to one
    aggregate (spot ``web-socket-streams.md``: "aggregated for a single taker order").
    """

    __slots__ = ("stream", "usdm", "next_id", "first", "last", "lots", "book")

    def __init__(self, stream: str, usdm: bool, book: SymbolBook) -> None:
        self.stream = stream
        self.usdm = usdm
        self.next_id: int | None = None
        self.first: Trade | None = None
        self.last: Trade | None = None
        self.lots = 0
        self.book = book

    def add(self, tr: Trade) -> bytes | None:
        out = None
        last = self.last
        if last is not None and not (tr.T == last.T and tr.p == last.p and tr.m == last.m and tr.t == last.t + 1):
            out = self.flush()
        if self.first is None:
            self.first = tr
            self.lots = 0
            if self.next_id is None:
                # Aggregate ids are a separate, gap-free sequence; start it at the first trade id.
                self.next_id = tr.t
        self.last = tr
        self.lots += self.book.lots(tr.q)
        return out

    def flush(self) -> bytes | None:
        first, last = self.first, self.last
        if first is None or last is None or self.next_id is None:
            return None
        a = self.next_id
        self.next_id += 1
        self.first = self.last = None
        # The aggregate quantity is written with the trades' own number of decimals.
        q = _rescale(self.lots, self.book.instrument.qty_decimals, fraction_digits(first.q))
        if self.usdm:
            return msgspec.json.encode(UsdmAggTrade("aggTrade", last.E, a, first.s, first.p, q, first.t, last.t, last.T, first.m))
        return msgspec.json.encode(AggTrade("aggTrade", last.E, first.s, a, first.p, q, first.t, last.t, last.T, first.m, True))


def _rescale(units: int, decimals: int, out_decimals: int) -> str:
    if out_decimals >= decimals:
        return format_scaled(units * 10 ** (out_decimals - decimals), out_decimals)
    q, r = divmod(units, 10 ** (decimals - out_decimals))
    if r:
        raise ValueError(f"{units}e-{decimals} cannot be written with {out_decimals} decimals")
    return format_scaled(q, out_decimals)


class _Derived:
    """The derived streams of one symbol."""

    __slots__ = ("source_stream", "windows", "agg", "native")

    def __init__(self) -> None:
        self.source_stream: str | None = None
        self.windows: list[_DepthWindow] = []
        self.agg: _AggTrades | None = None
        self.native: set[str] = set()


# -- the market -----------------------------------------------------------------------------------
class VenueMarket:
    """The simulated venue's market data: implements ``MarketView``.

    Parameters
    ----------
    speed : float or None
        Pacing factor of the driving source; used only to advance :meth:`now_ms`
        between events (None or 0: the clock moves only with events).

    Notes
    -----
    All methods run on the event-loop thread. Listeners are called synchronously;
    an exception from a listener propagates to :func:`run_source` and ends the market.
    """

    def __init__(self, speed: float | None = None) -> None:
        self._books: dict[str, SymbolBook] = {}
        self._derived: dict[str, _Derived] = {}
        self._derive_agg: dict[str, bool] = {}
        self._trade_listeners: list[TradeListener] = []
        self._book_listeners: list[BookListener] = []
        self._stream_listeners: list[StreamListener] = []
        self._speed = speed or 0.0
        self._event_ms: int | None = None
        self._event_wall_ns = 0
        self._last_now_ms = 0
        self.events_processed = 0

    # -- setup ------------------------------------------------------------------------------
    def register(
        self,
        instrument: Instrument,
        *,
        from_diffs: bool = True,
        derive_agg_trades: bool = True,
        price_out_decimals: int | None = None,
        qty_out_decimals: int | None = None,
    ) -> SymbolBook:
        """Add a symbol and return its (empty, unsynced) book.

        Parameters
        ----------
        instrument : Instrument
        from_diffs : bool
            The book follows ``DEPTH`` events under the sync rules (recordings); if False it
            follows ``LEVEL`` events (synthetic market) and ``DEPTH`` events are only streamed.
        derive_agg_trades : bool
            Build ``<sym>@aggTrade`` from ``trade`` events (the recordings carry no aggTrade).
        price_out_decimals, qty_out_decimals : int, optional
            Decimals of outgoing price/quantity strings; default 8/8 on spot (Binance spot
            renders every amount with 8 decimals), the instrument's grid on USD-M.
        """
        spot = instrument.market == SPOT
        pd = price_out_decimals if price_out_decimals is not None else (8 if spot else instrument.price_decimals)
        qd = qty_out_decimals if qty_out_decimals is not None else (8 if spot else instrument.qty_decimals)
        book = SymbolBook(instrument, from_diffs, pd, qd)
        self._books[instrument.symbol] = book
        self._derived[instrument.symbol] = _Derived()
        self._derive_agg[instrument.symbol] = derive_agg_trades
        return book

    def book(self, symbol: str) -> SymbolBook:
        """Return the book of ``symbol`` (KeyError if unknown)."""
        return self._books[symbol]

    def add_stream_listener(self, cb: StreamListener) -> None:
        """Call ``cb(stream, payload, frame)`` for every outgoing payload.

        ``frame`` is the recorded combined-stream envelope (byte-exact) or None.
        """
        self._stream_listeners.append(cb)

    # -- MarketView ---------------------------------------------------------------------------
    def instrument(self, symbol: str) -> Instrument:
        """Return the instrument of ``symbol``; raise ``KeyError`` if unknown."""
        return self._books[symbol].instrument

    def symbols(self) -> list[str]:
        """Return every symbol served, in registration order."""
        return list(self._books)

    def is_synced(self, symbol: str) -> bool:
        """Return True if the book of ``symbol`` is synchronised with the venue's."""
        return self._books[symbol].synced

    def best_bid(self, symbol: str) -> tuple[Decimal, Decimal] | None:
        """Return ``(price, qty)`` of the best bid; None if the side is empty or the book unsynced."""
        return self._best(symbol, BUY)

    def best_ask(self, symbol: str) -> tuple[Decimal, Decimal] | None:
        """Return ``(price, qty)`` of the best ask; None if the side is empty or the book unsynced."""
        return self._best(symbol, SELL)

    def _best(self, symbol: str, side: str) -> tuple[Decimal, Decimal] | None:
        book = self._books[symbol]
        if not book.synced:
            return None
        lvl = book.best(side)
        if lvl is None:
            return None
        inst = book.instrument
        return inst.ticks_to_price(lvl[0]), inst.lots_to_qty(lvl[1])

    def qty_at(self, symbol: str, side: str, price: Decimal) -> Decimal:
        """Return the displayed quantity at ``price`` (0 if no level or the book is unsynced).

        ``side`` is ``"BUY"`` (bids) or ``"SELL"`` (asks). Raises ``ValueError`` if
        ``price`` is off the tick grid.
        """
        book = self._books[symbol]
        inst = book.instrument
        ticks = inst.price_to_ticks(price)
        if not book.synced:
            return Decimal(0)
        side_book = book.bids if side == BUY else book.asks
        return inst.lots_to_qty(side_book.get(ticks, 0))

    def depth(self, symbol: str, limit: int) -> dict:
        """Return Binance's depth body for the top ``limit`` levels per side.

        Spot ``{"lastUpdateId", "bids", "asks"}``; USD-M adds ``"E"`` (venue clock, ms)
        and ``"T"`` (transaction time of the last applied update, ms) in the order of
        ``/fapi/v1/depth`` (venue-protocols.md 1.3, 1.7). ``limit`` above 5000 is capped
        at 5000 as on spot ``GET /api/v3/depth``.

        Raises
        ------
        KeyError
            Unknown symbol.
        BookUnavailable
            The book is not synchronised (no snapshot yet, or after a gap).
        """
        book = self._books[symbol]
        if limit <= 0:
            raise ValueError("limit must be positive")
        if not book.synced:
            raise BookUnavailable(f"{symbol}: the venue book is not synchronised")
        limit = min(limit, 5000)
        assert book.last_update_id is not None
        if book.instrument.market == USDM:
            now = self.now_ms()
            return {
                "lastUpdateId": book.last_update_id,
                "E": now,
                "T": book.txn_ms if book.txn_ms is not None else now,
                "bids": book.levels(BUY, limit),
                "asks": book.levels(SELL, limit),
            }
        return {
            "lastUpdateId": book.last_update_id,
            "bids": book.levels(BUY, limit),
            "asks": book.levels(SELL, limit),
        }

    def add_trade_listener(self, cb: TradeListener) -> None:
        """Call ``cb(symbol, price, qty, buyer_is_maker, trade_time_ms)`` after every market trade."""
        self._trade_listeners.append(cb)

    def add_book_listener(self, cb: BookListener) -> None:
        """Call ``cb(symbol)`` after each depth update (diff, level change, snapshot) is applied."""
        self._book_listeners.append(cb)

    def now_ms(self) -> int:
        """Return the venue clock in ms: the latest exchange event time seen.

        When paced (``speed > 0``) the clock also advances between events at
        ``speed`` times wall-clock rate; it never goes backwards.
        """
        ev = self._event_ms
        if ev is None:
            now = time.time_ns() // 1_000_000
        elif self._speed:
            now = ev + int((time.monotonic_ns() - self._event_wall_ns) * self._speed) // 1_000_000
        else:
            now = ev
        if now < self._last_now_ms:
            now = self._last_now_ms
        self._last_now_ms = now
        return now

    @property
    def event_time_ms(self) -> int | None:
        """The latest exchange event time seen, ms (None before the first event).

        Unlike :meth:`now_ms` it never interpolates with the wall clock, so it is the
        same for a given event sequence at any pace (the fault plan times faults by it).
        """
        return self._event_ms

    def advance_clock(self, event_ms: int) -> None:
        """Move the venue clock to the exchange time ``event_ms`` (never backwards)."""
        if self._event_ms is None or event_ms > self._event_ms:
            self._event_ms = event_ms
            self._event_wall_ns = time.monotonic_ns()

    # -- driving ---------------------------------------------------------------------------------
    def process(self, ev: MarketEvent) -> None:
        """Apply one source event: update the book, publish payloads, notify listeners."""
        self.events_processed += 1
        kind = ev.kind
        sym = ev.symbol
        data = ev.data
        event_ms = _event_time(kind, data)
        if event_ms is not None:
            self.advance_clock(event_ms)
            self._flush_due(sym, event_ms)
        if kind == DEPTH:
            self._on_depth(ev)
        elif kind == TRADE:
            self._publish(ev.stream, ev.payload, ev.frame)
            self._on_trade(sym, data, ev.stream)
        elif kind == LEVEL:
            self._books[sym].set_level(data)
            self._notify_book(sym)
        elif kind == SNAPSHOT:
            book = self._books[sym]
            if book.from_diffs:
                if book.synced and book.stats["snapshots"]:
                    return  # a later recorded snapshot while in sync: the book already holds it
                book.resync(data)
            else:
                book.seed(data)
            self._notify_book(sym)
        else:
            if kind == AGG_TRADE and ev.stream is not None:
                self._derived[sym].native.add(ev.stream)
            else:
                self._flush_agg(sym)
            self._publish(ev.stream, ev.payload, ev.frame)

    def finish(self) -> None:
        """Flush every pending derived payload (call when the source has ended)."""
        for sym, d in self._derived.items():
            self._flush_agg(sym)
            for w in d.windows:
                out = w.flush()
                if out is not None and w.stream not in d.native:
                    self._publish(w.stream, out, None)

    def _on_depth(self, ev: MarketEvent) -> None:
        sym = ev.symbol
        diff: DepthDiff = ev.data
        book = self._books[sym]
        d = self._derived[sym]
        stream = ev.stream or ""
        if d.source_stream is None:
            self._setup_depth(sym, stream)
        self._flush_agg(sym)
        self._publish(ev.stream, ev.payload, ev.frame)
        if stream != d.source_stream:
            # A second native depth stream: streamed only (the book follows the first one)
            # and never derived as well.
            d.native.add(stream)
            return
        if book.from_diffs and book.apply_diff(diff):
            self._notify_book(sym)
        for w in d.windows:
            w.add(diff)

    def _setup_depth(self, sym: str, stream: str) -> None:
        d = self._derived[sym]
        d.source_stream = stream
        market = self._books[sym].instrument.market
        table = DEPTH_INTERVALS_MS[market]
        native = table.get(depth_suffix(stream))
        if native is None:
            return
        base = stream[: stream.find("@")]
        d.windows = [_DepthWindow(base + suffix, ms, market == USDM)
                     for suffix, ms in table.items() if ms > native]

    def _flush_due(self, sym: str, now_ms: int) -> None:
        d = self._derived.get(sym)
        if d is None:
            return
        for w in d.windows:
            if w.due(now_ms):
                out = w.flush()
                if out is not None and w.stream not in d.native:
                    self._publish(w.stream, out, None)

    def _on_trade(self, sym: str, tr: Trade, stream: str | None) -> None:
        book = self._books[sym]
        inst = book.instrument
        # Only market-order trades aggregate; USD-M insurance-fund/ADL fills stay out of aggTrade.
        if self._derive_agg[sym] and stream is not None and (tr.X is None or tr.X == "MARKET"):
            d = self._derived[sym]
            if d.agg is None:
                d.agg = _AggTrades(stream[: stream.find("@")] + "@aggTrade", inst.market == USDM, book)
            if d.agg.stream not in d.native:
                out = d.agg.add(tr)
                if out is not None:
                    self._publish(d.agg.stream, out, None)
        if self._trade_listeners:
            price = inst.ticks_to_price(book.ticks(tr.p))
            qty = inst.lots_to_qty(book.lots(tr.q))
            for cb in self._trade_listeners:
                cb(sym, price, qty, tr.m, tr.T)

    def _flush_agg(self, sym: str) -> None:
        d = self._derived.get(sym)
        if d is not None and d.agg is not None:
            out = d.agg.flush()
            if out is not None and d.agg.stream not in d.native:
                self._publish(d.agg.stream, out, None)

    def _notify_book(self, sym: str) -> None:
        for cb in self._book_listeners:
            cb(sym)

    def _publish(self, stream: str | None, payload: bytes | None, frame: bytes | None) -> None:
        if stream is None or payload is None:
            return
        for cb in self._stream_listeners:
            cb(stream, payload, frame)


def _event_time(kind: int, data: Any) -> int | None:
    # The exchange time an event carries (spot bookTicker has none).
    if kind in (DEPTH, TRADE, AGG_TRADE):
        return data.E
    if kind == LEVEL:
        return data.event_ms
    if kind == BOOK_TICKER and data is not None:
        return data.E
    if kind == SNAPSHOT:
        return data.E
    return None


# -- driving a source ------------------------------------------------------------------------------
# In fast mode, yield to the event loop every this many events so connections are served.
_FAST_BATCH = 64
# Delays shorter than this (s) are not slept: the loop's timer resolution is ~1 ms.
_MIN_SLEEP_S = 0.0005


async def run_source(venue: VenueMarket, events: Iterable[MarketEvent], speed: float | None) -> int:
    """Feed ``events`` into ``venue``, paced by their local timestamps.

    Parameters
    ----------
    venue : VenueMarket
    events : iterable of MarketEvent
    speed : float or None
        Event ``ts_local_ns`` gaps are divided by ``speed`` (1.0 = as recorded);
        None or 0 runs as fast as possible (yielding to the loop every few events).

    Returns
    -------
    int
        Number of events processed. :meth:`VenueMarket.finish` has been called.
    """
    loop = asyncio.get_running_loop()
    n = 0
    start_wall = loop.time()
    start_ts: int | None = None
    for ev in events:
        n += 1
        if speed:
            if start_ts is None:
                start_ts = ev.ts_local_ns
            delay = start_wall + (ev.ts_local_ns - start_ts) / 1e9 / speed - loop.time()
            if delay > _MIN_SLEEP_S:
                await asyncio.sleep(delay)
            elif n % _FAST_BATCH == 0:
                await asyncio.sleep(0)
        elif n % _FAST_BATCH == 0:
            await asyncio.sleep(0)
        venue.process(ev)
    venue.finish()
    return n


__all__ = [
    "AGG_TRADE", "BOOK_TICKER", "BUY", "DEPTH", "LEVEL", "OTHER", "SELL", "SNAPSHOT", "TRADE",
    "AggTrade", "BookIntegrityError", "BookTicker", "BookUnavailable", "DepthDiff", "LevelChange",
    "MarketEvent", "MarketSource", "Snapshot", "SymbolBook", "Trade", "UsdmAggTrade", "UsdmDepthDiff",
    "VenueMarket", "format_scaled", "fraction_digits", "run_source", "scaled_int",
]
