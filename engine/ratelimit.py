"""Client-side rate limiting for Binance spot, corrected by what the venue reports.

Limits (venue-protocols.md 6.2) come from the ``rateLimits`` array of
``exchangeInfo``::

    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 50}
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 160000}
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 300000}

One :class:`WindowBucket` per entry. A request charges ``weight`` to every
REQUEST_WEIGHT bucket, ``orders`` to every ORDERS bucket and 1 to every
RAW_REQUESTS bucket, all or nothing (:meth:`RateLimiter.try_acquire`).

Why not the textbook token bucket (continuous refill at ``limit / interval``):
the venue counts **fixed** windows (a minute starts at every whole minute, 3.2),
and a continuously refilled bucket of capacity ``L`` lets up to ``2 L`` through
in one such window (a full bucket spent just before a boundary, the refill
spent just after). Here a token spent at ``t`` comes back no earlier than
``t + interval`` and no later than ``t + 61 * slot``, where ``slot =
ceil(interval / 60)`` (tokens are counted per slot in a fixed ring of 61
counters, O(1) amortised). Hence: in **any** window of one interval --
wherever the venue's boundaries fall, and whatever our clock offset to the
server -- at most ``capacity`` tokens are granted (property-tested). The
capacity is ``limit`` minus the safety margin; *priority* requests (cancels:
pulling quotes must not wait behind quoting) may use the margin, never more
than ``limit``.

Corrections from the venue (the venue's count wins when higher):

* WS API responses carry ``rateLimits`` with ``count`` (3.2);
  :meth:`RateLimiter.observe_rate_limits`;
* REST responses carry ``X-MBX-USED-WEIGHT-<n><S|M|H|D>`` and, on successful
  orders, ``X-MBX-ORDER-COUNT-<n><S|M|H|D>`` (6.2);
  :meth:`RateLimiter.observe_headers`.

Errors (6.1): HTTP/status **429** blocks requests until ``Retry-After``
(REST header, seconds) or ``error.data.retryAfter`` (WS API, epoch ms) has
passed, and at least an exponential back-off (``-1003`` blocks everything,
``-1015`` TOO_MANY_ORDERS blocks new orders only); **418** (IP banned) blocks
everything, cancels included, until ``retryAfter`` (at least
:data:`MIN_BAN_NS` when the venue does not say). Any other response resets
the back-off.

Request costs (3.4): :func:`request_cost`, :func:`depth_weight`. Depth
snapshot re-fetches draw on the same REQUEST_WEIGHT budget as everything else:
``limit`` 1-100 costs 5, 101-500 costs 25, 501-1000 costs 50, 1001-5000 costs
250 (1.3), so at 6000 per minute a resync storm with ``limit=1000`` could take
at most 120 snapshots a minute; the runner must ``try_acquire(depth_weight(limit))``
before each one and retry after :meth:`RateLimiter.wait_time_ns` when refused.

Time is a monotonic clock in ns, injected (tests never sleep); wall-clock ms
(``retryAfter`` is an epoch timestamp) is injected too. No floats.
"""
from __future__ import annotations

import logging
import re
import time
from typing import Any, Callable, Iterable, Mapping, NamedTuple

import msgspec

log = logging.getLogger(__name__)

REQUEST_WEIGHT = "REQUEST_WEIGHT"
ORDERS = "ORDERS"
RAW_REQUESTS = "RAW_REQUESTS"
CONNECTIONS = "CONNECTIONS"
LIMIT_TYPES = (REQUEST_WEIGHT, ORDERS, RAW_REQUESTS, CONNECTIONS)

_S = 1_000_000_000
INTERVAL_NS = {"SECOND": _S, "MINUTE": 60 * _S, "HOUR": 3600 * _S, "DAY": 86_400 * _S}
_LETTER = {"S": "SECOND", "M": "MINUTE", "H": "HOUR", "D": "DAY"}
# Sub-slots per interval: a spent token comes back at most 1/60 of an interval late.
SLOTS = 60
# A 418 without retryAfter: the venue's bans last 2 minutes to 3 days (6.1); wait at least the shortest.
MIN_BAN_NS = 120 * _S

