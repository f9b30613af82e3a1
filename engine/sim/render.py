"""Binance spot bodies of the simulated venue: order responses, user-data events, account, exchangeInfo.

Pure functions from the simulator's records to the plain dicts the front ends
encode. Shapes: responses 3.4/3.5, ``executionReport`` and
``outboundAccountPosition`` 3.6 (SPOT-UDS), exchangeInfo 3.4 and section 7
(venue-protocols.md). Amounts have 8 decimals (:func:`~engine.sim.market_view.fmt8`).
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Iterable

from engine.instruments import Instrument
from engine.sim.limits import exchange_rate_limits
from engine.sim.market_view import fmt8
from engine.sim.matching import FeeSchedule, Fill
from engine.sim.orders import (EXPIRED, LIMIT, LIMIT_MAKER, MARKET, MAX_DECIMALS, MAX_NOTIONAL, MAX_NUM_ORDERS,
                               MAX_PRICE, MAX_QTY, Order, split_symbol)

_ZERO = Decimal(0)


# -- order responses ---------------------------------------------------------------------------------
def order_fields(o: Order) -> dict:
    """The price / quantity / status fields every order body carries."""
    return {
        "price": fmt8(o.price), "origQty": fmt8(o.orig_qty), "executedQty": fmt8(o.executed_qty),
        "origQuoteOrderQty": fmt8(o.orig_quote_qty), "cummulativeQuoteQty": fmt8(o.cum_quote),
        "status": o.status, "timeInForce": o.time_in_force, "type": o.type, "side": o.side,
    }


def _conditional(o: Order, body: dict) -> None:
    # Fields present only when set (3.5).
    if o.strategy_id is not None:
        body["strategyId"] = o.strategy_id
    if o.strategy_type is not None:
        body["strategyType"] = o.strategy_type
    if o.expiry_reason is not None:
        body["expiryReason"] = o.expiry_reason


def new_order_response(o: Order, fills: list[dict], resp_type: str) -> dict:
    """Render the ACK / RESULT / FULL body of a new order (3.5); ``fills`` from :func:`fill_entry`."""
    body: dict[str, Any] = {"symbol": o.symbol, "orderId": o.order_id, "orderListId": -1,
                            "clientOrderId": o.client_order_id, "transactTime": o.time_ms}
    if resp_type == "ACK":
        return body
    body.update(order_fields(o))
    body["workingTime"] = o.working_time_ms
    if resp_type == "FULL":
        body["fills"] = fills
    body["selfTradePreventionMode"] = "NONE"
    _conditional(o, body)
    return body


def status_dict(o: Order) -> dict:
    """Render the ``order.status`` object (3.5)."""
    body: dict[str, Any] = {"symbol": o.symbol, "orderId": o.order_id, "orderListId": -1,
                            "clientOrderId": o.client_order_id}
    body.update(order_fields(o))
    body.update({
        "stopPrice": fmt8(_ZERO), "icebergQty": fmt8(_ZERO), "time": o.time_ms,
        "updateTime": o.update_time_ms, "isWorking": True, "workingTime": o.working_time_ms,
        "origQuoteOrderQty": fmt8(o.orig_quote_qty), "selfTradePreventionMode": "NONE",
    })
    _conditional(o, body)
    return body


def cancel_response(o: Order, orig_cid: str, now: int) -> dict:
    """Render the body of a canceled order (``order.cancel``, one entry of ``openOrders.cancelAll``)."""
    body: dict[str, Any] = {"symbol": o.symbol, "origClientOrderId": orig_cid, "orderId": o.order_id,
                            "orderListId": -1, "clientOrderId": o.client_order_id, "transactTime": now}
    body.update(order_fields(o))
    body["selfTradePreventionMode"] = "NONE"
    _conditional(o, body)
    return body


def fill_entry(fill: Fill, commission: Decimal, commission_asset: str, trade_id: int) -> dict:
    """Render one ``fills[]`` entry of a FULL new-order response."""
    return {"price": fmt8(fill.price), "qty": fmt8(fill.qty), "commission": fmt8(commission),
            "commissionAsset": commission_asset, "tradeId": trade_id}


# -- user-data events ------------------------------------------------------------------------------------
def execution_report(o: Order, exec_type: str, now: int, exec_id: int, *, fill: Fill | None = None,
                     commission: Decimal = _ZERO, trade_id: int = -1, is_maker: bool = False,
                     trade_time: int | None = None, orig_cid: str = "") -> dict:
    """Render an ``executionReport`` of ``o`` after execution ``exec_type`` (field list of 3.6, SPOT-UDS).

    ``exec_id`` is the execution id ``I``; ``orig_cid`` the ``C`` of a cancel.
    """
    last_qty = fill.qty if fill else _ZERO
    last_price = fill.price if fill else _ZERO
    ev: dict[str, Any] = {
        "e": "executionReport", "E": now, "s": o.symbol, "c": o.client_order_id, "S": o.side,
        "o": o.type, "f": o.time_in_force, "q": fmt8(o.orig_qty), "p": fmt8(o.price),
        "P": fmt8(_ZERO), "F": fmt8(_ZERO), "g": -1, "C": orig_cid, "x": exec_type, "X": o.status,
        "r": "NONE", "i": o.order_id, "l": fmt8(last_qty), "z": fmt8(o.executed_qty),
        "L": fmt8(last_price), "n": fmt8(commission) if fill else "0",
        "N": split_symbol(o.symbol)[1] if fill else None,
        "T": trade_time if trade_time is not None else now, "t": trade_id,
        "I": exec_id, "w": o.on_book, "m": is_maker, "M": False, "O": o.time_ms,
        "Z": fmt8(o.cum_quote), "Y": fmt8(last_qty * last_price), "Q": fmt8(o.orig_quote_qty),
    }
    if o.on_book:
        ev["W"] = o.working_time_ms
    ev["V"] = "NONE"
    if o.strategy_id is not None:
        ev["j"] = o.strategy_id
    if o.strategy_type is not None:
        ev["J"] = o.strategy_type
    if exec_type == EXPIRED and o.expiry_reason:
        ev["eR"] = o.expiry_reason
    return ev


def account_position(balances: Iterable[tuple[str, Decimal, Decimal]], now: int) -> dict:
    """Render ``outboundAccountPosition`` from ``(asset, free, locked)`` rows (SPOT-UDS)."""
    return {"e": "outboundAccountPosition", "E": now, "u": now,
            "B": [{"a": a, "f": fmt8(free), "l": fmt8(locked)} for a, free, locked in balances]}


# -- account and market information ----------------------------------------------------------------------
def account(fees: FeeSchedule, balances: Iterable[tuple[str, Decimal, Decimal]], update_time_ms: int,
            omit_zero_balances: bool = False) -> dict:
    """Render the ``account.status`` / ``GET /api/v3/account`` body (3.4) from ``(asset, free, locked)`` rows."""
    bals = [{"asset": a, "free": fmt8(free), "locked": fmt8(locked)}
            for a, free, locked in balances if not (omit_zero_balances and free == 0 and locked == 0)]
    # Binance reports commissions in basis points as integers and as rates.
    return {
        "makerCommission": int(fees.maker * 10000),
        "takerCommission": int(fees.taker * 10000),
        "buyerCommission": 0,
        "sellerCommission": 0,
        "canTrade": True,
        "canWithdraw": True,
        "canDeposit": True,
        "commissionRates": {
            "maker": fmt8(fees.maker), "taker": fmt8(fees.taker),
            "buyer": fmt8(_ZERO), "seller": fmt8(_ZERO),
        },
        "brokered": False,
        "requireSelfTradePrevention": False,
        "preventSor": False,
        "updateTime": update_time_ms,
        "accountType": "SPOT",
        "balances": bals,
        "permissions": ["SPOT"],
        "uid": 1,
    }


def symbol_info(inst: Instrument) -> dict:
    """Render one ``symbols[]`` entry of spot exchangeInfo (3.4, section 7)."""
    base, quote = split_symbol(inst.symbol)
    return {
        "symbol": inst.symbol,
        "status": "TRADING",
        "baseAsset": base,
        "baseAssetPrecision": MAX_DECIMALS,
        "quoteAsset": quote,
        "quotePrecision": MAX_DECIMALS,
        "quoteAssetPrecision": MAX_DECIMALS,
        "baseCommissionPrecision": MAX_DECIMALS,
        "quoteCommissionPrecision": MAX_DECIMALS,
        "orderTypes": [LIMIT, LIMIT_MAKER, MARKET],
        "icebergAllowed": False,
        "ocoAllowed": False,
        "otoAllowed": False,
        "opoAllowed": False,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": False,
        "cancelReplaceAllowed": True,
        "amendAllowed": False,
        "pegInstructionsAllowed": False,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": fmt8(inst.tick_size), "maxPrice": fmt8(MAX_PRICE),
             "tickSize": fmt8(inst.tick_size)},
            {"filterType": "LOT_SIZE", "minQty": fmt8(inst.step_size), "maxQty": fmt8(MAX_QTY),
             "stepSize": fmt8(inst.step_size)},
            {"filterType": "NOTIONAL", "minNotional": fmt8(inst.min_notional), "applyMinToMarket": True,
             "maxNotional": fmt8(MAX_NOTIONAL), "applyMaxToMarket": False, "avgPriceMins": 5},
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": MAX_NUM_ORDERS},
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "NONE",
        "allowedSelfTradePreventionModes": ["NONE"],
    }


def exchange_info(insts: Iterable[Instrument], server_time_ms: int) -> dict:
    """Render a spot exchangeInfo body for ``insts`` (3.4, section 7)."""
    return {
        "timezone": "UTC",
        "serverTime": server_time_ms,
        "rateLimits": exchange_rate_limits(),
        "exchangeFilters": [],
        "symbols": [symbol_info(i) for i in insts],
    }


__all__ = ["account", "account_position", "cancel_response", "exchange_info", "execution_report", "fill_entry",
           "new_order_response", "order_fields", "status_dict", "symbol_info"]
