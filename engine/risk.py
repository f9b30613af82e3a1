"""Pre-trade risk checks and the kill switch, in integer ticks and steps.

:meth:`RiskManager.check_new_order` runs before every ``order.place``. Each
check is O(1) (no loop over open orders, no allocation on success), uses only
``int`` arithmetic (Decimals are turned into integer limits once, at
construction; no binary float anywhere) and runs in a fixed order, so the same
inputs always give the same decision:

1. ``halted``          -- the kill switch is on (:meth:`RiskManager.halt`);
2. ``unknown_symbol``  -- no instrument for the symbol;
3. ``invalid_order``   -- side not BUY/SELL, price or quantity not a positive ``int``;
4. ``max_order_qty``   -- ``qty_steps > max_order_steps``;
5. ``max_notional``    -- ``price * qty > max_order_notional`` (quote currency,
   exact: ``price_ticks * qty_steps <= floor(max_notional / (tick_size * step_size))``);
6. ``no_mid`` / ``price_band`` -- with a band configured, the price must be
   within ``price_band_ticks`` ticks and/or ``price_band_bps`` basis points of
   the mid ``(best_bid + best_ask) / 2`` (compared as ``|2 * price - (bid + ask)|``,
   so a half-tick mid is exact); without a valid two-sided book there is no mid
   and the order is refused;
7. ``max_open_orders`` -- open orders of the symbol + 1 > ``max_open_orders``;
8. ``max_position``    -- worst case if every open order on that side fills:
   BUY ``position + open_buy + qty <= max_position_steps``,
   SELL ``position - open_sell - qty >= -max_position_steps``
   (orders reducing the position are allowed even beyond the limit);
9. ``order_rate``      -- at most ``max_orders_per_window`` orders in any
   ``order_rate_window_ms`` (a ring of the last send times).

State the manager keeps (its own, independent accounting -- defence in depth
next to the order tracker): per symbol the position and the open exposure per
side, per order its side and unfilled quantity. The runner feeds it
:meth:`~RiskManager.on_order_sent`, :meth:`~RiskManager.on_order_not_sent`,
:meth:`~RiskManager.on_fill`, :meth:`~RiskManager.on_order_closed`,
:meth:`~RiskManager.on_venue_reject`, and re-bases it from the tracker with
:meth:`~RiskManager.sync`.

Circuit breaker: the same venue error code ``breaker_rejections`` times within
``breaker_window_ms`` halts the manager (codes in ``breaker_exempt_codes`` are
only counted). A halt is idempotent (the first reason is kept) and lasts until
an operator calls :meth:`~RiskManager.resume`.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from decimal import ROUND_FLOOR, Decimal
from typing import Annotated, Callable, Iterable, Mapping

import msgspec

from engine.instruments import Instrument

log = logging.getLogger(__name__)

BUY = "BUY"
SELL = "SELL"

# Reason codes of a refused order (RiskDecision.reason and RiskManager.rejections keys).
HALTED = "halted"
UNKNOWN_SYMBOL = "unknown_symbol"
INVALID_ORDER = "invalid_order"
MAX_ORDER_QTY = "max_order_qty"
MAX_NOTIONAL = "max_notional"
NO_MID = "no_mid"
PRICE_BAND = "price_band"
MAX_OPEN_ORDERS = "max_open_orders"
MAX_POSITION = "max_position"
ORDER_RATE = "order_rate"
REASONS = (HALTED, UNKNOWN_SYMBOL, INVALID_ORDER, MAX_ORDER_QTY, MAX_NOTIONAL, NO_MID, PRICE_BAND,
           MAX_OPEN_ORDERS, MAX_POSITION, ORDER_RATE)

# ext.book's "no ask" sentinel (INT64_MAX); mirrored here so risk does not import ext.
_NO_ASK = 2**63 - 1
_MS = 1_000_000


class RiskLimits(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Hard pre-trade limits (the ``[risk]`` table of the configuration).

    Quantities are in order **steps** of the traded symbol (``qty / step_size``),
    so the defaults suit spot BTCUSDT (step 0.00001 BTC: 1000 steps = 0.01 BTC).

    Attributes
    ----------
    max_position_steps : int
        Largest absolute position, counting every open order on the side as filled (>= 0).
    max_order_steps : int
        Largest quantity of one order, steps (>= 1).
    max_order_notional : Decimal
        Largest ``price * qty`` of one order, quote currency (> 0; a quoted decimal string in TOML).
    price_band_ticks : int
        Largest distance of the price from the mid, ticks; 0 disables this band.
    price_band_bps : int
        Largest distance of the price from the mid, basis points of the mid; 0 disables this band.
    max_open_orders : int
        Largest number of open orders per symbol (>= 1).
    max_orders_per_window : int
        Largest number of orders sent in any ``order_rate_window_ms`` (>= 1).
    order_rate_window_ms : int
        Rolling window of the order-rate limit, ms (>= 1).
    breaker_rejections : int
        Identical venue rejections (same error code) that trip the circuit breaker (>= 1).
    breaker_window_ms : int
        Window in which ``breaker_rejections`` must occur, ms (>= 1).
    breaker_exempt_codes : tuple of int
        Venue codes that never trip the breaker (only counted).
    """

    max_position_steps: Annotated[int, msgspec.Meta(ge=0)] = 1000
    max_order_steps: Annotated[int, msgspec.Meta(ge=1)] = 500
    max_order_notional: Decimal = Decimal("1000")
    price_band_ticks: Annotated[int, msgspec.Meta(ge=0)] = 0
    price_band_bps: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 100
    max_open_orders: Annotated[int, msgspec.Meta(ge=1)] = 10
    max_orders_per_window: Annotated[int, msgspec.Meta(ge=1)] = 10
    order_rate_window_ms: Annotated[int, msgspec.Meta(ge=1)] = 1000
    breaker_rejections: Annotated[int, msgspec.Meta(ge=1)] = 10
    breaker_window_ms: Annotated[int, msgspec.Meta(ge=1)] = 10_000
    breaker_exempt_codes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        # Messages start with the field name: engine.config turns them into "risk.<field>: ...".
        n = self.max_order_notional
        if not n.is_finite() or n <= 0:
            raise ValueError(f"max_order_notional: must be a positive decimal, got {n}")


