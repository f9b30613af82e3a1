"""Liveness of one connection: our own ping/pong round trips and per-stream data freshness.

A TCP connection can look open while nothing comes through it (a stalled
stream, a half-open socket, a frozen relay). The venue's own pings only tell
*the venue* that we are alive (venue-protocols.md section 2); this module tells
*us*:

* **ping / pong** -- every ``ping_interval_ms`` the client sends a PING frame
  whose 8-byte payload is a sequence number; the matching PONG (which must echo
  the payload, section 2) gives a round-trip time. No matching pong within
  ``pong_timeout_ms`` and the connection is dead. At most one ping is in flight
  (the spot venue allows 5 incoming messages per second, pings included; the
  configured interval is >= 1 s).
* **data freshness** -- per stream kind (depth diffs, trades, bookTicker) the
  monotonic time of the last frame; a kind silent for longer than its
  ``max_staleness`` threshold (0: not checked) makes the connection stale. A
  stalled stream counts as a disconnect: the supervisor drops the connection and
  runs the disconnect path (halt, cancel-all, reconnect, resync).

:meth:`Liveness.check` is driven by the supervisor's monitor timer; the data
path only stores one integer per frame (:meth:`Liveness.on_data`). Times are
``time.monotonic_ns()``.
"""
from __future__ import annotations

import time
from array import array
from typing import Callable, Mapping

from engine.feed.decode import BOOK_TICKER, DEPTH, KIND_NAMES, TRADE

_MS = 1_000_000
# Kinds of engine.feed.decode with a freshness slot (depth, trade, aggTrade, bookTicker).
_N_KINDS = 4


def staleness_ns_of(depth_ms: int, trade_ms: int, book_ticker_ms: int) -> dict[int, int]:
    """Return ``{feed kind: threshold ns}`` for the non-zero thresholds (``[liveness.max_staleness]``)."""
    out = {}
    for kind, ms in ((DEPTH, depth_ms), (TRADE, trade_ms), (BOOK_TICKER, book_ticker_ms)):
        if ms > 0:
            out[kind] = ms * _MS
    return out


class Liveness:
    """Ping/pong and freshness state of one connection.

    Parameters
    ----------
    name : str
        ``streams`` or ``ws-api`` (for reasons and logs).
    ping_interval_ms : int
        Period of our pings, ms (0 disables pinging).
    pong_timeout_ms : int
        Longest wait for the matching pong, ms.
    staleness_ns : mapping, optional
        Feed kind (``engine.feed.decode.DEPTH`` ...) -> longest silence, ns.
    clock_ns : callable
        Monotonic clock, ns (injected in tests).

    Attributes
    ----------
    rtt_ns : array of int64
        Round-trip times of answered pings, ns.
    pings_sent, pongs_matched, pongs_unmatched : int
    dead_reason : str
        Why :meth:`check` declared the connection dead ("" while alive).
    """

    __slots__ = ("name", "ping_interval_ns", "pong_timeout_ns", "staleness", "_clock", "_last", "_seq",
                 "_outstanding", "_outstanding_ns", "_next_ping_ns", "started_ns", "rtt_ns", "pings_sent",
                 "pongs_matched", "pongs_unmatched", "dead_reason")

    def __init__(self, name: str, ping_interval_ms: int, pong_timeout_ms: int,
                 staleness_ns: Mapping[int, int] | None = None,
                 clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self.name = name
        self.ping_interval_ns = ping_interval_ms * _MS
        self.pong_timeout_ns = pong_timeout_ms * _MS
        self.staleness = dict(staleness_ns or {})
        self._clock = clock_ns
        self._last = [0] * _N_KINDS
        self._seq = 0
        self._outstanding: bytes | None = None
        self._outstanding_ns = 0
        self._next_ping_ns = 0
        self.started_ns = 0
        self.rtt_ns = array("q")
        self.pings_sent = 0
        self.pongs_matched = 0
        self.pongs_unmatched = 0
        self.dead_reason = ""

    def __repr__(self) -> str:
        return f"Liveness({self.name}, pings={self.pings_sent}, pongs={self.pongs_matched}, dead={self.dead_reason!r})"

    def start(self, now_ns: int | None = None) -> None:
        """Start the clocks (on connect): every stream counts as fresh now, the first ping is due in one interval."""
        now = self._clock() if now_ns is None else now_ns
        self.started_ns = now
        for i in range(_N_KINDS):
            self._last[i] = now
        self._outstanding = None
        self._next_ping_ns = now + self.ping_interval_ns
        self.dead_reason = ""

    def age_ns(self, now_ns: int | None = None) -> int:
        """Time since :meth:`start`, ns."""
        now = self._clock() if now_ns is None else now_ns
        return now - self.started_ns

    # -- the data path -----------------------------------------------------------------------------
    def on_data(self, kind: int, t_ns: int) -> None:
        """Record a frame of ``kind`` (an ``engine.feed.decode`` constant) received at ``t_ns``."""
        if 0 <= kind < _N_KINDS:
            self._last[kind] = t_ns

    def last_data_ns(self, kind: int) -> int:
        """Monotonic ns of the last frame of ``kind`` (the start time if none yet)."""
        return self._last[kind]

    # -- ping / pong -------------------------------------------------------------------------------
    def ping_due(self, now_ns: int | None = None) -> bytes | None:
        """Return the payload of a ping to send now, or None (not due, one in flight, or pings off).

        The caller must send it; the send time is ``now_ns``.
        """
        if self.ping_interval_ns <= 0 or self._outstanding is not None:
            return None
        now = self._clock() if now_ns is None else now_ns
        if now < self._next_ping_ns:
            return None
        self._seq += 1
        payload = self._seq.to_bytes(8, "big")
        self._outstanding = payload
        self._outstanding_ns = now
        self._next_ping_ns = now + self.ping_interval_ns
        self.pings_sent += 1
        return payload

    def on_pong(self, payload: bytes, t_ns: int | None = None) -> bool:
        """Match a PONG; return True (and record the round trip) if it echoes our ping in flight."""
        if self._outstanding is None or payload != self._outstanding:
            # The venue may send unsolicited pongs; they prove nothing about our pings (section 2).
            self.pongs_unmatched += 1
            return False
        now = self._clock() if t_ns is None else t_ns
        self.rtt_ns.append(now - self._outstanding_ns)
        self._outstanding = None
        self.pongs_matched += 1
        return True

    # -- the verdict -------------------------------------------------------------------------------
    def check(self, now_ns: int | None = None) -> str:
        """Return why the connection must be treated as dead ("" if alive); sets :attr:`dead_reason`."""
        if self.dead_reason:
            return self.dead_reason
        now = self._clock() if now_ns is None else now_ns
        if self._outstanding is not None and now - self._outstanding_ns > self.pong_timeout_ns:
            self.dead_reason = (f"{self.name}: no pong within {self.pong_timeout_ns // _MS} ms "
                                f"(ping sent {(now - self._outstanding_ns) // _MS} ms ago)")
            return self.dead_reason
        for kind, limit in self.staleness.items():
            silent = now - self._last[kind]
            if silent > limit:
                self.dead_reason = (f"{self.name}: {KIND_NAMES[kind]} stream stale "
                                    f"({silent // _MS} ms without data, limit {limit // _MS} ms)")
                return self.dead_reason
        return ""


__all__ = ["Liveness", "staleness_ns_of"]
