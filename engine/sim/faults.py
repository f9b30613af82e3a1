r"""Deterministic fault injection for the simulator: market streams and WebSocket API.

The plan of a run is a :class:`FaultPlan`, chosen by a named profile
(:data:`PLAN_PROFILES`: ``none``, ``drops``, ``stalls``, ``gaps``, ``dupes``,
``latency``, ``errors``, ``chaos``) and a seed::

    from engine.sim.faults import FaultPlan
    plan = FaultPlan.profile("chaos", seed=7)          # ValueError for an unknown name
    handle = await start_simulator(source, faults=plan)
    ...
    plan.injected          # {"dup_frame": 31, "gap": 2, "error_429": 1, ...}
    plan.total             # sum of the above

Same seed, same market events and same client requests: same faults. Scheduled
faults are timed by the market clock (exchange event times), per-frame and
per-request faults by counts, so a replay sped up k times meets the same faults
k times faster. ``none`` changes nothing on the wire. Keys of ``plan.injected``
(faults actually injected; a connection fault counts once per connection hit, a
frame fault once per payload withheld/duplicated/held back while subscribed):

==================== ==============================================================================
``stream_drop``      a market-stream connection dropped: CLOSE 1001, or a TCP abort (no CLOSE)
``ws_api_conn_drop`` a WS API connection dropped the same way, at a scheduled moment
``stall``            stream data stops for N s, the connection stays open and answers pings; the
                     data of the stall is lost (the next diff shows a ``U`` gap)
``freeze``           nothing flows for N s (data, pongs, server pings): client pings go unanswered;
                     then everything arrives late, in order, nothing lost (a TCP-level stall)
``gap``              a diff-depth payload is not sent (``U`` > previous ``u`` + 1 at the client)
``dup_frame``        a stream payload is sent twice in a row \*
``reorder_frame``    a stream payload is held back and sent after the next one of its stream \*
``latency_spike``    every frame of a connection delayed by X ms (order kept) for a while
``drop``             WS API response never sent (the request was processed)
``delay``            WS API response sent late (the request was processed)
``cut_before``       WS API connection closed as a request arrives (not processed)
``cut_after``        WS API connection closed after processing, before the response
``error_5xx``        processed, then answered 503 / -1007 (execution status unknown)
``error_1003``       refused: 429 / -1003 "Too many requests queued."
``error_429``        refused: 429 / -1003 weight limit, ``error.data.retryAfter`` (epoch ms)
``error_1015``       refused: 429 / -1015 "Too many new orders ..." (``order.place`` only)
``error_418``        refused: 418 / -1003 "IP banned until ...", ``error.data.retryAfter``
``error_2010``       refused: 400 / -2010 NEW_ORDER_REJECTED (``order.place`` only)
``backoff_refused``  a request inside a 429/418 ``retryAfter`` window, refused the same way
``dup_event``        an executionReport sent twice
``reorder_event``    an executionReport held back so later events overtake it
==================== ==============================================================================

\* These break Binance's guarantees (each payload once, in order, over TCP): they
model a misbehaving network path or relay, not the venue.

The WS API part is a :class:`WsApiFaults` (``plan.ws_api``), which can also be
used alone: chosen by a profile of :data:`PROFILES` and a seed, handed to
:func:`engine.sim.server.start_simulator` (``ws_api_faults=``) or set on
``SimulatorHandle.ws_api_faults`` before clients connect. Every WS API session
then consults it; without one, sessions behave exactly as before (the hooks are
not on the default path).

WS API faults, per request of the profile's ``methods`` (by default
``order.place`` and ``order.cancel``):

* ``drop`` -- the venue processes the request, the response is never sent (its
  user-data events are);
* ``delay`` -- the venue processes the request, the response is sent
  ``delay_s`` later (set it past the client's timeout);
* ``cut_before`` -- the connection is closed as the request arrives: the venue
  never processed it (a ``newClientOrderId`` is not even counted as received);
* ``cut_after`` -- the venue processes the request, then the connection is
  closed before the response and the events it caused are sent;
* ``error_5xx`` -- the venue processes the request successfully, then answers
  ``status 503``, ``-1007`` "Timeout waiting for response from backend server.
  Send status unknown; execution status unknown." (venue-protocols.md 3.2: 5xx
  means the execution status is unknown; 6.1 -1007). A request the venue
  rejected gets its real answer;

and per ``executionReport`` pushed to a client:

* ``dup_events`` -- it is sent twice (the copy after ``reorder_hold_s``);
* ``reorder_events`` -- it is held back ``reorder_hold_s`` so that later events
  overtake it (on the venue, a response and the events of the same change may
  come in either order, 3.6).

Decisions come from ``random.Random(seed)`` (one draw per counted request; a
second generator for events), so a given sequence of requests meets the same
faults. ``max_cuts`` bounds the connection cuts of a run and
``min_requests_between_cuts`` spaces them, so that a client can reconnect and
reconcile between two cuts. Every injected fault is counted in
:attr:`WsApiFaults.injected` and listed in :attr:`WsApiFaults.log` as
``(request number, method, fault, client order id)``.

Error replies (probability 0 in the profiles of :data:`PROFILES`, so those draw
exactly as before): the venue rejects the request **without processing it**
(no order, no event) and answers with Binance's WS API envelope
(venue-protocols.md 3.2, 6.1), ``rateLimits`` included as on a real rejection:

* ``error_1003`` -- status 429, ``-1003`` "Too many requests queued." (no ``data``);
* ``error_429`` -- status 429, ``-1003`` "Too much request weight used; current
  limit is 6000 request weight per 1 MINUTE. ...", ``error.data =
  {"serverTime", "retryAfter"}`` (epoch ms). Until ``retryAfter`` every request
  (any method) is refused with the same reply (``backoff_refused``);
* ``error_1015`` -- status 429, ``-1015`` "Too many new orders; current limit is
  50 orders per 10 SECOND." (no ``data``, as the venue's own example; 6.1 notes
  the docs' inconsistency on ``retryAfter`` for 429s; ``order.place`` only);
* ``error_418`` -- status 418, ``-1003`` "Way too much request weight used; IP
  banned until <ms>. Please use WebSocket Streams for live updates to avoid
  bans.", ``data = {"serverTime", "retryAfter"}`` (the WS API docs' ban
  example); every request until ``retryAfter`` is refused the same way
  (``backoff_refused``; a new connection is not refused: simplification);
* ``error_2010`` -- status 400, ``-2010`` "Account has insufficient balance for
  requested action." or, for a ``LIMIT_MAKER``, "Order would immediately match
  and take." (``order.place`` only).

The backoff window is kept on the server clock (``exchange.server_time_ms()``),
which is what ``retryAfter`` is compared with by clients; refusals are the only
time-dependent decisions (a refused request still consumes its draw, so the
faults met by the n-th request do not depend on timing).
"""
from __future__ import annotations