# Codes of section 6.1.
TOO_MANY_REQUESTS = -1003
TOO_MANY_ORDERS = -1015

_HEADER_RE = re.compile(r"^x-mbx-(used-weight|order-count)-(\d+)([smhd])$", re.I)

# The spot values of venue-protocols.md 6.2 (2026-04-02): used until exchangeInfo is read.
SPOT_DEFAULT_LIMITS: tuple[dict[str, Any], ...] = (
    {"rateLimitType": REQUEST_WEIGHT, "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": ORDERS, "interval": "SECOND", "intervalNum": 10, "limit": 50},
    {"rateLimitType": ORDERS, "interval": "DAY", "intervalNum": 1, "limit": 160_000},
    {"rateLimitType": RAW_REQUESTS, "interval": "MINUTE", "intervalNum": 5, "limit": 300_000},
)


class RateLimitError(ValueError):
    """A malformed ``rateLimits`` entry, or a request that can never fit a limit."""


class RateLimitEntry(msgspec.Struct, frozen=True, rename="camel", gc=False):
    """One ``rateLimits`` element (exchangeInfo, or a WS API response with ``count``), 3.2 / 6.2.

    Usable as the element type of a msgspec response decoder.
    """

    rate_limit_type: str
    interval: str
    interval_num: int
    limit: int
    count: int | None = None


_entries_decoder = msgspec.json.Decoder(list[RateLimitEntry])


def _entry(e: RateLimitEntry | Mapping[str, Any]) -> RateLimitEntry:
    if isinstance(e, RateLimitEntry):
        return e
    try:
        return msgspec.convert(e, RateLimitEntry)
    except msgspec.ValidationError as err:
        raise RateLimitError(f"malformed rateLimits entry {e!r}: {err}") from None


class Cost(NamedTuple):
    """What a request charges: request ``weight`` and ``orders`` (unfilled-order count)."""

    weight: int
    orders: int = 0


def depth_weight(limit: int = 100) -> int:
    """Return the request weight of a depth snapshot of ``limit`` levels (1.3; > 5000 is capped at 5000)."""
    if limit < 1:
        raise ValueError(f"depth limit must be >= 1, got {limit}")
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


# WS API method costs (venue-protocols.md 3.4; exchangeInfo 20 and time 1 from the spot
# web-socket-api.md). Successful order.place / order.cancel / cancelReplace / cancelAll cost 0
# weight since 2026-04-02, failed ones 1: we charge 1 up front (a failure must not overdraw).
WS_API_COSTS: dict[str, Cost] = {
    "session.logon": Cost(2),
    "session.status": Cost(2),
    "session.logout": Cost(2),
    "order.place": Cost(1, 1),
    "order.cancel": Cost(1),
    "order.cancelReplace": Cost(1, 1),
    "order.amend.keepPriority": Cost(4),
    "openOrders.cancelAll": Cost(1),
    "order.status": Cost(4),
    "account.status": Cost(20),
    "userDataStream.subscribe": Cost(2),
    "userDataStream.subscribe.signature": Cost(2),
    "userDataStream.unsubscribe": Cost(2),
    "session.subscriptions": Cost(2),
    "exchangeInfo": Cost(20),
    "time": Cost(1),
}
# Opening a WS API connection costs 2 weight (3.1).
CONNECT_WEIGHT = 2
# Requests that pull quotes: allowed into the safety margin (never past the venue's limit).
PRIORITY_METHODS = frozenset(("order.cancel", "openOrders.cancelAll"))


def request_cost(method: str, params: Mapping[str, Any] | None = None) -> Cost:
    """Return the :class:`Cost` of a WS API request.

    ``depth`` depends on ``params["limit"]`` (default 100), ``openOrders.status``
    on whether ``symbol`` is given (6 / 80). Raises ``KeyError`` for a method
    whose weight is not documented here (decide, do not guess).
    """
    p = params or {}
    if method == "depth":
        return Cost(depth_weight(int(p.get("limit", 100))))
    if method == "openOrders.status":
        return Cost(6 if p.get("symbol") else 80)
    try:
        return WS_API_COSTS[method]
    except KeyError:
        raise KeyError(f"no documented request weight for WS API method {method!r}") from None


