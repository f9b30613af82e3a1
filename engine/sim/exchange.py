"""The simulated Binance spot account: balances, orders, executions, user-data events.

:class:`Exchange` holds the account state and runs orders through matching;
request parsing and filters live in :mod:`engine.sim.orders`, response and
event bodies in :mod:`engine.sim.render`, rate counters in
:mod:`engine.sim.limits`. The names other modules import from here
(``VenueError``, ``get_param``, ``parse_int``, ``depth_weight``, ...) are
re-exported.

:class:`Exchange` is transport-independent: :mod:`engine.sim.wsapi` and
:mod:`engine.sim.rest` decode requests into ``{name: text}`` parameter maps,
call it, and encode what it returns (Binance response bodies as plain dicts)
or the :class:`VenueError` it raises (``code``, ``msg``, ``status``).

Protocol sources (venue-protocols.md): order parameters and response shapes
3.4/3.5, user-data events 3.6, client order ids section 5, error codes section
6, filters section 7. Matching rules: :mod:`engine.sim.matching`.

Simulator conventions (documented deviations):

* One account; every API key trades it.
* Commission is charged in the **quote** asset at the maker/taker rate of the
  :class:`~engine.sim.matching.FeeSchedule` (default 0.001 each).
* A resting BUY locks ``price * qty * (1 + max(maker, taker))`` quote, so fees
  can never drive a balance negative; a resting SELL locks ``qty`` base.
* Supported order types: LIMIT, LIMIT_MAKER, MARKET (``quantity`` or
  ``quoteOrderQty``); time in force GTC, IOC, FOK. Other Binance types are
  rejected with the venue's "not supported for this symbol" message.
* Rejected requests create no order and emit no event.
* A cancel's ``newClientOrderId`` (generated if absent) replaces the order's
  ``clientOrderId`` (freeing the old one, section 5); lookups by
  ``origClientOrderId`` also find an order by a client id it carried before
  (not confirmed on the venue, section 10 item 2).
* Amounts are rendered with 8 decimals (Binance's spot asset precision).
* Event and order times (``E``, ``T``, ``transactTime``) use the venue clock
  ``market.now_ms()``; ``serverTime`` and request timestamps use the server
  clock (wall clock by default), because clients stamp requests with theirs.
"""
from __future__ import annotations

import random
import string
from collections import Counter
from decimal import Decimal
from typing import Callable, Iterable, Mapping

from engine.instruments import Instrument
from engine.sim import render
from engine.sim.auth import Authenticator, KeyStore, wall_clock_ms
from engine.sim.limits import (ORDERS_LIMIT_10S, ORDERS_LIMIT_1D, WEIGHT_LIMIT_1M, RateCounters,
                               depth_weight)
from engine.sim.market_view import BUY, MarketView
from engine.sim.matching import FeeSchedule, Fill, SymbolMatcher
from engine.sim.orders import (CANCEL_REPLACE_MODES, CANCEL_RESTRICTIONS, CANCELED, CLIENT_ORDER_ID_RE, EXPIRED,
                               FILLED, LIMIT, LIMIT_MAKER, MARKET, MAX_NOTIONAL, MAX_NUM_ORDERS, MAX_PRICE, MAX_QTY,
                               NEW, OPEN_STATUSES, ORDER_TYPES, PARTIALLY_FILLED, REJECTED, RESP_TYPES,
                               TIME_IN_FORCE, TRADE, UNSUPPORTED_TYPES, NewOrder, Order, Params, VenueError,
                               check_filters, err_mandatory, err_new_order_rejected, err_no_such_order,
                               err_unknown_order_cancel, get_param, parse_cancel_replace_mode,
                               parse_cancel_restrictions, parse_client_order_id, parse_decimal, parse_int,
                               split_symbol, validate_new_order)
from engine.sim.render import symbol_info

EventListener = Callable[[dict], None]

_ZERO = Decimal(0)


