"""Settle orders in doubt with the venue, and reconcile the venue's open orders at start and reconnect.

:class:`OrderResolver` -- the timeout / unknown-outcome path
-------------------------------------------------------------
An order whose ``order.place`` got no answer in time, a 5xx / -1006 / -1007
(venue-protocols.md 3.2, 6.1: "execution status unknown", never a failure),
was in flight when the connection dropped, or got the venue's duplicate answer
(``-2010 "Duplicate order sent."`` / ``-4116``, section 5), is UNKNOWN. The
resolver asks the venue ``order.status`` by ``origClientOrderId`` (3.4):

* **found** -- the order is adopted: its state, ``orderId`` and executed quantity
  come from the venue (:meth:`~engine.orders.tracker.OrderTracker.on_status`); if
  the strategy no longer wants it (``cancel_wanted``) it is cancelled;
* **not found** (``-2013``, 6.1) -- not conclusive while the original request
  could still be executed: the venue accepts a SIGNED request only while
  ``serverTime - timestamp <= recvWindow`` and re-checks that just before the
  matching engine (4.4); later it answers ``-1021`` and the request can never
  appear. So the resolver asks **again once ``timestamp + recvWindow + margin``
  has passed** (``margin`` covers the clock offset between us and the venue and
  the 1000 ms a request may be ahead, 4.4). A ``-2013`` to a query sent after
  that instant is conclusive: the order is sent again **with the same client
  order id** (never a new one; at most ``max_resends`` times), or abandoned
  (REJECTED, ``-2013``) when the strategy no longer wants it. Reusing the id is
  safe: the venue refuses a second open order with one id (``-2010``, section 5),
  which the tracker classifies as DUPLICATE and resolves by the same query.

Known limit (section 10 item 2): whether ``order.status`` finds a *cancelled*
order by its original client id is not confirmed on the venue (a cancel replaces
the id). An UNKNOWN order is cancelled only by us; a cancel we sent for it is
answered with its ``origClientOrderId`` (applied to the tracker), so the resolver
only resends orders that were never acknowledged in any way.

Orders that are known but whose state must be confirmed (cancel without answer,
``-2011`` on cancel, reports possibly lost across a reconnect) use the same
query; a ``-2013`` for an order the venue had acknowledged is logged and dropped
(nothing is ever resent for it).

:func:`reconcile` -- start and every WS API reconnect
-----------------------------------------------------
``openOrders.status`` (3.4) for the symbol; each listed order is

* **known** (in the tracker): its state is refreshed from the venue;
* **ours, untracked** (client id with our instance prefix, e.g. left by an
  earlier run, ``engine.orders.ids``): **adopted** into the tracker (and, at
  start, cancelled if ``cancel_own_at_start``);
* **foreign**: **cancelled** or **left**, as configured (leave it when several
  instances share the account).

Tracked open orders the venue does not list go on the in-doubt list (resolved
by ``order.status``: filled, cancelled or never placed). The result is a
:class:`ReconcileReport`, logged before quoting starts or resumes.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

import msgspec

from engine.orders import state as st
from engine.orders.ids import parse_client_order_id

log = logging.getLogger(__name__)

# Foreign-order policies of reconcile().
CANCEL = "cancel"
LEAVE = "leave"
# Back-off before re-asking after a failed query (timeout, connection, other error), ms.
_RETRY_MS = 200
# Pause before looking again at an order whose resend was postponed (engine halted), ms.
_POSTPONE_MS = 1000


def wall_clock_ms() -> int:
    """Wall clock, ms since the Unix epoch (the clock of request timestamps, 4.4)."""
    return time.time_ns() // 1_000_000


class ReconcileReport(msgspec.Struct, kw_only=True):
    """What one reconciliation found and did (ids are client order ids).

    Attributes
    ----------
    reason : str
        ``start`` or ``reconnect``.
    symbol : str
    venue_open : int
        Orders the venue listed open.
    confirmed : list of str
        Tracked orders the venue lists open (state refreshed).
    adopted : list of str
        Our own (instance prefix) orders the tracker did not know, now tracked.
    canceled : list of str
        Orders cancelled by the reconciliation (foreign, or adopted at start).
    left : list of str
        Foreign orders left open.
    to_resolve : list of str
        Tracked orders the venue does not list open: confirmed by ``order.status``.
    errors : list of str
        Cancels that failed.
    ts_ms : int
        Wall clock, ms.
    """

    reason: str
    symbol: str
    venue_open: int = 0
    confirmed: list[str] = []
    adopted: list[str] = []
    canceled: list[str] = []
    left: list[str] = []
    to_resolve: list[str] = []
    errors: list[str] = []
    ts_ms: int = 0

    def text(self) -> str:
        """One log line with the counts and the ids."""
        def ids(x: list[str]) -> str:
            return "[" + ", ".join(x[:20]) + (", ..." if len(x) > 20 else "") + "]"
        return (f"reconciliation ({self.reason}) {self.symbol}: venue open {self.venue_open}; "
                f"confirmed {len(self.confirmed)}; adopted {len(self.adopted)} {ids(self.adopted)}; "
                f"canceled {len(self.canceled)} {ids(self.canceled)}; left {len(self.left)} {ids(self.left)}; "
                f"to resolve {len(self.to_resolve)} {ids(self.to_resolve)}"
                + (f"; errors {self.errors}" if self.errors else ""))


def owned_by(prefix: str) -> Callable[[str], bool]:
    """Return ``f(client_order_id) -> bool``: True for ids of our instance prefix (any restart epoch)."""
    def owns(cid: str) -> bool:
        p = parse_client_order_id(cid)
        return p is not None and p[0] == prefix
    return owns


async def reconcile(api: Any, tracker: Any, symbol: str, owns: Callable[[str], bool], *, reason: str,
                    foreign: str = CANCEL, cancel_own: bool = False, timeout_s: float = 10.0) -> ReconcileReport:
    """Reconcile the tracker with the venue's open orders of ``symbol`` (see the module doc).

    Parameters
    ----------
    api : WsApiClient-like
        ``open_orders(symbol, timeout)`` and ``cancel_order(symbol, cid, timeout)`` coroutines.
    tracker : OrderTracker
    owns : callable
        True for client ids of this instance (:func:`owned_by`).
    reason : str
        ``start`` or ``reconnect`` (for the report).
    foreign : {"cancel", "leave"}
        What to do with orders that are not ours.
    cancel_own : bool
        Cancel our own orders that had to be adopted (left by an earlier run).

    Raises
    ------
    WsApiError, ConnectionError, asyncio.TimeoutError
        If ``openOrders.status`` fails (the caller retries or stops).
    """
    if foreign not in (CANCEL, LEAVE):
        raise ValueError(f"foreign must be {CANCEL!r} or {LEAVE!r}, got {foreign!r}")
    rep = ReconcileReport(reason=reason, symbol=symbol, ts_ms=wall_clock_ms())
    venue = await api.open_orders(symbol, timeout_s)
    rep.venue_open = len(venue)
    listed: set[str] = set()
    listed_ids: set[int] = set()
    for entry in venue:
        cid = entry.get("clientOrderId") or ""
        listed.add(cid)
        if "orderId" in entry:
            listed_ids.add(int(entry["orderId"]))
        if tracker.get(cid) is not None:
            tracker.on_status(cid, entry)
            rep.confirmed.append(cid)
            continue
        if owns(cid):
            if tracker.adopt(entry) is not None:
                rep.adopted.append(cid)
            if cancel_own:
                await _cancel(api, tracker, symbol, cid, rep, timeout_s)
            continue
        if foreign == CANCEL:
            await _cancel(api, tracker, symbol, cid, rep, timeout_s)
        else:
            rep.left.append(cid)
    for o in tracker.open_orders(symbol):
        if o.client_order_id in listed or (o.order_id >= 0 and o.order_id in listed_ids):
            continue
        tracker.mark_need_query(o)
        rep.to_resolve.append(o.client_order_id)
    log.warning(rep.text()) if (rep.adopted or rep.canceled or rep.left or rep.to_resolve) else log.info(rep.text())
    return rep


async def _cancel(api: Any, tracker: Any, symbol: str, cid: str, rep: ReconcileReport, timeout_s: float) -> None:
    tracked = tracker.get(cid) is not None
    if tracked:
        tracker.on_cancel_sent(cid)
    try:
        res = await api.cancel_order(symbol, cid, timeout_s)
    except Exception as e:  # noqa: BLE001 - reported; the order stays as the venue has it
        code = getattr(e, "code", 0)
        if tracked:
            tracker.on_cancel_error(cid, getattr(e, "status", 500), code, getattr(e, "msg", repr(e)))
        rep.errors.append(f"{cid}: {e!r}")
        return
    if tracked:
        tracker.on_cancel_ack(cid, res)
    rep.canceled.append(cid)


class OrderResolver:
    """Resolve the tracker's in-doubt orders with ``order.status`` (see the module doc).

    Call :meth:`step` periodically (it starts queries and returns at once), or
    ``await`` :meth:`settle` to drive it until nothing is in doubt.

    Parameters
    ----------
    tracker : OrderTracker
    api : WsApiClient-like
        ``connected``; ``order_status(symbol, cid, timeout)`` coroutine raising an
        error with ``code`` (-2013 not found); ``resend_place(cid) -> bool``;
        ``send_cancel(cid, symbol, trigger_rx_ns)``.
    recv_window_ms : int
        ``recvWindow`` the client sends with orders (venue default 5000, 4.4).
    margin_ms : int
        Added to ``timestamp + recvWindow`` before a "not found" is conclusive:
        clock offset to the venue plus the 1000 ms a request may be ahead (4.4).
    resend : bool
        Send a conclusively missing order again (same id); False abandons it.
    max_resends : int
        Resends per order before it is abandoned.
    max_in_flight : int
        Concurrent ``order.status`` queries (weight 4 each, 3.4).
    query_timeout_s : float
    clock_ms : callable
        Wall clock, ms (the clock of the request timestamps).
    may_resend : callable, optional
        ``f() -> bool``; False postpones a resend (the engine is halted: no order may
        leave), the order stays in doubt and is looked at again later.

    Attributes
    ----------
    queries, found, not_found, waited_window, resent, abandoned, errors, dropped, postponed : int
    """

    def __init__(self, tracker: Any, api: Any, *, recv_window_ms: int = 5000, margin_ms: int = 1000,
                 resend: bool = True, max_resends: int = 1, max_in_flight: int = 16, query_timeout_s: float = 5.0,
                 clock_ms: Callable[[], int] = wall_clock_ms, may_resend: Callable[[], bool] | None = None) -> None:
        self.tracker = tracker
        self.api = api
        self.recv_window_ms = recv_window_ms
        self.margin_ms = margin_ms
        self.resend = resend
        self.max_resends = max_resends
        self.max_in_flight = max_in_flight
        self.query_timeout_s = query_timeout_s
        self.clock_ms = clock_ms
        self.may_resend = may_resend
        self.postponed = 0
        self.in_flight = 0
        self._tasks: set[asyncio.Task] = set()
        self.queries = 0
        self.found = 0
        self.not_found = 0
        self.waited_window = 0
        self.resent = 0
        self.abandoned = 0
        self.errors = 0
        self.dropped = 0

    def window_end_ms(self, o: Any) -> int:
        """Wall-clock ms after which a "not found" for ``o`` is conclusive (4.4)."""
        return o.sent_ts_ms + self.recv_window_ms + self.margin_ms

    def step(self) -> int:
        """Start ``order.status`` queries for the in-doubt orders that are due; return how many."""
        if not getattr(self.api, "connected", True):
            return 0
        now = self.clock_ms()
        n = 0
        for o in self.tracker.in_doubt():
            if self.in_flight >= self.max_in_flight:
                break
            if o.querying or o.next_check_ms > now:
                continue
            o.querying = True
            self.in_flight += 1
            n += 1
            t = asyncio.get_running_loop().create_task(self._resolve(o))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)
        return n

    async def settle(self, timeout_s: float, poll_s: float = 0.01) -> bool:
        """Drive :meth:`step` until nothing is in doubt or ``timeout_s`` passed; True if settled."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.step()
            if self.tracker.in_doubt_count() == 0 and self.in_flight == 0:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(poll_s)

    def cancel_tasks(self) -> None:
        """Cancel the queries in flight (shutdown)."""
        for t in list(self._tasks):
            t.cancel()

    async def _resolve(self, o: Any) -> None:
        cid = o.client_order_id
        sent_ms = self.clock_ms()
        self.queries += 1
        try:
            res = await self.api.order_status(o.symbol, cid, self.query_timeout_s)
        except asyncio.CancelledError:
            o.querying = False
            raise
        except Exception as e:  # noqa: BLE001 - classified below; the order stays in doubt
            code = getattr(e, "code", None)
            if code == st.NO_SUCH_ORDER:
                self.not_found += 1
                self._not_found(o, sent_ms)
            else:
                self.errors += 1
                o.next_check_ms = self.clock_ms() + _RETRY_MS
        else:
            self.found += 1
            self.tracker.on_status(cid, res)
            self._cancel_if_unwanted(o)
        finally:
            o.querying = False
            self.in_flight -= 1

    def _not_found(self, o: Any, sent_ms: int) -> None:
        if o.state != st.UNKNOWN or o.acked:
            # The venue acknowledged it once (section 10 item 2: a cancelled order may not be
            # found by its original id): nothing to resend; its reports settle it.
            self.dropped += 1
            log.warning("order.status does not find %s (%s), which the venue had acknowledged", o.client_order_id,
                        o.status)
            o.need_query = False
            self.tracker.drop_doubt(o.client_order_id)
            return
        end = self.window_end_ms(o)
        if sent_ms < end:
            # The original request may still be executed until its recvWindow has passed (4.4).
            self.waited_window += 1
            o.next_check_ms = end
            return
        if o.cancel_wanted or not self.resend or o.resends >= self.max_resends:
            self.abandoned += 1
            self.tracker.abandon(o.client_order_id, "not on the venue after its recvWindow (abandoned)")
            return
        if self.may_resend is not None and not self.may_resend():
            self.postponed += 1
            o.next_check_ms = self.clock_ms() + _POSTPONE_MS
            return
        if self.api.resend_place(o.client_order_id):
            self.resent += 1
        else:
            o.next_check_ms = self.clock_ms() + _RETRY_MS

    def _cancel_if_unwanted(self, o: Any) -> None:
        if o.cancel_wanted and o.state in (st.NEW, st.PARTIALLY_FILLED) and getattr(self.api, "ready_to_cancel",
                                                                                    True):
            try:
                self.tracker.on_cancel_sent(o.client_order_id)
                self.api.send_cancel(o.client_order_id, o.symbol, 0)
            except Exception as e:  # noqa: BLE001 - stays open; the next reconciliation cancels it
                log.warning("cancel of adopted %s failed: %r", o.client_order_id, e)
                o.cancel_pending = False


__all__ = ["CANCEL", "LEAVE", "OrderResolver", "ReconcileReport", "owned_by", "reconcile", "wall_clock_ms"]
