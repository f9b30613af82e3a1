"""Instrument definitions: tick size, step size, minimum notional.

Prices on the hot path are integer **ticks** (``price / tick_size``); order
quantities are integer **steps** (``qty / step_size``). Market-data quantities
are integer **lots** of ``10**-qty_decimals`` base units: the venue's depth
carries quantities of orders placed under older, finer step sizes (the spot
BTCUSDT recordings of 2024-08-08 hold 6-decimal quantities while the order
step is 0.00001), so the book keeps the venue's own quantity precision
(spot ``baseAssetPrecision``, USD-M ``quantityPrecision``) and never rounds.

Source of the fields: Binance spot ``GET /api/v3/exchangeInfo`` filters
``PRICE_FILTER.tickSize``, ``LOT_SIZE.stepSize``, ``NOTIONAL.minNotional`` /
``MIN_NOTIONAL.minNotional`` and ``baseAssetPrecision`` (spot docs
``filters.md``); USD-M ``GET /fapi/v1/exchangeInfo`` uses ``MIN_NOTIONAL.notional``
and ``quantityPrecision`` (venue-protocols.md section 7).
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Mapping

import msgspec

SPOT = "spot"
USDM = "usdm"
MARKETS = (SPOT, USDM)


class InstrumentError(ValueError):
    """An instrument definition or exchangeInfo entry is missing or malformed."""


def decimals_of(x: Decimal) -> int:
    """Return the number of decimal places needed to write ``x`` exactly (>= 0)."""
    exp = x.normalize().as_tuple().exponent
    return max(0, -int(exp))


class Instrument(msgspec.Struct, frozen=True, gc=False):
    """One tradable symbol on one market.

    Attributes
    ----------
    symbol : str
        Venue symbol, upper case (``BTCUSDT``).
    market : str
        ``"spot"`` or ``"usdm"``; selects the depth-sync rules (venue-protocols.md 1.6 / 1.7).
    tick_size : Decimal
        Price grid (``PRICE_FILTER.tickSize``), quote currency.
    step_size : Decimal
        Order quantity grid (``LOT_SIZE.stepSize``), base currency.
    min_notional : Decimal
        Minimum ``price * qty`` of an order, quote currency.
    qty_decimals : int
        Decimal places of market-data quantities; one book lot is ``10**-qty_decimals``.
    """

    symbol: str
    market: str
    tick_size: Decimal
    step_size: Decimal
    min_notional: Decimal
    qty_decimals: int

    def __post_init__(self) -> None:
        if self.market not in MARKETS:
            raise InstrumentError(f"{self.symbol}: market must be one of {MARKETS}, got {self.market!r}")
        for name in ("tick_size", "step_size"):
            v = getattr(self, name)
            if not isinstance(v, Decimal) or not v.is_finite() or v <= 0:
                raise InstrumentError(f"{self.symbol}: {name} must be a positive decimal, got {v!r}")
        if self.min_notional < 0:
            raise InstrumentError(f"{self.symbol}: min_notional must be >= 0")
        if not 0 <= self.qty_decimals <= 18:
            raise InstrumentError(f"{self.symbol}: qty_decimals must be in 0..18")
        if decimals_of(self.step_size) > self.qty_decimals:
            raise InstrumentError(f"{self.symbol}: step_size finer than qty_decimals")

    # -- integer grid parameters used by ext.parsers ---------------------------------
    @property
    def price_decimals(self) -> int:
        """Decimal places of the tick size (prices are parsed at this scale)."""
        return decimals_of(self.tick_size)

    @property
    def tick_units(self) -> int:
        """Tick size in units of ``10**-price_decimals`` (1 for power-of-ten ticks)."""
        return int(self.tick_size.scaleb(self.price_decimals))

    @property
    def lot_size(self) -> Decimal:
        """One book lot in base currency, ``10**-qty_decimals``."""
        return Decimal(1).scaleb(-self.qty_decimals)

    @property
    def lots_per_step(self) -> int:
        """Book lots in one order step."""
        return int(self.step_size.scaleb(self.qty_decimals))

    # -- conversions at the edges (exact; never binary floats) ---------------------------
    def price_to_ticks(self, price: Decimal | str) -> int:
        """Convert a price to ticks. Raises ``ValueError`` if it is off the tick grid."""
        p = Decimal(price)
        q, r = divmod(p, self.tick_size)
        if r != 0:
            raise ValueError(f"{self.symbol}: price {price} is not a multiple of tick {self.tick_size}")
        return int(q)

    def ticks_to_price(self, ticks: int) -> Decimal:
        """Convert ticks back to a decimal price."""
        return (self.tick_size * ticks).quantize(self.tick_size)

    def lots_to_qty(self, lots: int) -> Decimal:
        """Convert book lots to a decimal quantity in base currency."""
        return Decimal(lots).scaleb(-self.qty_decimals)

    def qty_to_steps(self, qty: Decimal | str) -> int:
        """Convert an order quantity to steps. Raises ``ValueError`` if it is off the step grid."""
        x = Decimal(qty)
        q, r = divmod(x, self.step_size)
        if r != 0:
            raise ValueError(f"{self.symbol}: quantity {qty} is not a multiple of step {self.step_size}")
        return int(q)

    def steps_to_qty(self, steps: int) -> Decimal:
        """Convert steps to a decimal quantity."""
        return (self.step_size * steps).quantize(self.step_size)


def _filters(entry: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for f in entry.get("filters", ()):
        if isinstance(f, Mapping) and "filterType" in f:
            out[str(f["filterType"])] = f
    return out


def _dec(value: Any, what: str, symbol: str) -> Decimal:
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise InstrumentError(f"{symbol}: {what} is not a decimal: {value!r}") from None
    if not d.is_finite():
        raise InstrumentError(f"{symbol}: {what} is not finite")
    return d


def instrument_from_exchange_info(entry: Mapping[str, Any], market: str) -> Instrument:
    """Build an :class:`Instrument` from one ``symbols[]`` entry of exchangeInfo.

    Parameters
    ----------
    entry : mapping
        One element of ``exchangeInfo["symbols"]`` (spot or USD-M shape).
    market : {"spot", "usdm"}

    Raises
    ------
    InstrumentError
        If a required filter or field is missing or malformed.
    """
    symbol = str(entry.get("symbol", "?"))
    flt = _filters(entry)
    try:
        tick = _dec(flt["PRICE_FILTER"]["tickSize"], "PRICE_FILTER.tickSize", symbol)
        step = _dec(flt["LOT_SIZE"]["stepSize"], "LOT_SIZE.stepSize", symbol)
    except KeyError as e:
        raise InstrumentError(f"{symbol}: exchangeInfo entry lacks {e.args[0]}") from None
    if "NOTIONAL" in flt:
        mn = _dec(flt["NOTIONAL"].get("minNotional", "0"), "NOTIONAL.minNotional", symbol)
    elif "MIN_NOTIONAL" in flt:
        f = flt["MIN_NOTIONAL"]
        mn = _dec(f.get("minNotional", f.get("notional", "0")), "MIN_NOTIONAL", symbol)
    else:
        mn = Decimal(0)
    if market == SPOT:
        qd = int(entry.get("baseAssetPrecision", max(8, decimals_of(step))))
    else:
        qd = int(entry.get("quantityPrecision", decimals_of(step)))
    return Instrument(symbol=symbol, market=market, tick_size=tick, step_size=step,
                      min_notional=mn, qty_decimals=max(qd, decimals_of(step)))


def load_exchange_info(doc: Mapping[str, Any] | bytes | str, market: str) -> dict[str, Instrument]:
    """Parse a whole exchangeInfo document (REST body or WS API ``result``).

    Returns a mapping symbol -> :class:`Instrument`. Raises :class:`InstrumentError`.
    """
    if isinstance(doc, (bytes, str)):
        try:
            doc = msgspec.json.decode(doc)
        except msgspec.DecodeError as e:
            raise InstrumentError(f"exchangeInfo is not valid JSON: {e}") from None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("symbols"), list):
        raise InstrumentError("exchangeInfo lacks a 'symbols' list")
    return {i.symbol: i for i in (instrument_from_exchange_info(e, market) for e in doc["symbols"])}


def _builtin(symbol: str, market: str, tick: str, step: str, notional: str, qd: int) -> Instrument:
    return Instrument(symbol, market, Decimal(tick), Decimal(step), Decimal(notional), qd)


# The symbols of the recordings under shared/data/hftbacktest. Values are Binance's
# exchangeInfo filters for these symbols (spot: tickSize 0.01, BTC stepSize 0.00001,
# ETH 0.0001, NOTIONAL 5, baseAssetPrecision 8; USD-M: BTCUSDT tickSize 0.10 stepSize 0.001
# notional 100, ETHUSDT tickSize 0.01 stepSize 0.001 notional 20, quantityPrecision 3).
BUILTIN: dict[tuple[str, str], Instrument] = {
    (i.market, i.symbol): i
    for i in (
        _builtin("BTCUSDT", SPOT, "0.01", "0.00001", "5", 8),
        _builtin("ETHUSDT", SPOT, "0.01", "0.0001", "5", 8),
        _builtin("BTCUSDT", USDM, "0.10", "0.001", "100", 3),
        _builtin("ETHUSDT", USDM, "0.01", "0.001", "20", 3),
    )
}


def get_builtin(symbol: str, market: str) -> Instrument:
    """Return the built-in instrument. Raises :class:`InstrumentError` if unknown."""
    try:
        return BUILTIN[(market, symbol.upper())]
    except KeyError:
        known = ", ".join(f"{m}:{s}" for m, s in sorted(BUILTIN))
        raise InstrumentError(
            f"no built-in instrument {market}:{symbol.upper()} (known: {known}); "
            "load an exchangeInfo document instead"
        ) from None


def iter_builtin() -> Iterable[Instrument]:
    """Iterate over the built-in instruments."""
    return BUILTIN.values()
