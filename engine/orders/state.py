"""Order states, the pure transition rule, error classification and the dedup ring.

States (Binance's ``X`` values, venue-protocols.md 3.6, plus two local ones)::

    PENDING_NEW  sent, no answer yet                       (local)
    UNKNOWN      sent, outcome in doubt: timeout, 5xx,
                 connection lost, venue duplicate          (local)
    NEW, PARTIALLY_FILLED                                   (venue, open)
    FILLED, CANCELED, REJECTED, EXPIRED                     (venue, terminal)

Rank: PENDING_NEW = UNKNOWN = 0 < NEW = 1 < PARTIALLY_FILLED = 2 < terminal = 3.

The rule (:func:`transition`) is a join on that order: venue evidence moves an
order **forward only**; a terminal state is kept (a venue order reaches exactly
one terminal state, so two different terminal observations cannot both be
venue truth), except that FILLED wins once the fills cover the quantity. A
duplicated observation is a no-op; reordered observations end in the same
state, because the final state is the maximum of what was observed. This is
what makes the state machine correct under the WS API's races: a response and
the executionReport of the same change may come in either order (3.6), and
the user-data stream may repeat or reorder events.

UNKNOWN is entered only locally and only from PENDING_NEW (:func:`to_unknown`):
"no answer" is never a failure (section 6.1: a 5xx, -1006 or -1007 means the
execution status is unknown). Any venue evidence (ack, report, ``order.status``)
supersedes it. A resend of the same client order id moves it back to
PENDING_NEW (:func:`to_resent`).

Error classification of ``order.place`` (:func:`classify_place_error`):

* ``status >= 500``, ``-1006`` UNEXPECTED_RESP, ``-1007`` TIMEOUT: **UNKNOWN**
  outcome (3.2 "5xx = execution status unknown", 6.1);
* ``-2010 "Duplicate order sent."`` (spot) or ``-4116`` (USD-M): **DUPLICATE** --
  an open order with this client id already exists on the venue (section 5), so
  it is ours (ids are never reused, :mod:`engine.orders.ids`): it is adopted by
  querying it, and not counted as a failure;
* anything else (4xx, 429, 418): **REJECTED** -- the venue refused the request
  before the matching engine, nothing exists (6.1).

The dedup ring keeps each order's state code and record keyed by client order
id. ``ext.dedup.DedupRing`` (Cython, fixed memory) is used when built;
:class:`PyDedupRing` is the pure-Python fallback with the same API.
"""
from __future__ import annotations

from typing import Any

# -- state codes (stored in the dedup ring) --------------------------------------------------------
PENDING_NEW = 0
UNKNOWN = 1
NEW = 2
PARTIALLY_FILLED = 3
FILLED = 4
CANCELED = 5
REJECTED = 6
EXPIRED = 7

