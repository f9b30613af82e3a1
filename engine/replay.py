"""Replay recordings through the live decoder, depth sync and book.

:func:`replay_book` is the engine of ``mm-engine book``: it feeds every frame of
one session's files, in order, to a :class:`engine.feed.market.MarketDataFeed`
and checks the book against every ``bookTicker`` that carries the same update
id ``u`` as an applied diff (price *and* quantity, bid and ask). Checks only
run against a valid book. Resyncs use the snapshot lines of the recording
(a recorder fetches a fresh snapshot on any gap).
"""
from __future__ import annotations

import os
import time
from collections import Counter
from typing import Iterable

import msgspec

from ext.book import NO_ASK, NO_BID, OrderBook
from ext.parsers import DecodeError, LevelParser
from engine.feed.market import FeedListener, MarketDataFeed
from engine.feed.messages import BookTicker, DepthUpdate
from engine.feed.sync import GapEvent
from engine.instruments import SPOT, USDM, Instrument, InstrumentError, get_builtin
from engine.recording import RecordingError, iter_records

# Pending bookTickers whose update id is ahead of the book; a bound keeps a
# stalled book from growing this without limit.
_PENDING_LIMIT = 100_000


class BboMismatch(msgspec.Struct, frozen=True):
    """A bookTicker that disagreed with the book at the same update id (prices in ticks, qty in lots)."""

    symbol: str
    update_id: int
    book: tuple[int, int, int, int]
    ticker: tuple[int, int, int, int]


class BboChecker(FeedListener):
    """Compare the book's BBO with every bookTicker of the same update id ``u``.

    Attributes
    ----------
    checks, mismatches : int
        Comparisons made and failed.
    mismatch_samples : list[BboMismatch]
        The first 20 mismatches.
    """

    def __init__(self, feed_ref: "list[MarketDataFeed]") -> None:
        self._feed_ref = feed_ref
        self._pending: dict[str, dict[int, BookTicker]] = {}
        self._parsers: dict[str, LevelParser] = {}
        self.checks = 0
        self.mismatches = 0
        self.mismatch_samples: list[BboMismatch] = []
        self.gaps: list[GapEvent] = []
        self.tickers = 0
        self.ticker_errors = 0

    def _parser(self, symbol: str) -> LevelParser | None:
        p = self._parsers.get(symbol)
        if p is None:
            sync = self._feed_ref[0].syncs.get(symbol)
            if sync is None:
                return None
            p = self._parsers[symbol] = sync.parser
        return p

    def _check(self, symbol: str, book: OrderBook, t: BookTicker) -> None:
        p = self._parser(symbol)
        if p is None:
            return
        try:
            want = (p.price_ticks(t.bid_price), p.qty_lots(t.bid_qty), p.price_ticks(t.ask_price), p.qty_lots(t.ask_qty))
        except DecodeError:
            self.ticker_errors += 1
            return
        bb, ba = book.best_bid(), book.best_ask()
        got = (bb if bb != NO_BID else -1, book.best_bid_qty(), ba if ba != NO_ASK else -1, book.best_ask_qty())
        self.checks += 1
        if got != want:
            self.mismatches += 1
            if len(self.mismatch_samples) < 20:
                self.mismatch_samples.append(BboMismatch(symbol, t.update_id, got, want))

    def on_book(self, symbol: str, book: OrderBook) -> None:
        pend = self._pending.get(symbol)
        if not pend:
            return
        t = pend.pop(book.last_update_id, None)
        if t is not None:
            self._check(symbol, book, t)

    def on_book_ticker(self, symbol: str, ticker: BookTicker, ts_local_ns: int) -> None:
        self.tickers += 1
        feed = self._feed_ref[0]
        book = feed.book(symbol)
        if book is not None:
            if ticker.update_id == book.last_update_id:
                self._check(symbol, book, ticker)
                return
            if ticker.update_id < book.last_update_id:
                return  # no applied diff ends exactly at this update id
        pend = self._pending.setdefault(symbol, {})
        if len(pend) >= _PENDING_LIMIT:
            pend.pop(next(iter(pend)))
        pend[ticker.update_id] = ticker

    def on_gap(self, event: GapEvent) -> None:
        self.gaps.append(event)
        # Tickers from before the gap can never be checked against the resynced book.
        self._pending.pop(event.symbol, None)


class BookReport(msgspec.Struct):
    """Result of a book replay. Prices in decimal strings, quantities in base units."""

    files: list[str]
    frames: int
    depth_messages: int
    diffs_applied: int
    level_updates: int
    gaps: int
    resyncs: int
    crossed: int
    bbo_checks: int
    bbo_mismatches: int
    book_tickers: int
    trades: int
    decode_errors: dict[str, int]
    snapshots: int
    valid_at_end: bool
    best_bid: str | None
    best_bid_qty: str | None
    best_ask: str | None
    best_ask_qty: str | None
    last_update_id: int
    elapsed_s: float
    msgs_per_s: float
    depth_msgs_per_s: float
    symbols: dict[str, dict[str, object]]
    gap_events: list[GapEvent]
    mismatch_samples: list[BboMismatch]