import dataclasses
import random
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from engine.sim.limits import ORDERS_LIMIT_10S, WEIGHT_LIMIT_1M

if TYPE_CHECKING:
    from engine.sim.streams import Connection, StreamHub

DROP = "drop"
DELAY = "delay"
CUT_BEFORE = "cut_before"
CUT_AFTER = "cut_after"
ERROR_5XX = "error_5xx"
DUP_EVENT = "dup_event"
REORDER_EVENT = "reorder_event"
ERROR_1003 = "error_1003"
ERROR_429 = "error_429"
ERROR_1015 = "error_1015"
ERROR_418 = "error_418"
ERROR_2010 = "error_2010"
BACKOFF_REFUSED = "backoff_refused"
#: Request faults answered with an error reply instead of being processed.
REFUSALS = frozenset((ERROR_1003, ERROR_429, ERROR_1015, ERROR_418, ERROR_2010, BACKOFF_REFUSED))
# Error replies that only make sense for a new order.
_NEW_ORDER_ONLY = frozenset((ERROR_1015, ERROR_2010))

# The 5xx answer (6.1 -1007 TIMEOUT; its status on the WS API is not documented: 503 [derived]).
ERROR_5XX_STATUS = 503
ERROR_5XX_CODE = -1007
ERROR_5XX_MSG = ("Timeout waiting for response from backend server. Send status unknown; "
                 "execution status unknown.")
# SPOT-ERR -1003 / -1015 messages (venue-protocols.md 6.1; the ban text as in the WS API docs' 418 example).
MSG_1003_QUEUED = "Too many requests queued."
MSG_1003_WEIGHT = (f"Too much request weight used; current limit is {WEIGHT_LIMIT_1M} request weight per 1 MINUTE. "
                   "Please use WebSocket Streams for live updates to avoid polling the API.")
MSG_418 = ("Way too much request weight used; IP banned until {until}. "
           "Please use WebSocket Streams for live updates to avoid bans.")
MSG_1015 = f"Too many new orders; current limit is {ORDERS_LIMIT_10S} orders per 10 SECOND."
MSG_2010_BALANCE = "Account has insufficient balance for requested action."
MSG_2010_WOULD_TAKE = "Order would immediately match and take."