class WindowBucket:
    """Tokens of one limit (type, interval); a token spent at ``t`` returns in ``[t + interval, t + 61 * slot_ns]``.

    Parameters
    ----------
    kind : str
        ``REQUEST_WEIGHT``, ``ORDERS``, ``RAW_REQUESTS`` or ``CONNECTIONS``.
    interval : str
        ``SECOND``, ``MINUTE``, ``HOUR`` or ``DAY``.
    interval_num : int
    limit : int
        The venue's limit per interval.
    safety_margin_pct : int
        Percent of ``limit`` kept back from normal requests (0..99).

    Attributes
    ----------
    capacity : int
        Tokens normal requests may hold in one interval: ``floor(limit * (100 - margin) / 100)``
        (at least 1 when ``limit >= 1``).
    in_use : int
        Tokens spent less than an interval ago (after the last :meth:`advance`).
    interval_ns, slot_ns : int
    """

    __slots__ = ("kind", "interval", "interval_num", "limit", "capacity", "margin_pct", "interval_ns", "slot_ns",
                 "in_use", "_slots", "_head")

    def __init__(self, kind: str, interval: str, interval_num: int, limit: int, safety_margin_pct: int = 0) -> None:
        if interval not in INTERVAL_NS:
            raise RateLimitError(f"{kind}: unknown interval {interval!r} (one of {', '.join(INTERVAL_NS)})")
        if interval_num < 1:
            raise RateLimitError(f"{kind}: intervalNum must be >= 1, got {interval_num}")
        if not 0 <= safety_margin_pct < 100:
            raise RateLimitError(f"safety margin must be in 0..99 %, got {safety_margin_pct}")
        self.kind = kind
        self.interval = interval
        self.interval_num = interval_num
        self.margin_pct = safety_margin_pct
        self.interval_ns = INTERVAL_NS[interval] * interval_num
        # Ceil: SLOTS * slot_ns >= interval_ns, so a token is never returned early.
        self.slot_ns = -(-self.interval_ns // SLOTS)
        self.in_use = 0
        # Slot k (time [k*slot_ns, (k+1)*slot_ns)) lives at _slots[k % (SLOTS + 1)] while k >= head - SLOTS.
        self._slots = [0] * (SLOTS + 1)
        self._head = 0
        self.limit = 0
        self.capacity = 0
        self.set_limit(limit)

    @property
    def name(self) -> str:
        """``"<TYPE> <n> <INTERVAL>"``, e.g. ``REQUEST_WEIGHT 1 MINUTE``."""
        return f"{self.kind} {self.interval_num} {self.interval}"

    def set_limit(self, limit: int) -> None:
        """Change the venue's limit (e.g. a response reports a new one); recompute the capacity."""
        if limit < 0:
            raise RateLimitError(f"{self.kind}: limit must be >= 0, got {limit}")
        self.limit = limit
        cap = limit * (100 - self.margin_pct) // 100
        self.capacity = max(cap, 1) if limit >= 1 else 0

    def advance(self, now_ns: int) -> None:
        """Return the tokens of slots that left the window at ``now_ns``."""
        k = now_ns // self.slot_ns
        head = self._head
        if k <= head:
            # Same slot, or a clock that went back: keep counting into the head slot (conservative).
            return
        n = SLOTS + 1
        slots = self._slots
        if k - head >= n:
            for i in range(n):
                slots[i] = 0
            self.in_use = 0
        else:
            for j in range(head + 1, k + 1):
                i = j % n
                self.in_use -= slots[i]
                slots[i] = 0
        self._head = k

    def _cap(self, priority: bool) -> int:
        return self.limit if priority else self.capacity

    def fits(self, n: int, now_ns: int, priority: bool = False) -> bool:
        """True if ``n`` tokens can be taken at ``now_ns`` (advances the window)."""
        self.advance(now_ns)
        return self.in_use + n <= self._cap(priority)

    def take(self, n: int, now_ns: int) -> None:
        """Spend ``n`` tokens at ``now_ns`` unconditionally (callers check :meth:`fits` first)."""
        self.advance(now_ns)
        head = self._head
        self._slots[head % (SLOTS + 1)] += n
        self.in_use += n

    def wait_ns(self, n: int, now_ns: int, priority: bool = False) -> int:
        """Return ns until ``n`` tokens fit (0: now), assuming nothing else is taken meanwhile.

        Raises :class:`RateLimitError` if ``n`` exceeds the (priority) capacity: it never fits.
        """
        cap = self._cap(priority)
        if n > cap:
            raise RateLimitError(f"{self.name}: a request of {n} can never fit the capacity {cap} "
                                 f"(limit {self.limit}, margin {self.margin_pct} %)")
        self.advance(now_ns)
        need = self.in_use + n - cap
        if need <= 0:
            return 0
        freed = 0
        head = self._head
        for k in range(head - SLOTS, head + 1):
            freed += self._slots[k % (SLOTS + 1)]
            if freed >= need:
                # Slot k stays counted while the current slot is <= k + SLOTS.
                return (k + SLOTS + 1) * self.slot_ns - now_ns
        raise AssertionError("unreachable: need <= in_use")  # pragma: no cover

    def observe_count(self, count: int, now_ns: int) -> int:
        """Apply the venue's count for this limit: if higher than ours, spend the difference now.

        Returns the tokens added (0 when ours was already at least as high).
        """
        self.advance(now_ns)
        extra = count - self.in_use
        if extra <= 0:
            return 0
        self.take(extra, now_ns)
        return extra

    def __repr__(self) -> str:
        return f"WindowBucket({self.name}, in_use={self.in_use}, capacity={self.capacity}, limit={self.limit})"


class RateLimiter:
    """All rate limits of one venue connection set (IP weight, account orders), with the venue's feedback.

    Parameters
    ----------
    limits : iterable of RateLimitEntry or mapping
        ``exchangeInfo["rateLimits"]`` (spot shape); see :meth:`from_exchange_info`, :meth:`spot_defaults`.
    safety_margin_pct : int
        Percent of each limit kept back from normal requests (0..99).
    backoff_initial_ms, backoff_max_ms : int
        Exponential back-off after -1003 / -1015 / 429: ``initial * 2**(n-1)`` for the n-th
        consecutive hit, capped at ``max``.
    clock_ns : callable
        Monotonic clock, ns.
    wall_ms : callable
        Wall clock, ms since the Unix epoch (to convert ``retryAfter`` when ``serverTime`` is absent).

    Attributes
    ----------
    buckets : dict
        ``(type, interval_ns) -> WindowBucket``.
    granted, denied : int
        :meth:`try_acquire` outcomes.
    corrections : int
        Times the venue's count was higher than ours.
    rate_limited, bans : int
        429 and 418 responses seen.
    backoff_streak : int
        Consecutive 429 / -1003 / -1015 without a normal response in between.
    """

    def __init__(self, limits: Iterable[RateLimitEntry | Mapping[str, Any]], safety_margin_pct: int = 10,
                 backoff_initial_ms: int = 1000, backoff_max_ms: int = 60_000,
                 clock_ns: Callable[[], int] = time.monotonic_ns,
                 wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        if not 0 <= safety_margin_pct < 100:
            raise RateLimitError(f"safety_margin_pct must be in 0..99, got {safety_margin_pct}")
        if backoff_initial_ms < 1 or backoff_max_ms < backoff_initial_ms:
            raise RateLimitError("back-off must satisfy 1 <= backoff_initial_ms <= backoff_max_ms")
        self.margin_pct = safety_margin_pct
        self.backoff_initial_ns = backoff_initial_ms * 1_000_000
        self.backoff_max_ns = backoff_max_ms * 1_000_000
        self._clock = clock_ns
        self._wall_ms = wall_ms
        self.buckets: dict[tuple[str, int], WindowBucket] = {}
        self._by_kind: dict[str, list[WindowBucket]] = {k: [] for k in LIMIT_TYPES}
        for e in limits:
            self._add(_entry(e))
        if not self._by_kind[REQUEST_WEIGHT] and not self._by_kind[ORDERS]:
            # Fail closed: a limiter that limits nothing is a configuration error.
            raise RateLimitError("rateLimits has neither REQUEST_WEIGHT nor ORDERS limits")
        self.blocked_until_ns = 0          # every request (429 -1003, 418)
        self.orders_blocked_until_ns = 0   # new orders (-1015)
        self.banned_until_ns = 0           # 418
        self.backoff_streak = 0
        self.granted = 0
        self.denied = 0
        self.corrections = 0
        self.rate_limited = 0
        self.bans = 0

    # -- construction -------------------------------------------------------------------------------
    @classmethod
    def from_exchange_info(cls, doc: Mapping[str, Any] | bytes | str, **kwargs: Any) -> "RateLimiter":
        """Build from an exchangeInfo document (REST body, WS API ``result``, or its JSON text)."""
        if isinstance(doc, (bytes, str)):
            try:
                doc = msgspec.json.decode(doc)
            except msgspec.DecodeError as e:
                raise RateLimitError(f"exchangeInfo is not valid JSON: {e}") from None
        if not isinstance(doc, Mapping) or not isinstance(doc.get("rateLimits"), list):
            raise RateLimitError("exchangeInfo lacks a 'rateLimits' list")
        return cls(doc["rateLimits"], **kwargs)

    @classmethod
    def spot_defaults(cls, **kwargs: Any) -> "RateLimiter":
        """Build from the documented spot limits (:data:`SPOT_DEFAULT_LIMITS`), until exchangeInfo is read."""
        return cls(SPOT_DEFAULT_LIMITS, **kwargs)

    def _add(self, e: RateLimitEntry) -> WindowBucket | None:
        if e.rate_limit_type not in LIMIT_TYPES:
            log.warning("ignoring unknown rate limit type %r", e.rate_limit_type)
            return None
        if e.interval not in INTERVAL_NS:
            raise RateLimitError(f"{e.rate_limit_type}: unknown interval {e.interval!r}")
        key = (e.rate_limit_type, INTERVAL_NS[e.interval] * e.interval_num)
        b = self.buckets.get(key)
        if b is None:
            b = WindowBucket(e.rate_limit_type, e.interval, e.interval_num, e.limit, self.margin_pct)
            self.buckets[key] = b
            self._by_kind[e.rate_limit_type].append(b)
        elif b.limit != e.limit:
            log.warning("rate limit %s changed from %d to %d", b.name, b.limit, e.limit)
            b.set_limit(e.limit)
        return b

    def bucket(self, kind: str, interval: str, interval_num: int = 1) -> WindowBucket | None:
        """Return the bucket of a limit, or None."""
        return self.buckets.get((kind, INTERVAL_NS[interval] * interval_num))

    # -- acquiring ----------------------------------------------------------------------------------
    def _charges(self, weight: int, orders: int, requests: int, connections: int) -> tuple[tuple[list, int], ...]:
        return ((self._by_kind[REQUEST_WEIGHT], weight), (self._by_kind[ORDERS], orders),
                (self._by_kind[RAW_REQUESTS], requests), (self._by_kind[CONNECTIONS], connections))

    def try_acquire(self, weight: int = 1, orders: int = 0, *, priority: bool = False, requests: int = 1,
                    connections: int = 0) -> bool:
        """Take the tokens of one request from every bucket, or none; return True if granted.

        Parameters
        ----------
        weight : int
            Request weight (:func:`request_cost`).
        orders : int
            New orders (``order.place`` / ``cancelReplace``: 1).
        priority : bool
            A request that pulls quotes (cancel): may use the safety margin; still refused
            while blocked or banned, and never past the venue's limit.
        requests : int
            RAW_REQUESTS charge (1 per request).
        connections : int
            CONNECTIONS charge (1 per new connection, if the venue lists that limit).

        Raises
        ------
        RateLimitError
            If the request exceeds a limit's whole capacity (it could never be granted).
        """
        now = self._clock()
        if now < self.blocked_until_ns or (orders and now < self.orders_blocked_until_ns):
            self.denied += 1
            return False
        charges = self._charges(weight, orders, requests, connections)
        for buckets, n in charges:
            if n:
                for b in buckets:
                    if n > b._cap(priority):
                        b.wait_ns(n, now, priority)  # raises: it can never fit
                    if not b.fits(n, now, priority):
                        self.denied += 1
                        return False
        for buckets, n in charges:
            if n:
                for b in buckets:
                    b.take(n, now)
        self.granted += 1
        return True

    def wait_time_ns(self, weight: int = 1, orders: int = 0, *, priority: bool = False, requests: int = 1,
                     connections: int = 0) -> int:
        """Return ns until :meth:`try_acquire` with the same arguments would succeed (0: now).

        Assumes nothing else is acquired meanwhile. Raises :class:`RateLimitError` like ``try_acquire``.
        """
        now = self._clock()
        wait = self.blocked_until_ns - now
        if orders:
            wait = max(wait, self.orders_blocked_until_ns - now)
        for buckets, n in self._charges(weight, orders, requests, connections):
            if n:
                for b in buckets:
                    wait = max(wait, b.wait_ns(n, now, priority))
        return max(wait, 0)

    # -- state --------------------------------------------------------------------------------------
    @property
    def banned(self) -> bool:
        """True while a 418 ban lasts."""
        return self._clock() < self.banned_until_ns

    @property
    def blocked(self) -> bool:
        """True while every request is blocked (429 -1003 back-off, or a ban)."""
        return self._clock() < self.blocked_until_ns

    @property
    def orders_blocked(self) -> bool:
        """True while new orders are blocked (-1015 back-off, or any block above)."""
        now = self._clock()
        return now < self.orders_blocked_until_ns or now < self.blocked_until_ns

    # -- feedback from the venue --------------------------------------------------------------------
    def observe_rate_limits(self, entries: Iterable[RateLimitEntry | Mapping[str, Any]] | bytes | None) -> int:
        """Apply a WS API response's ``rateLimits`` (entries with ``count``); return tokens added.

        A limit the venue reports that we did not know is adopted; a changed limit is updated.
        """
        if not entries:
            return 0
        if isinstance(entries, (bytes, bytearray, memoryview)):
            entries = _entries_decoder.decode(entries)
        now = self._clock()
        added = 0
        for raw in entries:
            e = _entry(raw)
            b = self._add(e)
            if b is not None and e.count is not None:
                added += b.observe_count(e.count, now)
        if added:
            self.corrections += 1
        return added

    def observe_headers(self, headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> int:
        """Apply REST ``X-MBX-USED-WEIGHT-<n><l>`` / ``X-MBX-ORDER-COUNT-<n><l>`` headers; return tokens added.

        Headers of limits we have no bucket for are ignored (their limit is unknown).
        """
        items = headers.items() if isinstance(headers, Mapping) else headers
        now = self._clock()
        added = 0
        for name, value in items:
            m = _HEADER_RE.match(name)
            if m is None:
                continue
            try:
                count = int(value)
            except (TypeError, ValueError):
                log.warning("ignoring malformed rate-limit header %s: %r", name, value)
                continue
            kind = REQUEST_WEIGHT if m.group(1).lower() == "used-weight" else ORDERS
            key = (kind, INTERVAL_NS[_LETTER[m.group(3).upper()]] * int(m.group(2)))
            b = self.buckets.get(key)
            if b is not None:
                added += b.observe_count(count, now)
        if added:
            self.corrections += 1
        return added

    def _backoff_ns(self) -> int:
        self.backoff_streak += 1
        d = self.backoff_initial_ns << min(self.backoff_streak - 1, 62)
        return min(d, self.backoff_max_ns)

    def _retry_after_ns(self, retry_after_epoch_ms: Any, server_time_ms: Any) -> int | None:
        # retryAfter is an epoch-ms timestamp (3.2); measured against the server's own time when
        # the response carries it, so our clock's offset does not matter.
        if not isinstance(retry_after_epoch_ms, int) or isinstance(retry_after_epoch_ms, bool):
            return None
        ref = server_time_ms if isinstance(server_time_ms, int) and not isinstance(server_time_ms, bool) \
            else self._wall_ms()
        return max(0, retry_after_epoch_ms - ref) * 1_000_000

    def on_error(self, status: int, code: int | None = None, retry_after_ns: int | None = None) -> None:
        """Apply a rate-limit outcome (any transport); ``retry_after_ns`` is relative to now.

        * 418: banned -- block everything until ``retry_after`` (at least :data:`MIN_BAN_NS`
          when unknown, and at least the back-off);
        * 429, -1003, -1015: block until ``max(retry_after, back-off)``; -1015 blocks new
          orders only, everything else blocks all requests;
        * anything else: a normal answer, reset the back-off.
        """
        now = self._clock()
        if status == 418:
            self.bans += 1
            wait = max(retry_after_ns if retry_after_ns is not None else MIN_BAN_NS, self._backoff_ns())
            until = now + wait
            self.banned_until_ns = max(self.banned_until_ns, until)
            self.blocked_until_ns = max(self.blocked_until_ns, until)
            log.error("rate limit: IP banned by the venue (418, code %s) for %d ms", code, wait // 1_000_000)
            return
        if status == 429 or code == TOO_MANY_REQUESTS or code == TOO_MANY_ORDERS:
            self.rate_limited += 1
            wait = self._backoff_ns()
            if retry_after_ns is not None:
                wait = max(wait, retry_after_ns)
            until = now + wait
            if code == TOO_MANY_ORDERS:
                self.orders_blocked_until_ns = max(self.orders_blocked_until_ns, until)
            else:
                self.blocked_until_ns = max(self.blocked_until_ns, until)
            log.warning("rate limit hit (status %d, code %s): %s blocked for %d ms", status, code,
                        "new orders" if code == TOO_MANY_ORDERS else "all requests", wait // 1_000_000)
            return
        self.backoff_streak = 0

    def on_ws_response(self, status: int, rate_limits: Iterable[Any] | None = None, error_code: int | None = None,
                       error_data: Mapping[str, Any] | None = None) -> None:
        """Apply one WS API response (3.2): its ``rateLimits``, then its status / ``error``.

        ``error_data`` is ``error.data`` (``retryAfter`` epoch ms, ``serverTime`` ms).
        """
        self.observe_rate_limits(rate_limits)
        retry = None
        if error_data:
            retry = self._retry_after_ns(error_data.get("retryAfter"), error_data.get("serverTime"))
        self.on_error(status, error_code, retry)

    def on_rest_response(self, status: int, headers: Mapping[str, str], error_code: int | None = None) -> None:
        """Apply one REST response: ``X-MBX-*`` counts, then status (``Retry-After`` in seconds, 6.1)."""
        self.observe_headers(headers)
        retry = None
        for name, value in headers.items():
            if name.lower() == "retry-after":
                try:
                    retry = max(0, int(value.strip())) * _S
                except (AttributeError, ValueError):
                    log.warning("ignoring malformed Retry-After %r", value)
                break
        self.on_error(status, error_code, retry)

    def __repr__(self) -> str:
        return f"RateLimiter({', '.join(repr(b) for b in self.buckets.values())})"


__all__ = ["CONNECTIONS", "CONNECT_WEIGHT", "Cost", "INTERVAL_NS", "LIMIT_TYPES", "MIN_BAN_NS", "ORDERS",
           "PRIORITY_METHODS", "RAW_REQUESTS", "REQUEST_WEIGHT", "RateLimitEntry", "RateLimitError", "RateLimiter",
           "SLOTS", "SPOT_DEFAULT_LIMITS", "TOO_MANY_ORDERS", "TOO_MANY_REQUESTS", "WS_API_COSTS", "WindowBucket",
           "depth_weight", "request_cost"]