def _make_resolver(market: str | None, instruments: dict[str, Instrument] | None):
    def resolve(symbol: str, first: DepthUpdate | None) -> Instrument:
        if instruments and symbol in instruments:
            return instruments[symbol]
        mk = market
        if mk is None:
            mk = USDM if (first is not None and first.prev_final_update_id != -1) else SPOT
        return get_builtin(symbol, mk)
    return resolve


def replay_book(paths: Iterable[str | os.PathLike[str]], symbol: str | None = None, market: str | None = None,
                instruments: dict[str, Instrument] | None = None) -> BookReport:
    """Replay one session's recording files through decode, sync and book.

    Parameters
    ----------
    paths : iterable of path
        The files of one session, in order (e.g. ``*_20240808.gz`` then ``*_20240809.gz``).
    symbol : str, optional
        Only this symbol's depth and bookTicker frames are processed; it also
        names bare snapshot lines. Default: the first symbol seen.
    market : {"spot", "usdm"}, optional
        Force the sync rules; by default USD-M when diffs carry ``pu``.
    instruments : dict, optional
        Instruments by symbol (e.g. from exchangeInfo); else the built-in table.

    Returns
    -------
    BookReport
    """
    paths = [os.fspath(p) for p in paths]
    ref: list[MarketDataFeed] = []
    checker = BboChecker(ref)
    feed = MarketDataFeed(_make_resolver(market, instruments), checker, default_symbol=symbol.upper() if symbol else None)
    ref.append(feed)
    want = symbol.upper().encode() if symbol else None
    want_lower = symbol.lower().encode() if symbol else None
    rec_errors: list[RecordingError] = []
    t0 = time.perf_counter()
    for rec in iter_records(paths, rec_errors):
        frame = rec.frame
        if want is not None and not frame.startswith(b'{"lastUpdateId"'):
            # Cheap symbol filter on the stream name / symbol field; the decoder does the real work.
            head = frame[:64]
            if want_lower not in head and want not in frame[:200]:
                continue
        feed.on_frame(frame, rec.ts_local_ns, rec.source)
    elapsed = max(time.perf_counter() - t0, 1e-9)
    errors = dict(feed.errors)
    if rec_errors:
        errors["bad_line"] = len(rec_errors)
    per_symbol: dict[str, dict[str, object]] = {}
    for sym, s in feed.syncs.items():
        per_symbol[sym] = {
            "market": s.instrument.market, "diffs_applied": s.diffs_applied, "gaps": s.gaps,
            "resyncs": s.resyncs, "crossed": s.crossed, "stale_dropped": s.diffs_dropped_stale,
            "valid_at_end": s.valid, "last_update_id": s.book.last_update_id,
        }
    main = feed.syncs.get(feed.default_symbol or "") if feed.default_symbol else None
    bb = bq = ba = aq = None
    if main is not None and main.valid:
        inst = main.instrument
        b = main.book
        if b.best_bid() != NO_BID:
            bb, bq = str(inst.ticks_to_price(b.best_bid())), str(inst.lots_to_qty(b.best_bid_qty()))
        if b.best_ask() != NO_ASK:
            ba, aq = str(inst.ticks_to_price(b.best_ask())), str(inst.lots_to_qty(b.best_ask_qty()))
    syncs = list(feed.syncs.values())
    return BookReport(
        files=paths,
        frames=feed.frames,
        depth_messages=feed.depth_messages,
        diffs_applied=sum(s.diffs_applied for s in syncs),
        level_updates=sum(s.levels_applied for s in syncs),
        gaps=sum(s.gaps for s in syncs),
        resyncs=sum(s.resyncs for s in syncs),
        crossed=sum(s.crossed for s in syncs),
        bbo_checks=checker.checks,
        bbo_mismatches=checker.mismatches,
        book_tickers=checker.tickers,
        trades=feed.counts.get("trade", 0) + feed.counts.get("aggTrade", 0),
        decode_errors=errors,
        snapshots=sum(s.snapshots_loaded for s in syncs),
        valid_at_end=bool(main is not None and main.valid),
        best_bid=bb, best_bid_qty=bq, best_ask=ba, best_ask_qty=aq,
        last_update_id=main.book.last_update_id if main is not None else 0,
        elapsed_s=round(elapsed, 6),
        msgs_per_s=round(feed.frames / elapsed, 1),
        depth_msgs_per_s=round(feed.depth_messages / elapsed, 1),
        symbols=per_symbol,
        gap_events=checker.gaps,
        mismatch_samples=checker.mismatch_samples,
    )


__all__ = ["BboChecker", "BookReport", "replay_book", "InstrumentError", "Counter"]