@dataclass(frozen=True)
class FaultProfile:
    """Probabilities (per request of ``methods`` / per executionReport) and knobs of the faults.

    Attributes
    ----------
    name : str
    drop, delay, cut_before, cut_after, error_5xx : float
        Probability that a request meets the fault (at most one fault per request).
    delay_s : float
        Delay of a delayed response, s.
    dup_events, reorder_events : float
        Probability that an executionReport is duplicated / held back.
    reorder_hold_s : float
        How long a held-back (or duplicated) event waits, s.
    methods : tuple of str
        Request methods that may meet request faults.
    max_cuts : int or None
        Connection cuts allowed per kind (``cut_before``, ``cut_after``; None: no limit).
    min_requests_between_cuts : int
        Counted requests after a cut before the next cut may happen.
    error_1003, error_429, error_1015, error_418, error_2010 : float
        Probability that a request is refused with that error reply (module docstring);
        ``error_1015`` and ``error_2010`` only hit ``order.place``.
    retry_after_s, ban_s : float
        Backoff after ``error_429`` / ban after ``error_418``, s (server clock).
    delay_max_s : float or None
        If set, a delayed response waits a uniform draw in ``[delay_s, delay_max_s]``.
    """

    name: str = "none"
    drop: float = 0.0
    delay: float = 0.0
    cut_before: float = 0.0
    cut_after: float = 0.0
    error_5xx: float = 0.0
    delay_s: float = 1.0
    dup_events: float = 0.0
    reorder_events: float = 0.0
    reorder_hold_s: float = 0.02
    methods: tuple[str, ...] = ("order.place", "order.cancel")
    max_cuts: int | None = None
    min_requests_between_cuts: int = 200
    error_1003: float = 0.0
    error_429: float = 0.0
    error_1015: float = 0.0
    error_418: float = 0.0
    error_2010: float = 0.0
    retry_after_s: float = 2.0
    ban_s: float = 3.0
    delay_max_s: float | None = None


PROFILES: dict[str, FaultProfile] = {
    "none": FaultProfile("none"),
    "drop": FaultProfile("drop", drop=0.02),
    "delay": FaultProfile("delay", delay=0.02),
    "5xx": FaultProfile("5xx", error_5xx=0.02),
    "reorder": FaultProfile("reorder", dup_events=0.05, reorder_events=0.1),
    "cut-before": FaultProfile("cut-before", cut_before=0.003, max_cuts=4),
    "cut-after": FaultProfile("cut-after", cut_after=0.003, max_cuts=4),
    "chaos": FaultProfile("chaos", drop=0.01, delay=0.01, error_5xx=0.01, cut_before=0.001, cut_after=0.001,
                          dup_events=0.05, reorder_events=0.1, max_cuts=2),
}


