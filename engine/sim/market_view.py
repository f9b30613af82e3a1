"""The market as the trading side of the simulator sees it.

:class:`MarketView` is the contract between the market-data side of the
simulator (recording playback, synthetic market, stream server) and the
trading side (:mod:`engine.sim.exchange`, :mod:`engine.sim.matching`). The
trading side only reads the market and listens to it; our own orders never
change it.

:class:`StaticMarket` is a small in-memory implementation for tests: levels
are set and trades are pushed by hand.

Units: prices in quote currency, quantities in base currency, both exact
:class:`~decimal.Decimal`; times in ms since the epoch (venue clock).
"""
from __future__ import annotations

from decimal import Decimal
from typing import Callable, Iterable, Protocol, runtime_checkable

from sortedcontainers import SortedDict

from engine.instruments import Instrument

BUY = "BUY"
SELL = "SELL"

TradeListener = Callable[[str, Decimal, Decimal, bool, int], None]
"""``cb(symbol, price, qty, buyer_is_maker, trade_time_ms)``."""

BookListener = Callable[[str], None]
"""``cb(symbol)``, called after a depth update has been applied."""


@runtime_checkable
class MarketView(Protocol):
    """Read-only view of the simulated market, implemented by the market side.

    Every method is called from the event-loop thread; implementations need
    no locking. ``symbol`` is the venue symbol in upper case (``BTCUSDT``).
    """

    def instrument(self, symbol: str) -> Instrument:
        """Return the instrument of ``symbol``; raise ``KeyError`` if unknown."""
        ...

    def symbols(self) -> list[str]:
        """Return every symbol this market serves."""
        ...

    def best_bid(self, symbol: str) -> tuple[Decimal, Decimal] | None:
        """Return ``(price, qty)`` of the best displayed bid, or ``None`` if the side is empty."""
        ...

    def best_ask(self, symbol: str) -> tuple[Decimal, Decimal] | None:
        """Return ``(price, qty)`` of the best displayed ask, or ``None`` if the side is empty."""
        ...

    def qty_at(self, symbol: str, side: str, price: Decimal) -> Decimal:
        """Return the displayed quantity at ``price`` (0 if no level).

        ``side`` is ``"BUY"`` for the bid side and ``"SELL"`` for the ask side.
        """
        ...

    def depth(self, symbol: str, limit: int) -> dict:
        """Return Binance's depth body for the top ``limit`` levels per side.

        Exactly ``{"lastUpdateId": int, "bids": [[price, qty], ...], "asks": [...]}``
        with decimal strings, bids high to low, asks low to high
        (venue-protocols.md 1.3). May raise ``LookupError`` (other than for an
        unknown symbol) while the book is not available, e.g. not synchronised;
        the trading side then sees no displayed liquidity.
        """
        ...

    def add_trade_listener(self, cb: TradeListener) -> None:
        """Call ``cb(symbol, price, qty, buyer_is_maker, trade_time_ms)`` after every market trade.

        ``buyer_is_maker=True`` means the aggressor sold (the trade hit bids).
        Called for recorded and synthetic trades, after the trade happened.
        """
        ...

    def add_book_listener(self, cb: BookListener) -> None:
        """Call ``cb(symbol)`` after each depth update has been applied to the book."""
        ...

    def now_ms(self) -> int:
        """Return the venue clock in ms (in replay: the recorded event time)."""
        ...


def fmt8(x: Decimal) -> str:
    """Format a decimal with 8 decimal places, as Binance spot renders amounts."""
    return f"{x:.8f}"