class RiskDecision(msgspec.Struct, frozen=True, gc=False):
    """The outcome of a pre-trade check; truthy when the order may be sent.

    Attributes
    ----------
    ok : bool
    reason : str
        Reason code (one of :data:`REASONS`), ``""`` when ok.
    detail : str
        Human-readable explanation; ``"halted: <why>"`` while halted.
    """

    ok: bool
    reason: str = ""
    detail: str = ""

    def __bool__(self) -> bool:
        return self.ok


ACCEPT = RiskDecision(True)


class _SymbolState:
    # Per-symbol accounting; plain slots so the checks are attribute loads only.
    __slots__ = ("position_steps", "open_buy_steps", "open_sell_steps", "open_orders", "max_notional_units")

    def __init__(self, max_notional_units: int) -> None:
        self.position_steps = 0
        self.open_buy_steps = 0
        self.open_sell_steps = 0
        self.open_orders = 0
        self.max_notional_units = max_notional_units


class _Order:
    __slots__ = ("symbol", "side", "remaining_steps")

    def __init__(self, symbol: str, side: str, remaining_steps: int) -> None:
        self.symbol = symbol
        self.side = side
        self.remaining_steps = remaining_steps


def max_notional_units(inst: Instrument, max_notional: Decimal) -> int:
    """Return ``floor(max_notional / (tick_size * step_size))``: the largest allowed ``ticks * steps``."""
    q = (max_notional / (inst.tick_size * inst.step_size)).to_integral_value(rounding=ROUND_FLOOR)
    return int(q)