class WsApiFaults:
    """The fault plan shared by every WS API session of one simulator.

    Parameters
    ----------
    profile : str or FaultProfile
        A name of :data:`PROFILES` or a profile.
    seed : int
        Seed of the decisions.
    **overrides
        Fields of :class:`FaultProfile` to change (e.g. ``delay_s=2.0``).

    Attributes
    ----------
    enabled : bool
        False stops injecting (requests are still counted, draws still made).
    requests : int
        Requests of the profile's methods seen.
    injected : collections.Counter
        Fault name -> count.
    log : list
        ``(request number, method, fault, client order id)`` per request fault.
    """

    def __init__(self, profile: str | FaultProfile = "none", seed: int = 0, **overrides: Any) -> None:
        p = PROFILES[profile] if isinstance(profile, str) else profile
        if overrides:
            p = dataclasses.replace(p, **overrides)
        self.profile = p
        self.seed = seed
        self.enabled = True
        self._rng = random.Random(seed)
        self._ev_rng = random.Random(seed + 0x9E3779B9)
        # Delay lengths and reject messages: their own generator, so the per-request
        # decisions stay aligned with the request count.
        self._aux_rng = random.Random(seed + 0x51ED270B)
        self.backoff_until_ms = 0
        self._backoff: tuple[str, int] | None = None  # (fault, retryAfter ms)
        self.requests = 0
        self.cuts = 0
        self._cuts_by_kind: Counter[str] = Counter()
        self._since_cut = p.min_requests_between_cuts
        self.injected: Counter[str] = Counter()
        self.log: list[tuple[int, str, str, str]] = []

    def __repr__(self) -> str:
        return f"WsApiFaults({self.profile.name!r}, seed={self.seed}, injected={dict(self.injected)})"

    @property
    def active(self) -> bool:
        """True if the profile injects anything at all."""
        p = self.profile
        return any((p.drop, p.delay, p.cut_before, p.cut_after, p.error_5xx, p.dup_events, p.reorder_events,
                    p.error_1003, p.error_429, p.error_1015, p.error_418, p.error_2010))

    def decide(self, method: str, client_order_id: str = "", now_ms: int | None = None) -> str | None:
        """Return the fault for one request (None: none). One draw per request of ``methods``.

        ``now_ms`` (server clock) enables the backoff of ``error_429`` / ``error_418``:
        inside it every request, of any method, is ``backoff_refused``.
        """
        p = self.profile
        counted = method in p.methods
        u = 1.0
        if counted:
            self.requests += 1
            self._since_cut += 1
            u = self._rng.random()
        if not self.enabled:
            return None
        if now_ms is not None and now_ms < self.backoff_until_ms:
            self.record(BACKOFF_REFUSED, method, client_order_id)
            return BACKOFF_REFUSED
        if not counted:
            return None
        fault = None
        acc = 0.0
        for name, prob in ((CUT_BEFORE, p.cut_before), (CUT_AFTER, p.cut_after), (ERROR_5XX, p.error_5xx),
                           (DROP, p.drop), (DELAY, p.delay), (ERROR_418, p.error_418), (ERROR_429, p.error_429),
                           (ERROR_1003, p.error_1003), (ERROR_1015, p.error_1015), (ERROR_2010, p.error_2010)):
            acc += prob
            if u < acc:
                fault = name
                break
        if fault in _NEW_ORDER_ONLY and method != "order.place":
            return None
        if fault in (ERROR_429, ERROR_418) and now_ms is not None:
            until = now_ms + int(1000 * (p.ban_s if fault == ERROR_418 else p.retry_after_s))
            self.backoff_until_ms = until
            self._backoff = (fault, until)
        if fault in (CUT_BEFORE, CUT_AFTER):
            if (p.max_cuts is not None and self._cuts_by_kind[fault] >= p.max_cuts) \
                    or self._since_cut <= p.min_requests_between_cuts:
                return None
            self.cuts += 1
            self._cuts_by_kind[fault] += 1
            self._since_cut = 0
        if fault is not None:
            self.record(fault, method, client_order_id)
        return fault

    def decide_event(self) -> tuple[bool, bool]:
        """Return ``(duplicate, hold back)`` for one executionReport."""
        p = self.profile
        if not (p.dup_events or p.reorder_events):
            return False, False
        a, b = self._ev_rng.random(), self._ev_rng.random()
        if not self.enabled:
            return False, False
        dup, hold = a < p.dup_events, b < p.reorder_events
        if dup:
            self.injected[DUP_EVENT] += 1
        if hold:
            self.injected[REORDER_EVENT] += 1
        return dup, hold

    def record(self, fault: str, method: str, client_order_id: str = "") -> None:
        """Count one injected request fault."""
        self.injected[fault] += 1
        self.log.append((self.requests, method, fault, client_order_id))

    def next_delay_s(self) -> float:
        """Return how long the next delayed response waits, s."""
        p = self.profile
        if p.delay_max_s is None:
            return p.delay_s
        return p.delay_s + self._aux_rng.random() * max(0.0, p.delay_max_s - p.delay_s)

    def error_reply(self, fault: str, now_ms: int, order_type: str = "") -> tuple[int, dict]:
        """Return ``(status, error body)`` of an error-reply fault (module docstring).

        ``now_ms`` is the server clock (``serverTime`` of ``error.data``); ``order_type``
        the request's ``type`` (a ``LIMIT_MAKER`` may get "would immediately match").
        """
        if fault == BACKOFF_REFUSED and self._backoff is not None:
            fault, until = self._backoff
        else:
            until = self.backoff_until_ms
        if fault == ERROR_429:
            return 429, {"code": -1003, "msg": MSG_1003_WEIGHT, "data": {"serverTime": now_ms, "retryAfter": until}}
        if fault == ERROR_418:
            return 418, {"code": -1003, "msg": MSG_418.format(until=until),
                         "data": {"serverTime": now_ms, "retryAfter": until}}
        if fault == ERROR_1015:
            return 429, {"code": -1015, "msg": MSG_1015}
        if fault == ERROR_2010:
            msg = MSG_2010_BALANCE
            if order_type == "LIMIT_MAKER" and self._aux_rng.random() < 0.5:
                msg = MSG_2010_WOULD_TAKE
            return 400, {"code": -2010, "msg": msg}
        return 429, {"code": -1003, "msg": MSG_1003_QUEUED}


