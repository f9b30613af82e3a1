"""Orders of the simulated spot venue: request parsing, filters, order records, rejections.

Everything here is stateless; :class:`engine.sim.exchange.Exchange` holds the account
and calls these. Protocol sources (venue-protocols.md): order parameters 3.4/3.5,
client order ids section 5, error codes section 6, filters section 7.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Mapping

from engine.instruments import Instrument
from engine.sim.market_view import BUY, SELL, MarketView

Params = Mapping[str, str]

_ZERO = Decimal(0)

# Order status (X) and execution type (x) values (venue-protocols.md 3.6, SPOT-ENUM).
NEW = "NEW"
PARTIALLY_FILLED = "PARTIALLY_FILLED"
FILLED = "FILLED"
CANCELED = "CANCELED"
REJECTED = "REJECTED"
EXPIRED = "EXPIRED"
TRADE = "TRADE"
OPEN_STATUSES = frozenset((NEW, PARTIALLY_FILLED))

LIMIT = "LIMIT"
LIMIT_MAKER = "LIMIT_MAKER"
MARKET = "MARKET"
ORDER_TYPES = (LIMIT, LIMIT_MAKER, MARKET)
# Order types Binance knows but the simulator's symbols do not offer (SPOT-ERR "other errors").
UNSUPPORTED_TYPES = {
    "STOP_LOSS": "Stop loss orders are not supported for this symbol.",
    "STOP_LOSS_LIMIT": "Stop loss limit orders are not supported for this symbol.",
    "TAKE_PROFIT": "Take profit orders are not supported for this symbol.",
    "TAKE_PROFIT_LIMIT": "Take profit limit orders are not supported for this symbol.",
}
TIME_IN_FORCE = ("GTC", "IOC", "FOK")
RESP_TYPES = ("ACK", "RESULT", "FULL")
CANCEL_RESTRICTIONS = ("ONLY_NEW", "ONLY_PARTIALLY_FILLED")
CANCEL_REPLACE_MODES = ("STOP_ON_FAILURE", "ALLOW_FAILURE")

# Client order id format, spot (venue-protocols.md section 5).
CLIENT_ORDER_ID_RE = re.compile(r"[a-zA-Z0-9-_]{1,36}")
_CLIENT_ORDER_ID_RANGE = "^[a-zA-Z0-9-_]{1,36}$"
_DECIMAL_RE = re.compile(r"[0-9]{1,20}(\.[0-9]{1,20})?")
_DECIMAL_RANGE = "^([0-9]{1,20})(\\.[0-9]{1,20})?$"
_INT_RE = re.compile(r"[0-9]{1,20}")
# Spot assets have 8 decimals (baseAssetPrecision / quoteAssetPrecision); more is -1111.
MAX_DECIMALS = 8

# Filter bounds not carried by Instrument; values of Binance's BTCUSDT spot filters.
MAX_PRICE = Decimal("1000000")
MAX_QTY = Decimal("9000")
MAX_NOTIONAL = Decimal("9000000")
MAX_NUM_ORDERS = 200

# Quote assets recognised when splitting a symbol into base and quote, longest first.
_QUOTES = ("FDUSD", "USDT", "USDC", "TUSD", "BUSD", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL", "DAI")


class VenueError(Exception):
    """A request the venue rejects.

    Attributes
    ----------
    code : int
        Binance error code (venue-protocols.md 6.1).
    msg : str
        Binance error message.
    status : int
        HTTP status (REST) / ``status`` (WS API): 400 by default, 409 for a
        partly failed cancelReplace, 429 for rate limits.
    data : dict or None
        ``error.data`` (cancelReplace legs, ``retryAfter``).
    """

    def __init__(self, code: int, msg: str, status: int = 400, data: dict | None = None) -> None:
        super().__init__(code, msg)
        self.code = code
        self.msg = msg
        self.status = status
        self.data = data

    def body(self) -> dict:
        """Return the ``{code, msg}`` body (plus ``data`` when present)."""
        b: dict[str, Any] = {"code": self.code, "msg": self.msg}
        if self.data is not None:
            b["data"] = self.data
        return b


# -- rejections (SPOT-ERR) ------------------------------------------------------------------------
def err_mandatory(name: str) -> VenueError:
    """-1102: a mandatory parameter is missing."""
    return VenueError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def err_not_required(name: str) -> VenueError:
    """-1106: a parameter was sent that this order type does not take."""
    return VenueError(-1106, f"Parameter '{name}' sent when not required.")


def err_illegal(name: str, legal: str) -> VenueError:
    """-1100: a parameter value outside its legal range."""
    return VenueError(-1100, f"Illegal characters found in parameter '{name}'; legal range is '{legal}'.")


def err_filter_failure(name: str) -> VenueError:
    """-1013: a symbol filter (section 7) failed."""
    return VenueError(-1013, f"Filter failure: {name}")


def err_new_order_rejected(msg: str) -> VenueError:
    """-2010: the matching engine rejected a new order."""
    return VenueError(-2010, msg)


def err_unknown_order_cancel() -> VenueError:
    """-2011 "Unknown order sent." (cancel of an unknown or closed order)."""
    return VenueError(-2011, "Unknown order sent.")


def err_no_such_order() -> VenueError:
    """-2013 "Order does not exist." (query of an unknown order)."""
    return VenueError(-2013, "Order does not exist.")


def split_symbol(symbol: str) -> tuple[str, str]:
    """Split ``BTCUSDT`` into ``("BTC", "USDT")``; raise ``ValueError`` if no known quote."""
    for q in _QUOTES:
        if symbol.endswith(q) and len(symbol) > len(q):
            return symbol[: -len(q)], q
    raise ValueError(f"cannot split symbol {symbol!r} into base and quote asset")


# -- parameter decoding -------------------------------------------------------------------------
def get_param(params: Params, name: str) -> str | None:
    """Return the parameter text, treating an empty value as absent."""
    v = params.get(name)
    return None if v is None or v == "" else v


def parse_decimal(params: Params, name: str) -> Decimal | None:
    """Parse a DECIMAL parameter (SPOT-ERR -1100 / -1111)."""
    v = get_param(params, name)
    if v is None:
        return None
    if not _DECIMAL_RE.fullmatch(v):
        raise err_illegal(name, _DECIMAL_RANGE)
    d = Decimal(v)
    if d != 0 and -d.normalize().as_tuple().exponent > MAX_DECIMALS:  # type: ignore[operator]
        raise VenueError(-1111, f"Parameter '{name}' has too much precision.")
    return d


def parse_int(params: Params, name: str) -> int | None:
    """Parse a LONG parameter (SPOT-ERR -1100)."""
    v = get_param(params, name)
    if v is None:
        return None
    if not _INT_RE.fullmatch(v):
        raise err_illegal(name, "^[0-9]{1,20}$")
    return int(v)


def parse_client_order_id(params: Params, name: str) -> str | None:
    """Validate a client order id parameter against the spot format (section 5)."""
    v = params.get(name)
    if v is None:
        return None
    if v == "":
        if name.startswith("orig") or name.startswith("cancelOrig"):
            raise VenueError(-1119, "Original client order ID was empty.")
        raise VenueError(-1118, "New client order ID was empty.")
    if not CLIENT_ORDER_ID_RE.fullmatch(v):
        raise err_illegal(name, _CLIENT_ORDER_ID_RANGE)
    return v


def parse_cancel_restrictions(params: Params) -> str | None:
    """Return ``cancelRestrictions`` (absent: None); raise -1145 for an unknown value."""
    restrictions = get_param(params, "cancelRestrictions")
    if restrictions is not None and restrictions not in CANCEL_RESTRICTIONS:
        raise VenueError(-1145, "Invalid cancelRestrictions")
    return restrictions


def parse_cancel_replace_mode(params: Params) -> str:
    """Return the mandatory ``cancelReplaceMode``; raise -1102 / -1100."""
    mode = get_param(params, "cancelReplaceMode")
    if mode is None:
        raise err_mandatory("cancelReplaceMode")
    if mode not in CANCEL_REPLACE_MODES:
        raise err_illegal("cancelReplaceMode", "STOP_ON_FAILURE, ALLOW_FAILURE")
    return mode


# -- order records ----------------------------------------------------------------------------------
@dataclass(slots=True, eq=False)
class Order:
    """One order of the simulated account (prices quote currency, quantities base, times ms)."""

    symbol: str
    order_id: int
    client_order_id: str
    side: str
    type: str
    time_in_force: str
    price: Decimal
    orig_qty: Decimal
    orig_quote_qty: Decimal
    time_ms: int
    executed_qty: Decimal = _ZERO
    cum_quote: Decimal = _ZERO
    status: str = NEW
    update_time_ms: int = 0
    working_time_ms: int = -1
    on_book: bool = False
    locked: Decimal = _ZERO
    strategy_id: int | None = None
    strategy_type: int | None = None
    expiry_reason: str | None = None

    @property
    def is_open(self) -> bool:
        """True while NEW or PARTIALLY_FILLED."""
        return self.status in OPEN_STATUSES

    @property
    def remaining(self) -> Decimal:
        """Unfilled quantity, base currency (0 for quote-quantity MARKET orders once done)."""
        return self.orig_qty - self.executed_qty


@dataclass(slots=True)
class NewOrder:
    """A validated new-order request."""

    symbol: str
    side: str
    type: str
    time_in_force: str
    price: Decimal
    qty: Decimal | None
    quote_qty: Decimal | None
    client_order_id: str | None
    resp_type: str
    strategy_id: int | None
    strategy_type: int | None


# -- new orders ---------------------------------------------------------------------------------------
def validate_new_order(params: Params, inst: Instrument) -> NewOrder:
    """Validate the new-order parameters of ``inst``'s symbol (3.4); filters are :func:`check_filters`.

    Checks, in the venue's order: side, type, timeInForce, price / quantity /
    quoteOrderQty per type, newClientOrderId, newOrderRespType, strategy fields.
    Raises :class:`VenueError`.
    """
    side = get_param(params, "side")
    if side is None:
        raise err_mandatory("side")
    if side not in (BUY, SELL):
        raise VenueError(-1117, "Invalid side.")
    otype = get_param(params, "type")
    if otype is None:
        raise err_mandatory("type")
    if otype in UNSUPPORTED_TYPES:
        raise err_new_order_rejected(UNSUPPORTED_TYPES[otype])
    if otype not in ORDER_TYPES:
        raise VenueError(-1116, "Invalid orderType.")
    tif = get_param(params, "timeInForce")
    if otype == LIMIT:
        if tif is None:
            raise err_mandatory("timeInForce")
        if tif not in TIME_IN_FORCE:
            raise VenueError(-1115, "Invalid timeInForce.")
    elif tif is not None:
        raise err_not_required("timeInForce")
    price = parse_decimal(params, "price")
    qty = parse_decimal(params, "quantity")
    quote_qty = parse_decimal(params, "quoteOrderQty")
    if otype in (LIMIT, LIMIT_MAKER):
        if price is None:
            raise err_mandatory("price")
        if qty is None:
            raise err_mandatory("quantity")
        if quote_qty is not None:
            raise err_not_required("quoteOrderQty")
    else:
        if price is not None:
            raise err_not_required("price")
        if qty is None and quote_qty is None:
            raise VenueError(-1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!")
        if qty is not None and quote_qty is not None:
            raise err_not_required("quoteOrderQty")
    cid = parse_client_order_id(params, "newClientOrderId")
    resp = get_param(params, "newOrderRespType")
    if resp is None:
        resp = "FULL" if otype in (LIMIT, MARKET) else "ACK"
    elif resp not in RESP_TYPES:
        raise err_illegal("newOrderRespType", "ACK, RESULT, FULL")
    strategy_id = parse_int(params, "strategyId")
    strategy_type = parse_int(params, "strategyType")
    if strategy_type is not None and strategy_type < 1_000_000:
        raise VenueError(-1134, "strategyType was less than 1000000.")
    return NewOrder(inst.symbol, side, otype, tif or "GTC", price or _ZERO, qty, quote_qty, cid, resp,
                    strategy_id, strategy_type)


def check_filters(inst: Instrument, req: NewOrder, market: MarketView, n_open: int) -> None:
    """Apply PRICE_FILTER, LOT_SIZE, NOTIONAL, MAX_NUM_ORDERS, in that order (section 7).

    ``n_open`` is the number of open orders of the symbol. A MARKET order by
    ``quantity`` is priced at the opposite best price of ``market`` (the venue uses
    a reference price). Raises -1013 "Filter failure: <name>".
    """
    if req.type != MARKET:
        p = req.price
        if p < inst.tick_size or p > MAX_PRICE or p % inst.tick_size != 0:
            raise err_filter_failure("PRICE_FILTER")
    if req.qty is not None:
        q = req.qty
        if q < inst.step_size or q > MAX_QTY or q % inst.step_size != 0:
            raise err_filter_failure("LOT_SIZE")
    notional: Decimal | None
    if req.type != MARKET:
        notional = req.price * (req.qty or _ZERO)
    elif req.quote_qty is not None:
        notional = req.quote_qty
    else:
        best = market.best_ask(inst.symbol) if req.side == BUY else market.best_bid(inst.symbol)
        notional = best[0] * (req.qty or _ZERO) if best else None
    if notional is not None and (notional < inst.min_notional or
                                 (req.type != MARKET and notional > MAX_NOTIONAL)):
        raise err_filter_failure("NOTIONAL")
    if n_open >= MAX_NUM_ORDERS:
        raise err_filter_failure("MAX_NUM_ORDERS")


__all__ = [
    "CANCELED", "CANCEL_REPLACE_MODES", "CANCEL_RESTRICTIONS", "CLIENT_ORDER_ID_RE", "EXPIRED", "FILLED",
    "LIMIT", "LIMIT_MAKER", "MARKET", "MAX_DECIMALS", "MAX_NOTIONAL", "MAX_NUM_ORDERS", "MAX_PRICE", "MAX_QTY",
    "NEW", "NewOrder", "OPEN_STATUSES", "ORDER_TYPES", "Order", "PARTIALLY_FILLED", "Params", "REJECTED",
    "RESP_TYPES", "TIME_IN_FORCE", "TRADE", "UNSUPPORTED_TYPES", "VenueError", "check_filters",
    "err_filter_failure", "err_illegal", "err_mandatory", "err_new_order_rejected", "err_no_such_order",
    "err_not_required", "err_unknown_order_cancel", "get_param", "parse_cancel_replace_mode",
    "parse_cancel_restrictions", "parse_client_order_id", "parse_decimal", "parse_int", "split_symbol",
    "validate_new_order",
]
