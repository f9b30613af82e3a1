"""Play a recorded Binance session back as the venue's market.

A session is one or more files in the ``<local ts> <raw JSON>`` line format of
``shared/data/hftbacktest`` (shared/data/README.md section 1), read in order
with :func:`engine.recording.iter_records`. Stream frames are combined-stream
envelopes ``{"stream":..,"data":..}`` (venue-protocols.md section 2); they are
re-sent byte-exact: the envelope as recorded to combined-stream clients, and
the recorded bytes of ``data`` to raw ``/ws/`` clients.

The venue's book is seeded from the recording's REST snapshot line (raw body
with ``lastUpdateId``, no envelope). The snapshot usually comes a few lines
*after* the diffs that bridge it, so the source reads ahead (``lookahead``
lines) and hands the snapshot to the venue before the first frame; the venue
then drops and bridges diffs by the rules of venue-protocols.md 1.5-1.7.
Depth diffs that the book drops are still streamed: clients must buffer.
"""
from __future__ import annotations

import os
import re
from itertools import islice
from pathlib import Path
from typing import Generator, Iterable, Iterator, Mapping, Sequence

import msgspec

from engine.instruments import SPOT, USDM, Instrument, get_builtin
from engine.recording import Record, iter_records

from .market import (AGG_TRADE, BOOK_TICKER, DEPTH, OTHER, SNAPSHOT, TRADE, BookTicker, DepthDiff,
                     MarketEvent, Snapshot, Trade, VenueMarket, fraction_digits)

PathLike = str | os.PathLike[str]


class PlaybackError(ValueError):
    """A recording cannot be played back (unknown symbol, ambiguous snapshot, ...)."""


class _Envelope(msgspec.Struct, gc=False):
    stream: str
    data: msgspec.Raw


class _Timed(msgspec.Struct, gc=False):
    E: int | None = None
    s: str | None = None


_ENV = msgspec.json.Decoder(_Envelope)
_DEPTH = msgspec.json.Decoder(DepthDiff)
_TRADE = msgspec.json.Decoder(Trade)
_BOOK_TICKER = msgspec.json.Decoder(BookTicker)
_TIMED = msgspec.json.Decoder(_Timed)
_SNAPSHOT = msgspec.json.Decoder(Snapshot)

_SUFFIX_KIND = {"trade": TRADE, "aggTrade": AGG_TRADE, "bookTicker": BOOK_TICKER}


def stream_kind(stream: str) -> int:
    """Return the :class:`MarketEvent` kind of a stream name (``DEPTH`` only for diff depth)."""
    suffix = stream[stream.find("@") + 1:]
    kind = _SUFFIX_KIND.get(suffix)
    if kind is not None:
        return kind
    if suffix == "depth" or suffix.startswith("depth@"):
        return DEPTH
    return OTHER


def decode_record(rec: Record) -> MarketEvent:
    """Turn one recorded line into a :class:`MarketEvent`.

    Stream frames keep their recorded bytes: ``frame`` is the whole envelope and
    ``payload`` the exact bytes of its ``data`` member. A REST snapshot line becomes a
    ``SNAPSHOT`` event (not streamed) whose symbol is the snapshot's ``symbol`` field
    or ``""`` if it has none.

    Raises
    ------
    msgspec.DecodeError
        The frame is neither an envelope nor a depth snapshot.
    """
    frame = rec.frame
    if b'"stream"' not in frame[:16]:
        snap = _SNAPSHOT.decode(frame)
        return MarketEvent(rec.ts_local_ns, SNAPSHOT, snap.symbol or "", None, None, None, snap)
    env = _ENV.decode(frame)
    payload = bytes(env.data)
    stream = env.stream
    kind = stream_kind(stream)
    data: object
    if kind == DEPTH:
        data = _DEPTH.decode(payload)
        if data.e != "depthUpdate":  # type: ignore[attr-defined]
            kind = OTHER
    elif kind == TRADE:
        data = _TRADE.decode(payload)
    elif kind == BOOK_TICKER:
        data = _BOOK_TICKER.decode(payload)
    else:
        data = _TIMED.decode(payload)
    sym = getattr(data, "s", None) or stream[: stream.find("@")].upper()
    return MarketEvent(rec.ts_local_ns, kind, sym, stream, payload, frame, data)