# -- the simulator-wide fault plan -----------------------------------------------------------------
# Names of the faults a FaultPlan counts besides those of WsApiFaults (FaultPlan.injected keys).
STREAM_DROP = "stream_drop"
WS_API_CONN_DROP = "ws_api_conn_drop"
STALL = "stall"
FREEZE = "freeze"
GAP = "gap"
DUP_FRAME = "dup_frame"
REORDER_FRAME = "reorder_frame"
LATENCY_SPIKE = "latency_spike"


@dataclass(frozen=True)
class PlanProfile:
    """Rates of a :class:`FaultPlan`.

    Scheduled faults are timed by the **market clock** (the exchange time of the
    events played, :attr:`engine.sim.market.VenueMarket.event_time_ms`): the
    interval between two occurrences is a uniform draw in ``[0.5, 1.5]`` times the
    mean, and durations are market time too, so a replay sped up k times meets the
    same faults k times faster. Per-frame faults are counted per payload published.
    Latency is a network delay: wall-clock ms.

    Attributes
    ----------
    name : str
    stream_drop_every_s : float or None
        Mean market time between two drops of every market-stream connection, s.
    ws_api_drop_every_s : float or None
        Mean market time between two drops of every WS API connection, s (not tied to
        a request; see also ``ws_api.cut_before`` / ``cut_after``).
    abrupt_share : float
        Share of drops that abort the TCP connection without a CLOSE frame (the rest
        send CLOSE 1001 "going away").
    stall_every_s : float or None
        Mean market time between two stalls of the market-stream connections open at
        that moment, s (a connection opened during a stall is not stalled).
    stall_s : (float, float)
        Range of a stall's duration, market s.
    freeze_share : float
        Share of stalls that freeze the whole connection (``freeze``: data, pings and
        pongs are held and delivered late, so client pings go unanswered); the others
        (``stall``) stop the data only and lose it, pings are still answered.
    latency_every_s : float or None
        Mean market time between two latency spikes, s.
    latency_s : (float, float)
        Range of a spike's duration, market s.
    latency_ms : (int, int)
        Range of the delay added to every frame of every connection open when the spike
        starts (streams and WS API), wall ms.
    gap : float
        Probability that a diff-depth payload is not sent (a sequence gap).
    dup : float
        Probability that a stream payload is sent twice.
    reorder : float
        Probability that a stream payload is held back and sent after the next payload
        of its stream.
    ws_api : FaultProfile
        Faults of the WS API requests and user-data events (:class:`WsApiFaults`).
    """

    name: str = "none"
    stream_drop_every_s: float | None = None
    ws_api_drop_every_s: float | None = None
    abrupt_share: float = 0.5
    stall_every_s: float | None = None
    stall_s: tuple[float, float] = (2.0, 5.0)
    freeze_share: float = 0.5
    latency_every_s: float | None = None
    latency_s: tuple[float, float] = (1.0, 3.0)
    latency_ms: tuple[int, int] = (50, 300)
    gap: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    ws_api: FaultProfile = FaultProfile("none")