NAMES = ("PENDING_NEW", "UNKNOWN", "NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "REJECTED", "EXPIRED")
CODES = {n: i for i, n in enumerate(NAMES)}
# Binance X values that are not ours: PENDING_CANCEL is unused on spot (still open);
# EXPIRED_IN_MATCH is an STP expiry (3.6, SPOT-ENUM).
CODES["PENDING_CANCEL"] = NEW
CODES["EXPIRED_IN_MATCH"] = EXPIRED

RANK = (0, 0, 1, 2, 3, 3, 3, 3)
TERMINAL = frozenset((FILLED, CANCELED, REJECTED, EXPIRED))
OPEN = frozenset((PENDING_NEW, UNKNOWN, NEW, PARTIALLY_FILLED))

# -- outcome classes of an error response ------------------------------------------------------------
OUTCOME_REJECTED = "REJECTED"
OUTCOME_DUPLICATE = "DUPLICATE"
OUTCOME_UNKNOWN = "UNKNOWN"

# -2010 message for a client id already used by an open order (venue-protocols.md section 5).
DUPLICATE_ORDER_MSG = "Duplicate order sent."
# USD-M DUPLICATED_CLIENT_ORDER_ID (section 5, ISS-4116).
FUTURES_DUPLICATE_CODE = -4116
# Codes whose execution status is unknown whatever the status (6.1).
UNKNOWN_CODES = frozenset((-1006, -1007))
# order.status / cancel of a client id the venue does not know (6.1).
NO_SUCH_ORDER = -2013
UNKNOWN_ORDER_CANCEL = -2011


def code_of(status: str) -> int:
    """Return the state code of a Binance ``X`` value or one of our names (-1 if unknown)."""
    return CODES.get(status, -1)


def name_of(code: int) -> str:
    """Return the name of a state code."""
    return NAMES[code]


def transition(cur: int, observed: int, filled_all: bool = False) -> int:
    """Return the state after venue evidence ``observed`` on an order in state ``cur``.

    Parameters
    ----------
    cur : int
        Current state code.
    observed : int
        State the venue reported (response, executionReport, ``order.status``);
        PENDING_NEW / UNKNOWN as evidence mean "the venue knows the order" and
        never move an order backwards.
    filled_all : bool
        The order's fills cover its quantity: the result is FILLED.

    Notes
    -----
    Idempotent (``transition(transition(c, o), o) == transition(c, o)``) and,
    over any set of observations taken from one venue history, independent of
    their order: the result is the highest-ranked observation, FILLED when the
    fills are complete.
    """
    if filled_all:
        return FILLED
    if observed < 0 or observed == cur:
        return cur
    if cur in TERMINAL:
        return cur
    if RANK[observed] > RANK[cur]:
        return observed
    if cur == UNKNOWN and RANK[observed] == 0:
        # The venue answered about it (e.g. PENDING_NEW from a status query): no longer in doubt.
        return PENDING_NEW
    return cur


def to_unknown(cur: int) -> int:
    """Return the state after "no answer" (timeout, 5xx, connection lost): UNKNOWN if still PENDING_NEW."""
    return UNKNOWN if cur == PENDING_NEW else cur


def to_resent(cur: int) -> int:
    """Return the state after resending the same client order id: PENDING_NEW if UNKNOWN."""
    return PENDING_NEW if cur == UNKNOWN else cur


def classify_place_error(status: int, code: int, msg: str) -> str:
    """Classify an ``order.place`` error: ``UNKNOWN``, ``DUPLICATE`` or ``REJECTED`` (see the module doc)."""
    if status >= 500 or code in UNKNOWN_CODES:
        return OUTCOME_UNKNOWN
    if (code == -2010 and msg == DUPLICATE_ORDER_MSG) or code == FUTURES_DUPLICATE_CODE:
        return OUTCOME_DUPLICATE
    return OUTCOME_REJECTED


def classify_cancel_error(status: int, code: int, msg: str) -> str:
    """Classify an ``order.cancel`` error: ``UNKNOWN`` (5xx, -1006/-1007) or ``REJECTED``.

    A rejected cancel (``-2011 "Unknown order sent."``) means the order is not
    open on the venue now: it is already terminal or does not exist (6.1).
    """
    if status >= 500 or code in UNKNOWN_CODES:
        return OUTCOME_UNKNOWN
    return OUTCOME_REJECTED


# -- dedup ring --------------------------------------------------------------------------------------
class PyDedupRing:
    """Pure-Python stand-in for ``ext.dedup.DedupRing`` (same API and counters).

    Keys are client order ids; each holds an int state and a payload. A second
    :meth:`insert` of a present id is refused (``refused += 1``). When full, the
    oldest inserted id is evicted (FIFO).

    Parameters
    ----------
    capacity : int
        Number of ids kept (> 0).
    """

    __slots__ = ("capacity", "inserts", "refused", "evictions", "_d")

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = int(capacity)
        self.inserts = 0
        self.refused = 0
        self.evictions = 0
        self._d: dict[str, list] = {}

    def insert(self, cid: str, state: int, payload: object = None) -> bool:
        """Insert ``cid``; return False (and count it refused) if it is present."""
        d = self._d
        if cid in d:
            self.refused += 1
            return False
        if len(d) >= self.capacity:
            del d[next(iter(d))]
            self.evictions += 1
        d[cid] = [state, payload]
        self.inserts += 1
        return True

    def contains(self, cid: str) -> bool:
        """True if ``cid`` is present."""
        return cid in self._d

    def get_state(self, cid: str) -> int:
        """State of ``cid``, -1 if absent."""
        e = self._d.get(cid)
        return -1 if e is None else e[0]

    def get_payload(self, cid: str) -> Any:
        """Payload of ``cid``, None if absent."""
        e = self._d.get(cid)
        return None if e is None else e[1]

    def set_state(self, cid: str, state: int) -> bool:
        """Set the state of a present ``cid``; False if absent."""
        e = self._d.get(cid)
        if e is None:
            return False
        e[0] = state
        return True

    def set_payload(self, cid: str, payload: object) -> bool:
        """Set the payload of a present ``cid``; False if absent."""
        e = self._d.get(cid)
        if e is None:
            return False
        e[1] = payload
        return True

    def len(self) -> int:
        """Number of ids present."""
        return len(self._d)

    def __len__(self) -> int:
        return len(self._d)


def make_ring(capacity: int, prefer_ext: bool = True) -> Any:
    """Return ``ext.dedup.DedupRing(capacity)`` if it is built, else a :class:`PyDedupRing`."""
    if prefer_ext:
        try:
            from ext.dedup import DedupRing  # built in parallel; optional until it lands
        except ImportError:
            pass
        else:
            return DedupRing(capacity)
    return PyDedupRing(capacity)


__all__ = ["CANCELED", "CODES", "DUPLICATE_ORDER_MSG", "EXPIRED", "FILLED", "NAMES", "NEW", "NO_SUCH_ORDER",
           "OPEN", "OUTCOME_DUPLICATE", "OUTCOME_REJECTED", "OUTCOME_UNKNOWN", "PARTIALLY_FILLED", "PENDING_NEW",
           "PyDedupRing", "RANK", "REJECTED", "TERMINAL", "UNKNOWN", "classify_cancel_error",
           "classify_place_error", "code_of", "make_ring", "name_of", "to_resent", "to_unknown", "transition"]