class Exchange:
    """The simulated spot venue's account and order state.

    Parameters
    ----------
    market : MarketView
        The market our orders match against (never changed by them).
    balances : mapping, optional
        Initial free balances per asset (default 1,000,000 USDT, 100 BTC, 100 ETH).
    fees : FeeSchedule, optional
        Maker/taker rates (default 0.001 / 0.001, charged in the quote asset).
    keys : KeyStore, optional
        API keys (default :meth:`KeyStore.from_env`).
    clock_ms : callable, optional
        Server clock in ms for ``serverTime``, request timestamps and rate-limit
        windows (default: wall clock).
    first_order_id : int
        First ``orderId`` handed out.
    seed : int
        Seed of generated client order ids (deterministic runs).
    enforce_rate_limits : bool
        Reject with -1003 / -1015 (429) when the limits of 6.2 are exceeded.

    Attributes
    ----------
    received_client_order_ids : collections.Counter
        Every ``newClientOrderId`` received on a new order (place or
        cancelReplace), rejected or not, with its count.
    rejects_by_code : collections.Counter
        Error responses sent by the front ends, by error code.
    """

    def __init__(
        self,
        market: MarketView,
        *,
        balances: Mapping[str, Decimal | str | int] | None = None,
        fees: FeeSchedule | None = None,
        keys: KeyStore | None = None,
        clock_ms: Callable[[], int] | None = None,
        first_order_id: int = 1,
        seed: int = 0,
        enforce_rate_limits: bool = False,
    ) -> None:
        self.market = market
        self.fees = fees or FeeSchedule()
        self.server_time_ms: Callable[[], int] = clock_ms or wall_clock_ms
        self.auth = Authenticator(keys if keys is not None else KeyStore.from_env(), self.server_time_ms)
        self.rate = RateCounters(self.server_time_ms, enforce_rate_limits)
        init = balances if balances is not None else {"USDT": 1_000_000, "BTC": 100, "ETH": 100}
        self._bal: dict[str, list[Decimal]] = {a: [Decimal(v), _ZERO] for a, v in init.items()}
        self._matchers: dict[str, SymbolMatcher] = {}
        self._orders: dict[int, Order] = {}
        self._open_by_cid: dict[tuple[str, str], int] = {}
        self._any_by_cid: dict[tuple[str, str], int] = {}
        self._next_order_id = first_order_id
        self._next_trade_id: dict[str, int] = {}
        self._next_exec_id = 1
        self._rng = random.Random(seed)
        self._listeners: list[EventListener] = []
        self._account_update_ms = market.now_ms()
        self.received_client_order_ids: Counter[str] = Counter()
        self.rejects_by_code: Counter[int] = Counter()
        market.add_trade_listener(self._on_trade)
        market.add_book_listener(self._on_book)

    def __repr__(self) -> str:
        return f"Exchange({len(self._orders)} orders, {len(self._open_by_cid)} open)"

    # -- listeners and counters --------------------------------------------------------------
    def add_listener(self, cb: EventListener) -> None:
        """Call ``cb(event)`` for every user-data event (``executionReport``, ``outboundAccountPosition``).

        ``event`` is the bare event object of venue-protocols.md 3.6; the WS API
        session wraps it as ``{"subscriptionId": n, "event": event}``.
        """
        self._listeners.append(cb)

    def remove_listener(self, cb: EventListener) -> None:
        """Stop calling ``cb``; unknown callbacks are ignored."""
        try:
            self._listeners.remove(cb)
        except ValueError:
            pass

    def record_error(self, code: int) -> None:
        """Count one error response with ``code`` (called by the front ends)."""
        self.rejects_by_code[code] += 1

    def duplicate_client_order_ids(self) -> list[str]:
        """Return every ``newClientOrderId`` received more than once."""
        return [c for c, n in self.received_client_order_ids.items() if n > 1]

    # -- account ------------------------------------------------------------------------------
    def balance(self, asset: str) -> tuple[Decimal, Decimal]:
        """Return ``(free, locked)`` of ``asset`` (zeros if never held)."""
        b = self._bal.get(asset)
        return (b[0], b[1]) if b else (_ZERO, _ZERO)

    def set_balance(self, asset: str, free: Decimal | str | int) -> None:
        """Set the free balance of ``asset`` (test helper; emits no event)."""
        self._slot(asset)[0] = Decimal(free)

    def account(self, params: Params | None = None) -> dict:
        """Return the ``account.status`` / ``GET /api/v3/account`` body (3.4)."""
        omit = (params or {}).get("omitZeroBalances") in ("true", "True")
        rows = [(a, self._bal[a][0], self._bal[a][1]) for a in sorted(self._bal)]
        return render.account(self.fees, rows, self._account_update_ms, omit)

    # -- market information --------------------------------------------------------------------
    def instrument(self, symbol: str | None) -> Instrument:
        """Return the instrument; raise -1102 if missing, -1121 if unknown."""
        if not symbol:
            raise err_mandatory("symbol")
        try:
            return self.market.instrument(symbol)
        except KeyError:
            raise VenueError(-1121, "Invalid symbol.") from None

    def depth(self, params: Params) -> dict:
        """Return the depth body for ``symbol`` / ``limit`` (default 100, capped at 5000; 1.3)."""
        inst = self.instrument(get_param(params, "symbol"))
        limit = parse_int(params, "limit")
        limit = 100 if limit is None else min(max(limit, 1), 5000)
        try:
            return self.market.depth(inst.symbol, limit)
        except LookupError:
            # The venue book is resynchronising; the venue's answer is not documented [derived].
            raise VenueError(-1008, "Server is currently overloaded with other requests. "
                                    "Please try again in a few minutes.", 503) from None

    def exchange_info(self, symbols: Iterable[str] | None = None) -> dict:
        """Return a Binance spot exchangeInfo body built from the instruments (3.4, section 7).

        Raises -1121 if a requested symbol is unknown.
        """
        if symbols is None:
            insts = [self.market.instrument(s) for s in self.market.symbols()]
        else:
            insts = [self.instrument(s) for s in symbols]
        return render.exchange_info(insts, self.server_time_ms())

    # -- orders: place ----------------------------------------------------------------------------
    def place_order(self, params: Params) -> dict:
        """Place a new order (``order.place`` / ``POST /api/v3/order``) and return its response body.

        Raises
        ------
        VenueError
            -1xxx parameter errors, -1013 filter failures, -1121, -2010 rejections, -1015.
        """
        self.rate.check_order()
        req = self.parse_new_order(params)
        events: list[dict] = []
        try:
            order, fills = self._execute_new(req, events)
        finally:
            self._dispatch(events)
        return self.new_order_response(order, fills, req.resp_type)

    def parse_new_order(self, params: Params, prefix: str = "") -> NewOrder:
        """Validate new-order parameters and filters (section 7); raise :class:`VenueError`.

        Counts a received ``newClientOrderId`` in :attr:`received_client_order_ids`.
        """
        cid = params.get("newClientOrderId")
        if cid:
            self.received_client_order_ids[cid] += 1
        inst = self.instrument(get_param(params, "symbol"))
        req = validate_new_order(params, inst)
        check_filters(inst, req, self.market, self._open_count(inst.symbol))
        return req

    def _execute_new(self, req: NewOrder, events: list[dict]) -> tuple[Order, list[dict]]:
        # The matching-engine stage: duplicate id, post-only check, balance, then execution.
        inst = self.market.instrument(req.symbol)
        base, quote = split_symbol(req.symbol)
        if req.client_order_id is not None and (req.symbol, req.client_order_id) in self._open_by_cid:
            raise err_new_order_rejected("Duplicate order sent.")
        m = self._matcher(req.symbol)
        if req.type == LIMIT_MAKER and m.would_take(req.side, req.price):
            raise err_new_order_rejected("Order would immediately match and take.")
        if req.type == MARKET:
            fills = m.sweep(req.side, qty=req.qty, quote_qty=req.quote_qty, step=inst.step_size)
        elif req.type == LIMIT and m.would_take(req.side, req.price):
            fills = m.sweep(req.side, qty=req.qty, limit_price=req.price)
        else:
            fills = []
        filled = sum((f.qty for f in fills), _ZERO)
        if req.time_in_force == "FOK" and filled < (req.qty or _ZERO):
            fills, filled = [], _ZERO
        lock = _ZERO
        if req.side == BUY:
            if req.type == MARKET:
                need = sum((f.price * f.qty + self.fees.commission(f.price * f.qty, False) for f in fills), _ZERO)
            else:
                lock = need = req.price * (req.qty or _ZERO) * (1 + self.fees.max_rate)
            if self.balance(quote)[0] < need:
                raise err_new_order_rejected("Account has insufficient balance for requested action.")
        else:
            need = filled if req.type == MARKET and req.qty is None else (req.qty or _ZERO)
            if req.type != MARKET:
                lock = need
            if self.balance(base)[0] < need:
                raise err_new_order_rejected("Account has insufficient balance for requested action.")

        now = self.market.now_ms()
        cid = req.client_order_id or self._generate_client_order_id(req.symbol)
        order = Order(
            symbol=req.symbol, order_id=self._next_order_id, client_order_id=cid, side=req.side,
            type=req.type, time_in_force=req.time_in_force, price=req.price,
            orig_qty=req.qty if req.qty is not None else filled,
            orig_quote_qty=req.quote_qty or _ZERO, time_ms=now, update_time_ms=now,
            working_time_ms=now, strategy_id=req.strategy_id, strategy_type=req.strategy_type,
        )
        self._next_order_id += 1
        self._orders[order.order_id] = order
        self._open_by_cid[(order.symbol, cid)] = order.order_id
        self._any_by_cid[(order.symbol, cid)] = order.order_id
        self.rate.add_order()
        if lock:
            slot = self._slot(quote if req.side == BUY else base)
            slot[0] -= lock
            slot[1] += lock
            order.locked = lock
        order.on_book = req.type != MARKET and req.time_in_force == "GTC"
        events.append(self._report(order, NEW, now))

        full_fills = [self._apply_fill(order, f, False, now, now, events) for f in fills]
        m.commit_taken(req.side, fills)
        if order.is_open:
            if req.type == MARKET or req.time_in_force in ("IOC", "FOK"):
                # Expiry reasons of SPOT-UDS "Order Expiry Reason".
                if req.type == MARKET:
                    reason = "INSUFFICIENT_LIQUIDITY"
                elif req.time_in_force == "IOC":
                    reason = "UNFILLED_IOC_QUANTITY_EXPIRED"
                else:
                    reason = "UNFILLED_FOK_ORDER_EXPIRED"
                self._finish(order, EXPIRED, now, reason)
                events.append(self._report(order, EXPIRED, now))
            else:
                m.rest(order.order_id, order.side, order.price, order.remaining)
        events.append(self._position_event((base, quote), now))
        return order, full_fills

    # -- orders: cancel ------------------------------------------------------------------------
    def cancel_order(self, params: Params) -> dict:
        """Cancel one order (``order.cancel`` / ``DELETE /api/v3/order``); return the cancel report.

        Raises
        ------
        VenueError
            -1102 (no id), -1145, -2011 "Unknown order sent." (unknown, not open,
            or ``orderId`` and ``origClientOrderId`` disagree), -2011 cancel restrictions.
        """
        inst = self.instrument(get_param(params, "symbol"))
        restrictions = parse_cancel_restrictions(params)
        new_cid = parse_client_order_id(params, "newClientOrderId")
        order = self._find(inst.symbol, params, "orderId", "origClientOrderId", err_unknown_order_cancel)
        events: list[dict] = []
        try:
            return self._cancel_checked(order, new_cid, restrictions, events)
        finally:
            self._dispatch(events)

    def cancel_open_orders(self, params: Params) -> list[dict]:
        """Cancel every open order of ``symbol`` (``openOrders.cancelAll`` / ``DELETE /api/v3/openOrders``).

        Raises -2011 "Unknown order sent." when there is no open order, as the venue does.
        """
        inst = self.instrument(get_param(params, "symbol"))
        open_ids = sorted(oid for (s, _c), oid in self._open_by_cid.items() if s == inst.symbol)
        if not open_ids:
            raise err_unknown_order_cancel()
        events: list[dict] = []
        now = self.market.now_ms()
        out = [self._cancel(self._orders[oid], None, events, now) for oid in open_ids]
        events.append(self._position_event(split_symbol(inst.symbol), now))
        self._dispatch(events)
        return out

    def cancel_replace(self, params: Params) -> dict:
        """Cancel an order and place a new one (``order.cancelReplace``, 3.5).

        Returns the 200 body ``{cancelResult, newOrderResult, cancelResponse, newOrderResponse}``.

        Raises
        ------
        VenueError
            Plain parameter / filter errors before anything happens; -2021 (status 409) when
            exactly one leg succeeded; -2022 (status 400) when none did. ``data`` holds the legs.
        """
        inst = self.instrument(get_param(params, "symbol"))
        mode = parse_cancel_replace_mode(params)
        if get_param(params, "cancelOrderId") is None and get_param(params, "cancelOrigClientOrderId") is None:
            raise VenueError(-1102, "Param 'cancelOrigClientOrderId' or 'cancelOrderId' must be sent, "
                                    "but both were empty/null!")
        restrictions = parse_cancel_restrictions(params)
        cancel_cid = parse_client_order_id(params, "cancelNewClientOrderId")
        # Filters and order limits are checked before either step (3.5).
        self.rate.check_order()
        req = self.parse_new_order(params)
        events: list[dict] = []
        try:
            cancel_resp: dict
            cancel_ok = True
            try:
                order = self._find(inst.symbol, params, "cancelOrderId", "cancelOrigClientOrderId",
                                   err_unknown_order_cancel)
                cancel_resp = self._cancel_checked(order, cancel_cid, restrictions, events)
            except VenueError as e:
                cancel_ok, cancel_resp = False, e.body()
            new_resp: dict | None
            if not cancel_ok and mode == "STOP_ON_FAILURE":
                # A new order that was not attempted still counts as placed (3.5).
                self.rate.add_order()
                raise VenueError(-2022, "Order cancel-replace failed.", 400, {
                    "cancelResult": "FAILURE", "newOrderResult": "NOT_ATTEMPTED",
                    "cancelResponse": cancel_resp, "newOrderResponse": None})
            new_ok = True
            try:
                new_order, fills = self._execute_new(req, events)
                new_resp = self.new_order_response(new_order, fills, req.resp_type)
            except VenueError as e:
                new_ok, new_resp = False, e.body()
        finally:
            self._dispatch(events)
        data = {
            "cancelResult": "SUCCESS" if cancel_ok else "FAILURE",
            "newOrderResult": "SUCCESS" if new_ok else "FAILURE",
            "cancelResponse": cancel_resp,
            "newOrderResponse": new_resp,
        }
        if cancel_ok and new_ok:
            return data
        if cancel_ok or new_ok:
            raise VenueError(-2021, "Order cancel-replace partially failed.", 409, data)
        raise VenueError(-2022, "Order cancel-replace failed.", 400, data)

    # -- orders: queries -------------------------------------------------------------------------
    def query_order(self, params: Params) -> dict:
        """Return ``order.status`` / ``GET /api/v3/order``; raise -2013 "Order does not exist."."""
        inst = self.instrument(get_param(params, "symbol"))
        order = self._find(inst.symbol, params, "orderId", "origClientOrderId", err_no_such_order)
        return self.status_dict(order)

    def open_orders(self, params: Params | None = None) -> list[dict]:
        """Return ``openOrders.status`` / ``GET /api/v3/openOrders`` (optional ``symbol``)."""
        sym = get_param(params or {}, "symbol")
        if sym is not None:
            sym = self.instrument(sym).symbol
        ids = sorted(oid for (s, _c), oid in self._open_by_cid.items() if sym is None or s == sym)
        return [self.status_dict(self._orders[i]) for i in ids]

    def order(self, order_id: int) -> Order:
        """Return the order with ``order_id`` (``KeyError`` if unknown); for tests."""
        return self._orders[order_id]

    def open_order_ids(self, symbol: str | None = None) -> list[int]:
        """Return the ids of open orders, optionally of one symbol."""
        return sorted(oid for (s, _c), oid in self._open_by_cid.items() if symbol is None or s == symbol)

    def queue_ahead(self, order_id: int) -> Decimal | None:
        """Return the simulated market quantity ahead of a resting order (``None`` if not resting)."""
        o = self._orders.get(order_id)
        if o is None:
            return None
        r = self._matcher(o.symbol).get(order_id)
        return None if r is None else r.queue_ahead

    # -- rendering ---------------------------------------------------------------------------------
    new_order_response = staticmethod(render.new_order_response)
    status_dict = staticmethod(render.status_dict)

    def _report(self, o: Order, exec_type: str, now: int, *, fill: Fill | None = None,
                commission: Decimal = _ZERO, trade_id: int = -1, is_maker: bool = False,
                trade_time: int | None = None, orig_cid: str = "") -> dict:
        # executionReport with the next execution id (I).
        ev = render.execution_report(o, exec_type, now, self._next_exec_id, fill=fill, commission=commission,
                                     trade_id=trade_id, is_maker=is_maker, trade_time=trade_time,
                                     orig_cid=orig_cid)
        self._next_exec_id += 1
        return ev

    def _position_event(self, assets: Iterable[str], now: int) -> dict:
        # outboundAccountPosition after a balance change (SPOT-UDS).
        self._account_update_ms = now
        return render.account_position(((a, *self.balance(a)) for a in dict.fromkeys(assets)), now)

    # -- internals ---------------------------------------------------------------------------------
    def _slot(self, asset: str) -> list[Decimal]:
        s = self._bal.get(asset)
        if s is None:
            s = self._bal[asset] = [_ZERO, _ZERO]
        return s

    def _matcher(self, symbol: str) -> SymbolMatcher:
        m = self._matchers.get(symbol)
        if m is None:
            m = self._matchers[symbol] = SymbolMatcher(symbol, self.market)
        return m

    def _open_count(self, symbol: str) -> int:
        return sum(1 for (s, _c) in self._open_by_cid if s == symbol)

    def _generate_client_order_id(self, symbol: str) -> str:
        # Binance generates 22 alphanumeric characters when newClientOrderId is absent.
        alphabet = string.ascii_letters + string.digits
        while True:
            cid = "".join(self._rng.choice(alphabet) for _ in range(22))
            if (symbol, cid) not in self._any_by_cid:
                return cid

    def _find(self, symbol: str, params: Params, id_name: str, cid_name: str,
              missing: Callable[[], VenueError]) -> Order:
        oid = parse_int(params, id_name)
        cid = get_param(params, cid_name)
        if oid is None and cid is None:
            raise VenueError(-1102, f"Param '{cid_name}' or '{id_name}' must be sent, but both were empty/null!")
        if oid is not None:
            order = self._orders.get(oid)
            # With both ids, the orderId is looked up and the client id must match (3.4).
            if order is None or order.symbol != symbol or (cid is not None and cid != order.client_order_id
                                                           and self._any_by_cid.get((symbol, cid)) != oid):
                raise missing()
            return order
        assert cid is not None
        found = self._open_by_cid.get((symbol, cid))
        if found is None:
            found = self._any_by_cid.get((symbol, cid))
        if found is None:
            raise missing()
        return self._orders[found]

    def _cancel_checked(self, order: Order, new_cid: str | None, restrictions: str | None,
                        events: list[dict]) -> dict:
        if not order.is_open:
            raise err_unknown_order_cancel()
        if (restrictions == "ONLY_NEW" and order.status != NEW) or (
                restrictions == "ONLY_PARTIALLY_FILLED" and order.status != PARTIALLY_FILLED):
            raise VenueError(-2011, "Order was not canceled due to cancel restrictions.")
        now = self.market.now_ms()
        resp = self._cancel(order, new_cid, events, now)
        events.append(self._position_event(split_symbol(order.symbol), now))
        return resp

    def _cancel(self, order: Order, new_cid: str | None, events: list[dict], now: int) -> dict:
        self._matcher(order.symbol).remove(order.order_id)
        orig_cid = order.client_order_id
        self._finish(order, CANCELED, now, None)
        order.client_order_id = new_cid or self._generate_client_order_id(order.symbol)
        self._any_by_cid[(order.symbol, order.client_order_id)] = order.order_id
        events.append(self._report(order, CANCELED, now, orig_cid=orig_cid))
        return render.cancel_response(order, orig_cid, now)

    def _finish(self, order: Order, status: str, now: int, reason: str | None) -> None:
        # Leave the open state: release the remaining lock and the open client id.
        order.status = status
        order.update_time_ms = now
        order.on_book = False
        order.expiry_reason = reason
        if order.locked:
            base, quote = split_symbol(order.symbol)
            slot = self._slot(quote if order.side == BUY else base)
            slot[1] -= order.locked
            slot[0] += order.locked
            order.locked = _ZERO
        self._open_by_cid.pop((order.symbol, order.client_order_id), None)

    def _apply_fill(self, order: Order, fill: Fill, is_maker: bool, now: int, trade_time: int,
                    events: list[dict]) -> dict:
        base, quote = split_symbol(order.symbol)
        notional = fill.price * fill.qty
        fee = self.fees.commission(notional, is_maker)
        b, q = self._slot(base), self._slot(quote)
        if order.side == BUY:
            if order.locked:
                unlock = min(order.locked, order.price * fill.qty * (1 + self.fees.max_rate))
                order.locked -= unlock
                q[1] -= unlock
                q[0] += unlock
            q[0] -= notional + fee
            b[0] += fill.qty
        else:
            if order.locked:
                unlock = min(order.locked, fill.qty)
                order.locked -= unlock
                b[1] -= unlock
                b[0] += unlock
            b[0] -= fill.qty
            q[0] += notional - fee
        order.executed_qty += fill.qty
        order.cum_quote += notional
        order.update_time_ms = now
        trade_id = self._next_trade_id.get(order.symbol, 1)
        self._next_trade_id[order.symbol] = trade_id + 1
        if order.executed_qty >= order.orig_qty:
            self._finish(order, FILLED, now, None)
        else:
            order.status = PARTIALLY_FILLED
        events.append(self._report(order, TRADE, now, fill=fill, commission=fee, trade_id=trade_id,
                                   is_maker=is_maker, trade_time=trade_time))
        return render.fill_entry(fill, fee, quote, trade_id)

    def _on_trade(self, symbol: str, price: Decimal, qty: Decimal, buyer_is_maker: bool,
                  trade_time_ms: int) -> None:
        m = self._matchers.get(symbol)
        if m is None:
            return
        fills = m.on_trade(price, qty, buyer_is_maker)
        if not fills:
            return
        now = self.market.now_ms()
        events: list[dict] = []
        for f in fills:
            self._apply_fill(self._orders[f.order_id], f, True, now, trade_time_ms, events)
        events.append(self._position_event(split_symbol(symbol), now))
        self._dispatch(events)

    def _on_book(self, symbol: str) -> None:
        m = self._matchers.get(symbol)
        if m is not None:
            m.on_book()

    def _dispatch(self, events: list[dict]) -> None:
        for ev in events:
            for cb in list(self._listeners):
                cb(ev)


__all__ = [
    # this module
    "EventListener", "Exchange",
    # engine.sim.orders
    "CANCELED", "CANCEL_REPLACE_MODES", "CANCEL_RESTRICTIONS", "CLIENT_ORDER_ID_RE", "EXPIRED", "FILLED", "LIMIT",
    "LIMIT_MAKER", "MARKET", "MAX_NOTIONAL", "MAX_NUM_ORDERS", "MAX_PRICE", "MAX_QTY", "NEW", "NewOrder",
    "OPEN_STATUSES", "ORDER_TYPES", "Order", "PARTIALLY_FILLED", "Params", "REJECTED", "RESP_TYPES",
    "TIME_IN_FORCE", "TRADE", "UNSUPPORTED_TYPES", "VenueError", "get_param", "parse_client_order_id",
    "parse_decimal", "parse_int", "split_symbol",
    # engine.sim.limits
    "ORDERS_LIMIT_10S", "ORDERS_LIMIT_1D", "RateCounters", "WEIGHT_LIMIT_1M", "depth_weight",
    # engine.sim.render
    "symbol_info",
]