# The default rates. Synthetic BTCUSDT publishes ~10 depth diffs, ~26 trades and ~160
# bookTickers per market second; an engine subscribed to those three streams meets under
# `chaos` roughly 0.35 duplicated + 0.2 reordered frames, 0.02 gaps, 1/90 stream drops,
# 1/80 stalls and 1/60 latency spikes per market second (about 100 faults in 3 minutes),
# plus the WS API faults of its own requests.
PLAN_PROFILES: dict[str, PlanProfile] = {
    "none": PlanProfile("none"),
    # Connections dropped: streams about every 40 s, the WS API about every 90 s and on a
    # few requests (before / after the venue processed them); some responses never come.
    "drops": PlanProfile("drops", stream_drop_every_s=40.0, ws_api_drop_every_s=90.0,
                         ws_api=FaultProfile("drops", drop=0.01, cut_before=0.002, cut_after=0.002, max_cuts=3,
                                             min_requests_between_cuts=100)),
    "stalls": PlanProfile("stalls", stall_every_s=30.0, stall_s=(2.0, 6.0), freeze_share=0.5),
    "gaps": PlanProfile("gaps", gap=0.01),
    "dupes": PlanProfile("dupes", dup=0.01, reorder=0.005,
                         ws_api=FaultProfile("dupes", dup_events=0.05, reorder_events=0.05)),
    # Latency spikes on every connection, and WS API responses 0.5-8 s late (past the
    # engine's default 5 s request timeout for some of them).
    "latency": PlanProfile("latency", latency_every_s=30.0, latency_s=(1.0, 4.0), latency_ms=(50, 500),
                           ws_api=FaultProfile("latency", delay=0.02, delay_s=0.5, delay_max_s=8.0)),
    # Error replies on a fraction of order.place / order.cancel; 418 bans are rare and short.
    "errors": PlanProfile("errors", ws_api=FaultProfile(
        "errors", error_5xx=0.01, error_1003=0.005, error_429=0.005, error_1015=0.01, error_418=0.001,
        error_2010=0.02, retry_after_s=2.0, ban_s=3.0)),
    "chaos": PlanProfile(
        "chaos", stream_drop_every_s=90.0, ws_api_drop_every_s=150.0, stall_every_s=80.0, stall_s=(1.5, 5.0),
        latency_every_s=60.0, latency_s=(1.0, 3.0), latency_ms=(20, 300), gap=0.002, dup=0.0015, reorder=0.001,
        ws_api=FaultProfile(
            "chaos", drop=0.003, delay=0.003, delay_s=0.5, delay_max_s=8.0, error_5xx=0.003, cut_before=0.001,
            cut_after=0.001, max_cuts=2, min_requests_between_cuts=200, dup_events=0.02, reorder_events=0.03,
            error_1003=0.002, error_429=0.002, error_1015=0.002, error_418=0.0005, error_2010=0.005,
            retry_after_s=2.0, ban_s=3.0)),
}

_PLAN_FIELDS = frozenset(f.name for f in dataclasses.fields(PlanProfile)) - {"name"}
_WS_FIELDS = frozenset(f.name for f in dataclasses.fields(FaultProfile)) - {"name"}

# Seeds of the independent generators of a plan (scheduled kinds and per-frame decisions):
# each kind draws from its own stream so that one kind's activity never shifts another's.
_SCHEDULES = (STREAM_DROP, WS_API_CONN_DROP, STALL, LATENCY_SPIKE)