class RiskManager:
    """Pre-trade checks, exposure accounting, circuit breaker and kill switch.

    Parameters
    ----------
    limits : RiskLimits
    instruments : mapping or iterable of Instrument
        The traded symbols (symbol -> instrument, or instruments).
    clock_ns : callable, optional
        Monotonic clock, ns (default ``time.monotonic_ns``); injected in tests.
    on_halt : callable, optional
        ``f(reason)``, called once when the manager halts (e.g. pull all quotes).

    Attributes
    ----------
    halted : bool
    halt_reason : str
    checks, accepted : int
        Pre-trade checks run and passed.
    rejections : dict
        Refused checks by reason code.
    venue_rejections : dict
        Venue rejections reported to :meth:`on_venue_reject`, by error code.
    breaker_trips : int
    """

    def __init__(self, limits: RiskLimits, instruments: Mapping[str, Instrument] | Iterable[Instrument],
                 clock_ns: Callable[[], int] = time.monotonic_ns,
                 on_halt: Callable[[str], None] | None = None) -> None:
        self.limits = limits
        self._clock = clock_ns
        self.on_halt = on_halt
        insts = instruments.values() if isinstance(instruments, Mapping) else instruments
        self.instruments: dict[str, Instrument] = {i.symbol: i for i in insts}
        self._sym: dict[str, _SymbolState] = {
            s: _SymbolState(max_notional_units(i, limits.max_order_notional)) for s, i in self.instruments.items()}
        self._orders: dict[str, _Order] = {}
        # Order-rate ring: the last max_orders_per_window send times, oldest at _ring_i once full.
        self._ring = [0] * limits.max_orders_per_window
        self._ring_i = 0
        self._ring_n = 0
        self._window_ns = limits.order_rate_window_ms * _MS
        # Breaker: per venue code, the times of its last breaker_rejections rejections.
        self._breaker: dict[int, deque[int]] = {}
        self._breaker_window_ns = limits.breaker_window_ms * _MS
        self._exempt = frozenset(limits.breaker_exempt_codes)
        self.halted = False
        self.halt_reason = ""
        self._halted_decision = ACCEPT
        self.checks = 0
        self.accepted = 0
        self.rejections: dict[str, int] = {}
        self.venue_rejections: dict[int, int] = {}
        self.breaker_trips = 0

    # -- state ------------------------------------------------------------------------------------
    def position_steps(self, symbol: str) -> int:
        """Return the position the manager accounts for ``symbol``, steps (+ long, - short)."""
        return self._sym[symbol].position_steps

    def open_steps(self, symbol: str, side: str) -> int:
        """Return the unfilled quantity of open orders on ``side``, steps."""
        st = self._sym[symbol]
        return st.open_buy_steps if side == BUY else st.open_sell_steps

    def open_orders(self, symbol: str) -> int:
        """Return the number of open orders the manager accounts for ``symbol``."""
        return self._sym[symbol].open_orders

    # -- the check --------------------------------------------------------------------------------
    def _refuse(self, reason: str, detail: str) -> RiskDecision:
        self.rejections[reason] = self.rejections.get(reason, 0) + 1
        return RiskDecision(False, reason, detail)

    def check_new_order(self, symbol: str, side: str, price_ticks: int, qty_steps: int,
                        best_bid_ticks: int | None = None, best_ask_ticks: int | None = None,
                        now_ns: int | None = None) -> RiskDecision:
        """Check a new limit order against every limit; change no state but the counters.

        Parameters
        ----------
        symbol : str
        side : {"BUY", "SELL"}
        price_ticks : int
            Limit price, ticks (> 0).
        qty_steps : int
            Quantity, steps (> 0).
        best_bid_ticks, best_ask_ticks : int, optional
            Current best bid and ask, ticks; needed only when a price band is configured
            (a missing, one-sided or crossed book refuses with ``no_mid``).
        now_ns : int, optional
            Monotonic ns (default: the manager's clock); used by the order-rate limit.

        Returns
        -------
        RiskDecision
            :data:`ACCEPT` or a refusal with its reason code. Call :meth:`on_order_sent`
            once the accepted order has been written to the venue.
        """
        self.checks += 1
        if self.halted:
            self.rejections[HALTED] = self.rejections.get(HALTED, 0) + 1
            return self._halted_decision
        st = self._sym.get(symbol)
        if st is None:
            return self._refuse(UNKNOWN_SYMBOL, f"{symbol!r} is not a traded symbol")
        if side != BUY and side != SELL:
            return self._refuse(INVALID_ORDER, f"side must be BUY or SELL, got {side!r}")
        if type(price_ticks) is not int or type(qty_steps) is not int or price_ticks <= 0 or qty_steps <= 0:
            return self._refuse(INVALID_ORDER, f"price_ticks and qty_steps must be positive int, got "
                                               f"{price_ticks!r}, {qty_steps!r}")
        lim = self.limits
        if qty_steps > lim.max_order_steps:
            return self._refuse(MAX_ORDER_QTY, f"{qty_steps} steps > max_order_steps {lim.max_order_steps}")
        if price_ticks * qty_steps > st.max_notional_units:
            return self._refuse(MAX_NOTIONAL, f"notional of {qty_steps} steps at {price_ticks} ticks > "
                                              f"max_order_notional {lim.max_order_notional}")
        if lim.price_band_ticks or lim.price_band_bps:
            if (best_bid_ticks is None or best_ask_ticks is None or best_bid_ticks <= 0
                    or best_ask_ticks <= best_bid_ticks or best_ask_ticks >= _NO_ASK):
                return self._refuse(NO_MID, f"no two-sided book to place a price band around "
                                            f"(bid {best_bid_ticks}, ask {best_ask_ticks})")
            mid2 = best_bid_ticks + best_ask_ticks
            dev2 = 2 * price_ticks - mid2
            if dev2 < 0:
                dev2 = -dev2
            # |price - mid| <= band  <=>  |2 price - mid2| <= 2 band (ticks);
            # |price - mid| <= mid * bps / 10^4  <=>  |2 price - mid2| * 10^4 <= mid2 * bps.
            if lim.price_band_ticks and dev2 > 2 * lim.price_band_ticks:
                return self._refuse(PRICE_BAND, f"price {price_ticks} ticks is more than {lim.price_band_ticks} "
                                                f"ticks from the mid {mid2}/2")
            if lim.price_band_bps and dev2 * 10_000 > mid2 * lim.price_band_bps:
                return self._refuse(PRICE_BAND, f"price {price_ticks} ticks is more than {lim.price_band_bps} "
                                                f"bps from the mid {mid2}/2")
        if st.open_orders >= lim.max_open_orders:
            return self._refuse(MAX_OPEN_ORDERS, f"{st.open_orders} open orders, max_open_orders "
                                                 f"{lim.max_open_orders}")
        pos = st.position_steps
        if side == BUY:
            if pos + st.open_buy_steps + qty_steps > lim.max_position_steps:
                return self._refuse(MAX_POSITION, f"BUY {qty_steps} with position {pos} and {st.open_buy_steps} "
                                                  f"open could reach > max_position_steps {lim.max_position_steps}")
        elif pos - st.open_sell_steps - qty_steps < -lim.max_position_steps:
            return self._refuse(MAX_POSITION, f"SELL {qty_steps} with position {pos} and {st.open_sell_steps} "
                                              f"open could reach < -max_position_steps {lim.max_position_steps}")
        if self._ring_n == len(self._ring):
            now = self._clock() if now_ns is None else now_ns
            if now - self._ring[self._ring_i] < self._window_ns:
                return self._refuse(ORDER_RATE, f"{self._ring_n} orders within {lim.order_rate_window_ms} ms")
        self.accepted += 1
        return ACCEPT

    # -- accounting -------------------------------------------------------------------------------
    def on_order_sent(self, client_order_id: str, symbol: str, side: str, qty_steps: int,
                      now_ns: int | None = None) -> None:
        """Account an order written to the venue: open count, side exposure, order-rate ring."""
        st = self._sym[symbol]
        now = self._clock() if now_ns is None else now_ns
        ring = self._ring
        ring[self._ring_i] = now
        self._ring_i = (self._ring_i + 1) % len(ring)
        if self._ring_n < len(ring):
            self._ring_n += 1
        if client_order_id in self._orders:
            # Re-sent id: never count its exposure twice.
            self.on_order_closed(client_order_id)
        self._orders[client_order_id] = _Order(symbol, side, qty_steps)
        st.open_orders += 1
        if side == BUY:
            st.open_buy_steps += qty_steps
        else:
            st.open_sell_steps += qty_steps

    def on_order_not_sent(self, client_order_id: str) -> None:
        """Release an order that could not be written (its order-rate slot stays used)."""
        self.on_order_closed(client_order_id)

    def on_fill(self, client_order_id: str, symbol: str, side: str, qty_steps: int) -> None:
        """Account a fill: position, and the order's unfilled exposure if it is still open.

        A fill of an order already closed (a report arriving after the cancel
        confirmation) moves the position only.
        """
        st = self._sym[symbol]
        st.position_steps += qty_steps if side == BUY else -qty_steps
        o = self._orders.get(client_order_id)
        if o is None:
            return
        take = qty_steps if qty_steps < o.remaining_steps else o.remaining_steps
        o.remaining_steps -= take
        if o.side == BUY:
            st.open_buy_steps -= take
        else:
            st.open_sell_steps -= take

    def on_order_closed(self, client_order_id: str) -> None:
        """Release an order that is no longer open (FILLED, CANCELED, REJECTED, EXPIRED); idempotent."""
        o = self._orders.pop(client_order_id, None)
        if o is None:
            return
        st = self._sym[o.symbol]
        st.open_orders -= 1
        if o.side == BUY:
            st.open_buy_steps -= o.remaining_steps
        else:
            st.open_sell_steps -= o.remaining_steps

    def sync(self, symbol: str, position_steps: int, open_orders: Iterable[tuple[str, str, int]]) -> bool:
        """Re-base ``symbol`` on the order tracker's view (start-up, reconnect, periodic).

        Parameters
        ----------
        position_steps : int
        open_orders : iterable of (client_order_id, side, remaining_steps)

        Returns
        -------
        bool
            True if the manager's own accounting differed (logged as a warning).
        """
        st = self._sym[symbol]
        before = (st.position_steps, st.open_buy_steps, st.open_sell_steps, st.open_orders)
        for cid in [c for c, o in self._orders.items() if o.symbol == symbol]:
            del self._orders[cid]
        st.position_steps = position_steps
        st.open_buy_steps = st.open_sell_steps = st.open_orders = 0
        for cid, side, remaining in open_orders:
            self._orders[cid] = _Order(symbol, side, remaining)
            st.open_orders += 1
            if side == BUY:
                st.open_buy_steps += remaining
            else:
                st.open_sell_steps += remaining
        after = (st.position_steps, st.open_buy_steps, st.open_sell_steps, st.open_orders)
        if before != after:
            log.warning("risk accounting of %s re-based from (position, open buy, open sell, orders) %s to %s",
                        symbol, before, after)
            return True
        return False

    # -- circuit breaker and kill switch ---------------------------------------------------------
    def on_venue_reject(self, code: int, now_ns: int | None = None) -> bool:
        """Count a venue rejection (error code, section 6.1); return True if it tripped the breaker."""
        self.venue_rejections[code] = self.venue_rejections.get(code, 0) + 1
        if code in self._exempt:
            return False
        now = self._clock() if now_ns is None else now_ns
        n = self.limits.breaker_rejections
        dq = self._breaker.get(code)
        if dq is None:
            dq = self._breaker[code] = deque(maxlen=n)
        dq.append(now)
        if len(dq) == n and now - dq[0] <= self._breaker_window_ns:
            dq.clear()
            self.breaker_trips += 1
            self.halt(f"circuit breaker: venue error {code} {n} times within {self.limits.breaker_window_ms} ms")
            return True
        return False

    def halt(self, reason: str) -> bool:
        """Turn the kill switch on: every later check fails with ``halted: <reason>``.

        Idempotent: a second call keeps the first reason and returns False.
        """
        if self.halted:
            return False
        self.halted = True
        self.halt_reason = reason
        self._halted_decision = RiskDecision(False, HALTED, f"halted: {reason}")
        log.error("risk: trading halted: %s", reason)
        if self.on_halt is not None:
            try:
                self.on_halt(reason)
            except Exception:  # noqa: BLE001 - the halt stands whatever the callback does
                log.exception("risk: on_halt callback failed")
        return True

    def resume(self) -> bool:
        """Turn the kill switch off and forget the breaker history (operator action); True if it was on."""
        was = self.halted
        self.halted = False
        self.halt_reason = ""
        self._halted_decision = ACCEPT
        self._breaker.clear()
        if was:
            log.warning("risk: trading resumed")
        return was


__all__ = ["ACCEPT", "BUY", "HALTED", "INVALID_ORDER", "MAX_NOTIONAL", "MAX_OPEN_ORDERS", "MAX_ORDER_QTY",
           "MAX_POSITION", "NO_MID", "ORDER_RATE", "PRICE_BAND", "REASONS", "SELL", "UNKNOWN_SYMBOL",
           "RiskDecision", "RiskLimits", "RiskManager", "max_notional_units"]
