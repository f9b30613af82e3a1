"""Deterministic fault injection for the simulator's WebSocket API (``/ws-api/v3``).

A :class:`WsApiFaults` is chosen by a named profile (:data:`PROFILES`) and a
seed, and handed to :func:`engine.sim.server.start_simulator`
(``ws_api_faults=``) or set on ``SimulatorHandle.ws_api_faults`` before clients
connect. Every WS API session then consults it; without one, sessions behave
exactly as before (the hooks are not on the default path).

Faults, per request of the profile's ``methods`` (by default ``order.place`` and
``order.cancel``):

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
"""
from __future__ import annotations

import dataclasses
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

DROP = "drop"
DELAY = "delay"
CUT_BEFORE = "cut_before"
CUT_AFTER = "cut_after"
ERROR_5XX = "error_5xx"
DUP_EVENT = "dup_event"
REORDER_EVENT = "reorder_event"

# The 5xx answer (6.1 -1007 TIMEOUT; its status on the WS API is not documented: 503 [derived]).
ERROR_5XX_STATUS = 503
ERROR_5XX_CODE = -1007
ERROR_5XX_MSG = ("Timeout waiting for response from backend server. Send status unknown; "
                 "execution status unknown.")


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
        return any((p.drop, p.delay, p.cut_before, p.cut_after, p.error_5xx, p.dup_events, p.reorder_events))

    def decide(self, method: str, client_order_id: str = "") -> str | None:
        """Return the fault for one request (None: none). One draw per request of ``methods``."""
        p = self.profile
        if method not in p.methods:
            return None
        self.requests += 1
        self._since_cut += 1
        u = self._rng.random()
        if not self.enabled:
            return None
        fault = None
        acc = 0.0
        for name, prob in ((CUT_BEFORE, p.cut_before), (CUT_AFTER, p.cut_after), (ERROR_5XX, p.error_5xx),
                           (DROP, p.drop), (DELAY, p.delay)):
            acc += prob
            if u < acc:
                fault = name
                break
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


def make_faults(spec: Any, seed: int = 0) -> WsApiFaults | None:
    """Return a :class:`WsApiFaults` from a profile name, a profile, an instance, or None."""
    if spec is None or isinstance(spec, WsApiFaults):
        return spec
    return WsApiFaults(spec, seed)


__all__ = ["CUT_AFTER", "CUT_BEFORE", "DELAY", "DROP", "DUP_EVENT", "ERROR_5XX", "ERROR_5XX_CODE", "ERROR_5XX_MSG",
           "ERROR_5XX_STATUS", "FaultProfile", "PROFILES", "REORDER_EVENT", "WsApiFaults", "make_faults"]