class FaultPlan:
    """Deterministic faults of one simulator run: market streams and WS API.

    Parameters
    ----------
    config : PlanProfile or str
        A profile or a name of :data:`PLAN_PROFILES`.
    seed : int
        Same seed + same market events (+ same client requests) = same faults.
    ws_api : WsApiFaults, optional
        Use this WS API plan instead of one built from ``config.ws_api``.
    **overrides
        Fields of :class:`PlanProfile`, or of :class:`FaultProfile` (applied to ``ws_api``).

    Attributes
    ----------
    config : PlanProfile
    seed : int
    ws_api : WsApiFaults
        The WS API part; its counts are included in :attr:`injected`.
    log : list of (int, str, str)
        ``(market time ms, fault, detail)`` per stream-side fault injected.

    Notes
    -----
    Duplicated and reordered stream frames break Binance's guarantees (the venue sends
    each payload once, in order, over TCP): they model a misbehaving network path or
    relay (e.g. a proxy replaying after a reconnect). A correct client still copes: a
    duplicated or older diff is stale by its ``u``, a later one reveals a gap. Gaps
    model a diff lost by the venue's publisher. A plan serves one simulator.
    """

    def __init__(self, config: PlanProfile | str = "none", seed: int = 0, *, ws_api: WsApiFaults | None = None,
                 **overrides: Any) -> None:
        if isinstance(config, str):
            config = _plan_profile(config)
        plan_kw = {k: v for k, v in overrides.items() if k in _PLAN_FIELDS}
        ws_kw = {k: v for k, v in overrides.items() if k in _WS_FIELDS and k not in _PLAN_FIELDS}
        unknown = set(overrides) - set(plan_kw) - set(ws_kw)
        if unknown:
            raise TypeError(f"unknown fault plan settings: {', '.join(sorted(unknown))}")
        if plan_kw:
            config = dataclasses.replace(config, **plan_kw)
        if ws_kw:
            config = dataclasses.replace(config, ws_api=dataclasses.replace(config.ws_api, **ws_kw))
        self.config = config
        self.seed = seed
        self.ws_api = ws_api if ws_api is not None else WsApiFaults(config.ws_api, seed)
        self.log: list[tuple[int, str, str]] = []
        self._counts: Counter[str] = Counter()
        self._frame_rng = random.Random(seed * 1_000_003 + 17)
        self._rngs = {k: random.Random(seed * 1_000_003 + 101 + i) for i, k in enumerate(_SCHEDULES)}
        self._clock: Callable[[], int | None] | None = None
        self._next: dict[str, float] = {}
        self._started = False
        self._stall_end: int | None = None
        self._stalled: list[tuple[Connection, bool]] = []
        self._latency_end: int | None = None
        self._delayed: list[Connection] = []
        self._depth_stream: dict[str, bool] = {}

    @classmethod
    def profile(cls, name: str, seed: int = 0, **overrides: Any) -> "FaultPlan":
        """Return the plan of the profile ``name`` (:data:`PLAN_PROFILES`) with ``seed``.

        Raises
        ------
        ValueError
            Unknown profile name (the message lists the known ones).
        """
        return cls(_plan_profile(name), seed, **overrides)

    def __repr__(self) -> str:
        return f"FaultPlan({self.config.name!r}, seed={self.seed}, injected={self.injected})"

    # -- results ---------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The profile's name."""
        return self.config.name

    @property
    def injected(self) -> dict[str, int]:
        """Faults actually injected, by type name (stream side and WS API)."""
        out = dict(self._counts)
        for k, v in self.ws_api.injected.items():
            out[k] = out.get(k, 0) + v
        return {k: v for k, v in sorted(out.items()) if v}

    @property
    def total(self) -> int:
        """Number of faults injected."""
        return sum(self.injected.values())

    @property
    def streams_active(self) -> bool:
        """True if the plan injects anything on the stream server (streams or scheduled drops)."""
        c = self.config
        return bool(c.gap or c.dup or c.reorder or c.stream_drop_every_s or c.ws_api_drop_every_s
                    or c.stall_every_s or c.latency_every_s)

    @property
    def active(self) -> bool:
        """True if the plan injects anything at all."""
        return self.streams_active or self.ws_api.active

    # -- wiring (engine.sim.server / engine.sim.streams) -----------------------------------------------
    def bind(self, clock_ms: Callable[[], int | None]) -> None:
        """Time scheduled faults by ``clock_ms()`` (the market clock, ms; None: not started)."""
        self._clock = clock_ms

    def _record(self, kind: str, now_ms: int, detail: str, n: int = 1) -> None:
        self._counts[kind] += n
        self.log.append((now_ms, kind, detail))

    def _is_depth(self, stream: str) -> bool:
        # Diff-depth streams only (not the partial-depth <sym>@depth5 ... snapshots).
        d = self._depth_stream.get(stream)
        if d is None:
            at = stream.find("@depth")
            d = self._depth_stream[stream] = at > 0 and stream[at + 6:at + 7] in ("", "@")
        return d

    def frame_action(self, stream: str) -> str | None:
        """Draw the fault of one published payload: None, ``gap``, ``dup_frame`` or ``reorder_frame``.

        One draw per payload published, subscribed or not. Not counted here: the
        stream hub counts what it applied (:meth:`count_frame`).
        """
        c = self.config
        if not (c.gap or c.dup or c.reorder):
            return None
        u = self._frame_rng.random()
        if self._is_depth(stream):
            if u < c.gap:
                return GAP
            u -= c.gap
        if u < c.dup:
            return DUP_FRAME
        if u < c.dup + c.reorder:
            return REORDER_FRAME
        return None

    def count_frame(self, kind: str, stream: str) -> None:
        """Count one per-frame fault applied to ``stream``."""
        now = self._clock() if self._clock is not None else None
        self._record(kind, now or 0, stream)

    def tick(self, hub: "StreamHub") -> None:
        """Start and end the scheduled faults due by the market clock (called per publish)."""
        now = self._clock() if self._clock is not None else None
        if now is None:
            return
        c = self.config
        if not self._started:
            self._started = True
            for kind, every in ((STREAM_DROP, c.stream_drop_every_s), (WS_API_CONN_DROP, c.ws_api_drop_every_s),
                                (STALL, c.stall_every_s), (LATENCY_SPIKE, c.latency_every_s)):
                if every:
                    self._next[kind] = now + self._interval_ms(kind, every)
        if self._stall_end is not None and now >= self._stall_end:
            self._end_stall()
        if self._latency_end is not None and now >= self._latency_end:
            self._end_latency()
        if not self._next:
            return
        for kind, at in list(self._next.items()):
            if now < at:
                continue
            rng = self._rngs[kind]
            if kind == STREAM_DROP or kind == WS_API_CONN_DROP:
                self._drop(hub, kind, now, rng)
                every = c.stream_drop_every_s if kind == STREAM_DROP else c.ws_api_drop_every_s
            elif kind == STALL:
                self._stall(hub, now, rng)
                every = c.stall_every_s
            else:
                self._latency(hub, now, rng)
                every = c.latency_every_s
            assert every
            # Rescheduled from now: a long pause of the market does not release a burst.
            self._next[kind] = now + self._interval_ms(kind, every)

    def _interval_ms(self, kind: str, every_s: float) -> int:
        return int(every_s * 1000.0 * (0.5 + self._rngs[kind].random()))

    def _drop(self, hub: "StreamHub", kind: str, now: int, rng: random.Random) -> None:
        abrupt = rng.random() < self.config.abrupt_share
        conns = hub.stream_connections() if kind == STREAM_DROP else hub.other_connections()
        for conn in conns:
            conn.drop(abrupt)
        if conns:
            self._record(kind, now, "abort" if abrupt else "close 1001", len(conns))

    def _stall(self, hub: "StreamHub", now: int, rng: random.Random) -> None:
        c = self.config
        freeze = rng.random() < c.freeze_share
        dur = c.stall_s[0] + rng.random() * (c.stall_s[1] - c.stall_s[0])
        if self._stall_end is not None:
            return  # one stall at a time
        conns = hub.stream_connections()
        if not conns:
            return
        for conn in conns:
            if freeze:
                conn.hold()
            else:
                conn.data_stalled = True
            self._stalled.append((conn, freeze))
        self._stall_end = now + int(dur * 1000.0)
        self._record(FREEZE if freeze else STALL, now, f"{dur:.3f} s", len(conns))

    def _end_stall(self) -> None:
        for conn, freeze in self._stalled:
            if freeze:
                conn.release()
            else:
                conn.data_stalled = False
        self._stalled.clear()
        self._stall_end = None

    def _latency(self, hub: "StreamHub", now: int, rng: random.Random) -> None:
        c = self.config
        dur = c.latency_s[0] + rng.random() * (c.latency_s[1] - c.latency_s[0])
        ms = c.latency_ms[0] + int(rng.random() * (c.latency_ms[1] - c.latency_ms[0] + 1))
        if self._latency_end is not None:
            return
        conns = hub.connections
        if not conns:
            return
        for conn in conns:
            conn.set_delay(ms / 1000.0)
            self._delayed.append(conn)
        self._latency_end = now + int(dur * 1000.0)
        self._record(LATENCY_SPIKE, now, f"{ms} ms for {dur:.3f} s", len(conns))

    def _end_latency(self) -> None:
        for conn in self._delayed:
            conn.set_delay(0.0)
        self._delayed.clear()
        self._latency_end = None

    def finish(self) -> None:
        """End running stalls and latency spikes (the market has ended)."""
        if self._stall_end is not None:
            self._end_stall()
        if self._latency_end is not None:
            self._end_latency()