def iter_events(paths: Iterable[PathLike]) -> Generator[MarketEvent, None, None]:
    """Yield every line of a recorded session as a :class:`MarketEvent`, in file order."""
    for rec in iter_records(paths):
        yield decode_record(rec)


_DAY = re.compile(r"^(?P<stem>.*_)(?P<day>\d{8})(?P<ext>\..*)$")


def session_paths(first: PathLike) -> list[Path]:
    """Return ``first`` and the files that continue its session (next days, same name).

    hftbacktest splits one session at UTC midnight into ``<sym>_<YYYYMMDD>.gz`` files
    (shared/data/README.md section 1); this follows consecutive days that exist.
    """
    from datetime import date, timedelta

    p = Path(first)
    out = [p]
    m = _DAY.match(p.name)
    while m:
        d = date(int(m["day"][:4]), int(m["day"][4:6]), int(m["day"][6:])) + timedelta(days=1)
        nxt = p.with_name(f"{m['stem']}{d:%Y%m%d}{m['ext']}")
        if not nxt.exists():
            break
        out.append(nxt)
        p = nxt
        m = _DAY.match(p.name)
    return out


class PlaybackSource:
    """A recorded session as a market source for :func:`engine.sim.market.run_source`.

    Parameters
    ----------
    paths : path or sequence of paths
        The files of one session, in order (e.g. ``btcusdt_20240808.gz``, ``btcusdt_20240809.gz``).
    speed : float or None
        Pacing: recorded local-time gaps are divided by ``speed``; None or 0 plays as
        fast as possible.
    market : {"spot", "usdm"}, optional
        Overrides the market inferred from the frames (``pu`` in diffs or ``@depth@0ms``
        means USD-M).
    instruments : mapping symbol -> Instrument, optional
        Instruments for the recorded symbols; default :func:`engine.instruments.get_builtin`.
    max_records : int, optional
        Stop after this many lines (the market then ends).
    lookahead : int
        Lines read ahead at the start to find the REST snapshot.

    Raises
    ------
    PlaybackError
        No frames, an unknown symbol, or a snapshot that cannot be attributed to a symbol.
    """

    # The recorded snapshot is within the first ~60 lines of every hftbacktest file
    # (README 1a-1c); 10,000 lines leave room for slower collectors.
    DEFAULT_LOOKAHEAD = 10_000

    def __init__(
        self,
        paths: PathLike | Sequence[PathLike],
        *,
        speed: float | None = 1.0,
        market: str | None = None,
        instruments: Mapping[str, Instrument] | None = None,
        max_records: int | None = None,
        lookahead: int = DEFAULT_LOOKAHEAD,
    ) -> None:
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise PlaybackError("no recording files given")
        self.speed = speed
        self.max_records = max_records
        self.lookahead = lookahead
        head, snap = self._read_head()
        if not head and snap is None:
            raise PlaybackError(f"{self.paths[0]}: no frames")
        self.market = market or _infer_market(head, snap)
        syms: list[str] = []
        for ev in head:
            if ev.kind in (DEPTH, TRADE, BOOK_TICKER) and ev.symbol not in syms:
                syms.append(ev.symbol)
        self.symbols = syms
        self._snapshot_symbol = self._attribute(snap) if snap is not None else None
        self.has_snapshot = snap is not None
        self._out_decimals = _out_decimals(head, snap, self._snapshot_symbol)
        self.first_event_ms: int | None = next(
            (e.data.E for e in head if getattr(e.data, "E", None) is not None), snap.E if snap is not None else None)
        self.instruments: dict[str, Instrument] = {}
        for s in syms:
            if instruments is not None and s in instruments:
                self.instruments[s] = instruments[s]
            else:
                try:
                    self.instruments[s] = get_builtin(s, self.market)
                except ValueError as e:
                    raise PlaybackError(f"{self.paths[0]}: {e}; pass instruments=") from None

    def _read_head(self) -> tuple[list[MarketEvent], Snapshot | None]:
        head: list[MarketEvent] = []
        it = self._iter()
        try:
            for ev in islice(it, self.lookahead):
                if ev.kind == SNAPSHOT:
                    return head, ev.data
                head.append(ev)
            return head, None
        finally:
            it.close()

    def _iter(self) -> Generator[MarketEvent, None, None]:
        it = iter_events(self.paths)
        try:
            yield from (islice(it, self.max_records) if self.max_records is not None else it)
        finally:
            it.close()

    def _attribute(self, snap: Snapshot) -> str:
        if snap.symbol:
            return snap.symbol
        if len(self.symbols) != 1:
            raise PlaybackError(
                f"{self.paths[0]}: the snapshot has no symbol and the recording has {self.symbols}")
        return self.symbols[0]

    def bind(self, venue: VenueMarket) -> None:
        """Register the recorded symbols with ``venue`` and start its clock at the first event time."""
        for s, inst in self.instruments.items():
            pd, qd = self._out_decimals.get(s, (None, None))
            venue.register(inst, from_diffs=True, derive_agg_trades=True,
                           price_out_decimals=pd, qty_out_decimals=qd)
        if self.first_event_ms is not None:
            # Before the first event the venue clock is the recording's, not the wall clock.
            venue.advance_clock(self.first_event_ms)

    def events(self) -> Iterator[MarketEvent]:
        """Yield the session's events: the first snapshot first, then every line in order.

        The first snapshot (found within ``lookahead`` lines) is moved to the front, with
        the time of the first line and, if it has none, the first event time of the head
        as ``E`` so the venue clock starts there. Later snapshot lines stay in place.
        """
        it = self._iter()
        head: list[MarketEvent] = []
        snap_ev: MarketEvent | None = None
        for ev in it:
            if ev.kind == SNAPSHOT:
                snap_ev = ev
                break
            head.append(ev)
            if len(head) >= self.lookahead:
                break
        if snap_ev is not None:
            snap: Snapshot = snap_ev.data
            sym = snap.symbol or self._snapshot_symbol or ""
            if snap.E is None:
                snap = msgspec.structs.replace(snap, E=self.first_event_ms)
            ts = head[0].ts_local_ns if head else snap_ev.ts_local_ns
            yield MarketEvent(ts, SNAPSHOT, sym, None, None, None, snap)
        yield from head
        for ev in it:
            if ev.kind == SNAPSHOT and not ev.symbol:
                ev = ev._replace(symbol=self._attribute(ev.data))
            yield ev


def _infer_market(head: list[MarketEvent], snap: Snapshot | None) -> str:
    for ev in head:
        if ev.kind == DEPTH:
            if ev.data.pu is not None or (ev.stream or "").endswith("@depth@0ms"):
                return USDM
            return SPOT
    if snap is not None and snap.T is not None:
        return USDM
    return SPOT


def _out_decimals(head: list[MarketEvent], snap: Snapshot | None, snap_symbol: str | None) -> dict[str, tuple[int, int]]:
    # Outgoing strings keep the recording's own number of decimals per symbol.
    out: dict[str, tuple[int, int]] = {}
    if snap is not None and snap_symbol and snap.bids:
        out[snap_symbol] = (fraction_digits(snap.bids[0][0]), fraction_digits(snap.bids[0][1]))
    for ev in head:
        if ev.kind == DEPTH and ev.symbol not in out:
            lv = (ev.data.b or ev.data.a or [None])[0]
            if lv is not None:
                out[ev.symbol] = (fraction_digits(lv[0]), fraction_digits(lv[1]))
    return out


__all__ = ["PlaybackError", "PlaybackSource", "decode_record", "iter_events", "session_paths", "stream_kind"]
