"""The market-data feed: frame -> decode -> depth sync -> book -> listener.

One :class:`MarketDataFeed` serves every symbol on a connection (or in a
recording). It never raises on bad input: decoding failures are counted by
kind in ``errors`` and reported to the listener, and the loop goes on.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable

from ext.book import OrderBook
from engine.feed import decode as d
from engine.feed.messages import AggTrade, BookTicker, DepthUpdate, Trade
from engine.feed.sync import GAP, DepthSync, GapEvent
from engine.instruments import Instrument


class FeedListener:
    """Receiver of feed events; override what you need. Calls happen inline on the loop.

    ``book`` arguments are borrowed: valid only inside the callback, and only
    ever passed while the book is valid.
    """

    def on_book(self, symbol: str, book: OrderBook) -> None:
        """A diff was applied to a valid book."""

    def on_trade(self, symbol: str, trade: Trade, ts_local_ns: int) -> None:
        """A ``trade`` event."""

    def on_agg_trade(self, symbol: str, trade: AggTrade, ts_local_ns: int) -> None:
        """An ``aggTrade`` event."""

    def on_book_ticker(self, symbol: str, ticker: BookTicker, ts_local_ns: int) -> None:
        """A ``bookTicker`` (venue's BBO) event."""

    def on_gap(self, event: GapEvent) -> None:
        """The book of ``event.symbol`` went invalid."""

    def on_snapshot_needed(self, symbol: str) -> None:
        """A (fresh) depth snapshot is needed to (re)sync ``symbol``."""

    def on_decode_error(self, kind: str, error: BaseException, source: str) -> None:
        """A frame could not be decoded; ``kind`` is a :func:`engine.feed.decode.classify_error` key."""


InstrumentResolver = Callable[[str, DepthUpdate | None], Instrument]


class MarketDataFeed:
    """Decode frames and keep one synced book per symbol.

    Parameters
    ----------
    resolve : callable
        ``resolve(symbol, first_diff_or_None) -> Instrument``; raises KeyError or
        ``InstrumentError`` for a symbol we cannot trade (counted as ``unknown_symbol``).
    listener : FeedListener
    default_symbol : str, optional
        Symbol of snapshot bodies that do not name one (REST snapshots in a
        single-symbol recording or a WS API reply to our own request).
    """

    def __init__(self, resolve: InstrumentResolver, listener: FeedListener | None = None,
                 default_symbol: str | None = None) -> None:
        self.resolve = resolve
        self.listener = listener if listener is not None else FeedListener()
        self.default_symbol = default_symbol
        self.decoder = d.FrameDecoder()
        self.syncs: dict[str, DepthSync] = {}
        self.errors: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.depth_messages = 0
        self.frames = 0
        # Snapshots that arrived before the symbol's first diff told us its market.
        self._early: dict[str, tuple] = {}

    def sync_for(self, symbol: str, first: DepthUpdate | None = None) -> DepthSync:
        """Return (creating on first use) the :class:`DepthSync` of ``symbol``."""
        s = self.syncs.get(symbol)
        if s is None:
            inst = self.resolve(symbol, first)

            def on_applied(book: OrderBook, _sym: str = symbol, _feed: "MarketDataFeed" = self) -> None:
                # The listener is looked up at call time: it may be replaced (e.g. on reconnect).
                _feed.listener.on_book(_sym, book)

            s = self.syncs[symbol] = DepthSync(inst, on_applied=on_applied)
            if self.default_symbol is None:
                self.default_symbol = symbol
            self.listener.on_snapshot_needed(symbol)
        return s

    def _error(self, exc: BaseException, source: str) -> int:
        kind = d.classify_error(exc)
        self.errors[kind] += 1
        self.listener.on_decode_error(kind, exc, source)
        return -1

    def on_frame(self, frame: bytes, ts_local_ns: int = 0, source: str = "ws", symbol: str | None = None) -> int:
        """Process one frame; return its kind (``engine.feed.decode`` constants) or -1 on error.

        ``symbol`` names the symbol of a bare snapshot body (else ``default_symbol``).
        Never raises on bad input.
        """
        self.frames += 1
        try:
            kind, msg = self.decoder.decode(frame)
            if kind == d.DEPTH:
                self.depth_messages += 1
                sync = self.syncs.get(msg.symbol)
                if sync is None:
                    sync = self.sync_for(msg.symbol, msg)
                gaps = sync.gaps
                try:
                    r = sync.on_diff(msg, source, ts_local_ns)
                except d.DECODE_ERRORS:
                    if sync.gaps != gaps:  # the bad diff also revealed a gap
                        self._on_gap(sync)
                    raise
                if r == GAP:
                    self._on_gap(sync)
                if self._early:
                    early = self._early.pop(msg.symbol, None)
                    if early is not None:
                        self.on_snapshot(msg.symbol, *early)
            elif kind == d.BOOK_TICKER:
                if self.default_symbol is None:
                    self.default_symbol = msg.symbol
                self.listener.on_book_ticker(msg.symbol, msg, ts_local_ns)
            elif kind == d.TRADE:
                if self.default_symbol is None:
                    self.default_symbol = msg.symbol
                self.listener.on_trade(msg.symbol, msg, ts_local_ns)
            elif kind == d.AGG_TRADE:
                self.listener.on_agg_trade(msg.symbol, msg, ts_local_ns)
            elif kind == d.SNAPSHOT:
                sym = msg.symbol or symbol or self.default_symbol
                if sym is None:
                    self.errors["snapshot_without_symbol"] += 1
                    self.listener.on_decode_error("snapshot_without_symbol", ValueError("snapshot names no symbol"), source)
                    return -1
                if sym in self.syncs:
                    self.on_snapshot(sym, msg, source, ts_local_ns)
                else:
                    self._early[sym] = (msg, source, ts_local_ns)
            self.counts[d.KIND_NAMES[kind]] += 1
            return kind
        except d.DECODE_ERRORS as e:
            return self._error(e, source)
        except (KeyError, ValueError) as e:  # unknown symbol / instrument
            self.errors["unknown_symbol"] += 1
            self.listener.on_decode_error("unknown_symbol", e, source)
            return -1

    def on_snapshot(self, symbol: str, snap, source: str = "rest", ts_local_ns: int = 0) -> int:
        """Feed a decoded snapshot to ``symbol``'s sync; return the sync's result code."""
        sync = self.sync_for(symbol)
        r = sync.on_snapshot(snap, source, ts_local_ns)
        if r == GAP:
            self._on_gap(sync)
        elif sync.snapshot_pending:
            self.listener.on_snapshot_needed(symbol)
        return r

    def _on_gap(self, sync: DepthSync) -> None:
        if sync.last_gap is not None:
            self.listener.on_gap(sync.last_gap)
        self.listener.on_snapshot_needed(sync.symbol)

    def book(self, symbol: str) -> OrderBook | None:
        """Return ``symbol``'s book if it is valid, else None."""
        s = self.syncs.get(symbol)
        if s is None or not s.valid:
            return None
        return s.book