class StaticMarket:
    """In-memory :class:`MarketView` for tests: set levels, push trades by hand.

    Parameters
    ----------
    instruments : iterable of Instrument
        The symbols served.
    now_ms : int
        Initial venue clock, ms.
    """

    def __init__(self, instruments: Iterable[Instrument], now_ms: int = 1_700_000_000_000) -> None:
        self._instruments = {i.symbol: i for i in instruments}
        # Per symbol: bids and asks as price -> qty; bids iterate high to low via reverse.
        self._bids: dict[str, SortedDict] = {s: SortedDict() for s in self._instruments}
        self._asks: dict[str, SortedDict] = {s: SortedDict() for s in self._instruments}
        self._update_id: dict[str, int] = {s: 1 for s in self._instruments}
        self._trade_listeners: list[TradeListener] = []
        self._book_listeners: list[BookListener] = []
        self._now_ms = now_ms

    # -- MarketView --------------------------------------------------------------------
    def instrument(self, symbol: str) -> Instrument:
        """Return the instrument of ``symbol``; raise ``KeyError`` if unknown."""
        return self._instruments[symbol]

    def symbols(self) -> list[str]:
        """Return every symbol served."""
        return list(self._instruments)

    def best_bid(self, symbol: str) -> tuple[Decimal, Decimal] | None:
        """Return ``(price, qty)`` of the best bid or ``None``."""
        book = self._bids[symbol]
        return book.peekitem(-1) if book else None

    def best_ask(self, symbol: str) -> tuple[Decimal, Decimal] | None:
        """Return ``(price, qty)`` of the best ask or ``None``."""
        book = self._asks[symbol]
        return book.peekitem(0) if book else None

    def qty_at(self, symbol: str, side: str, price: Decimal) -> Decimal:
        """Return the displayed quantity at ``price`` on ``side`` (BUY = bids)."""
        book = self._bids[symbol] if side == BUY else self._asks[symbol]
        return book.get(Decimal(price), Decimal(0))

    def depth(self, symbol: str, limit: int) -> dict:
        """Return Binance's depth body (venue-protocols.md 1.3)."""
        bids = self._bids[symbol]
        asks = self._asks[symbol]
        n_b = min(limit, len(bids))
        n_a = min(limit, len(asks))
        return {
            "lastUpdateId": self._update_id[symbol],
            "bids": [[fmt8(p), fmt8(bids[p])] for p in bids.islice(len(bids) - n_b, reverse=True)],
            "asks": [[fmt8(p), fmt8(asks[p])] for p in asks.islice(0, n_a)],
        }

    def add_trade_listener(self, cb: TradeListener) -> None:
        """Register a trade listener."""
        self._trade_listeners.append(cb)

    def add_book_listener(self, cb: BookListener) -> None:
        """Register a book listener."""
        self._book_listeners.append(cb)

    def now_ms(self) -> int:
        """Return the venue clock, ms."""
        return self._now_ms

    # -- test controls -------------------------------------------------------------------
    def set_now_ms(self, now_ms: int) -> None:
        """Set the venue clock, ms."""
        self._now_ms = now_ms

    def set_level(self, symbol: str, side: str, price: Decimal | str, qty: Decimal | str) -> None:
        """Set the absolute quantity at one level (0 removes it) and notify book listeners."""
        self._set(symbol, side, Decimal(price), Decimal(qty))
        self._book_updated(symbol)

    def set_book(
        self,
        symbol: str,
        bids: Iterable[tuple[Decimal | str, Decimal | str]] = (),
        asks: Iterable[tuple[Decimal | str, Decimal | str]] = (),
    ) -> None:
        """Replace both sides of the book and notify book listeners once."""
        self._bids[symbol].clear()
        self._asks[symbol].clear()
        for p, q in bids:
            self._set(symbol, BUY, Decimal(p), Decimal(q))
        for p, q in asks:
            self._set(symbol, SELL, Decimal(p), Decimal(q))
        self._book_updated(symbol)

    def push_trade(
        self,
        symbol: str,
        price: Decimal | str,
        qty: Decimal | str,
        buyer_is_maker: bool,
        trade_time_ms: int | None = None,
    ) -> None:
        """Report a market trade to the trade listeners (the book is not changed)."""
        t = self._now_ms if trade_time_ms is None else trade_time_ms
        for cb in list(self._trade_listeners):
            cb(symbol, Decimal(price), Decimal(qty), buyer_is_maker, t)

    def _set(self, symbol: str, side: str, price: Decimal, qty: Decimal) -> None:
        book = self._bids[symbol] if side == BUY else self._asks[symbol]
        if qty == 0:
            book.pop(price, None)
        else:
            book[price] = qty

    def _book_updated(self, symbol: str) -> None:
        self._update_id[symbol] += 1
        for cb in list(self._book_listeners):
            cb(symbol)