def _plan_profile(name: str) -> PlanProfile:
    try:
        return PLAN_PROFILES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown fault profile {name!r}; profiles: {', '.join(PLAN_PROFILES)}") from None


def make_faults(spec: Any, seed: int = 0) -> WsApiFaults | None:
    """Return a :class:`WsApiFaults` from a profile name, a profile, an instance, or None."""
    if spec is None or isinstance(spec, WsApiFaults):
        return spec
    return WsApiFaults(spec, seed)


def make_plan(spec: Any, seed: int = 0) -> FaultPlan | None:
    """Return a :class:`FaultPlan` from a profile name (:data:`PLAN_PROFILES`), a profile, a plan, or None."""
    if spec is None or isinstance(spec, FaultPlan):
        return spec
    if isinstance(spec, str):
        return FaultPlan.profile(spec, seed)
    if isinstance(spec, PlanProfile):
        return FaultPlan(spec, seed)
    raise TypeError(f"cannot make a fault plan from {spec!r}")


__all__ = ["BACKOFF_REFUSED", "CUT_AFTER", "CUT_BEFORE", "DELAY", "DROP", "DUP_EVENT", "DUP_FRAME", "ERROR_1003",
           "ERROR_1015", "ERROR_2010", "ERROR_418", "ERROR_429", "ERROR_5XX", "ERROR_5XX_CODE", "ERROR_5XX_MSG",
           "ERROR_5XX_STATUS", "FREEZE", "FaultPlan", "FaultProfile", "GAP", "LATENCY_SPIKE", "PLAN_PROFILES",
           "PROFILES", "PlanProfile", "REFUSALS", "REORDER_EVENT", "REORDER_FRAME", "STALL", "STREAM_DROP",
           "WS_API_CONN_DROP", "WsApiFaults", "make_faults", "make_plan"]
