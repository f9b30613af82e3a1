"""Rate limits of the simulated spot venue: request weight and order counters (venue-protocols.md 3.2, 6.2)."""
from __future__ import annotations

from typing import Callable

from engine.sim.orders import VenueError

# Limits reported in exchangeInfo and responses, and (optionally) enforced (6.2).
WEIGHT_LIMIT_1M = 6000
ORDERS_LIMIT_10S = 50
ORDERS_LIMIT_1D = 160000
# Reported in exchangeInfo only.
RAW_REQUESTS_LIMIT_5M = 300000


class RateCounters:
    """Fixed-window request weight and order counters (venue-protocols.md 3.2, 6.2).

    Windows start at whole minutes / 10 seconds / UTC days of the server clock.
    Limits are reported always and enforced only if ``enforce`` is true.
    """

    def __init__(self, clock_ms: Callable[[], int], enforce: bool = False) -> None:
        self._clock_ms = clock_ms
        self.enforce = enforce
        self._win: dict[str, tuple[int, int]] = {}

    def _count(self, key: str, window_ms: int, add: int) -> int:
        w = self._clock_ms() // window_ms
        cur_w, n = self._win.get(key, (w, 0))
        if cur_w != w:
            n = 0
        n += add
        self._win[key] = (w, n)
        return n

    def weight(self) -> int:
        """Return the request weight used in the current minute."""
        return self._count("w1m", 60_000, 0)

    def add_weight(self, w: int) -> int:
        """Add request weight; return the minute's total."""
        return self._count("w1m", 60_000, w)

    def check_weight(self) -> None:
        """Raise -1003 (429) if the minute's weight is used up and limits are enforced."""
        if self.enforce and self.weight() >= WEIGHT_LIMIT_1M:
            retry = (self._clock_ms() // 60_000 + 1) * 60_000
            raise VenueError(
                -1003,
                f"Too much request weight used; current limit is {WEIGHT_LIMIT_1M} request weight per "
                "1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.",
                429, {"serverTime": self._clock_ms(), "retryAfter": retry},
            )

    def orders(self) -> tuple[int, int]:
        """Return orders placed in the current 10 s and day windows."""
        return self._count("o10s", 10_000, 0), self._count("o1d", 86_400_000, 0)

    def check_order(self) -> None:
        """Raise -1015 (429) if a new order would exceed the order limits and limits are enforced."""
        if not self.enforce:
            return
        n10, n1d = self.orders()
        if n10 >= ORDERS_LIMIT_10S:
            raise VenueError(-1015, f"Too many new orders; current limit is {ORDERS_LIMIT_10S} orders per "
                                    "10 SECOND.", 429)
        if n1d >= ORDERS_LIMIT_1D:
            raise VenueError(-1015, f"Too many new orders; current limit is {ORDERS_LIMIT_1D} orders per DAY.", 429)

    def add_order(self) -> None:
        """Count one placed order."""
        self._count("o10s", 10_000, 1)
        self._count("o1d", 86_400_000, 1)

    def rate_limits(self, with_orders: bool) -> list[dict]:
        """Return the ``rateLimits`` array of a WS API response (3.2)."""
        out = []
        if with_orders:
            n10, n1d = self.orders()
            out.append({"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10,
                        "limit": ORDERS_LIMIT_10S, "count": n10})
            out.append({"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1,
                        "limit": ORDERS_LIMIT_1D, "count": n1d})
        out.append({"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                    "limit": WEIGHT_LIMIT_1M, "count": self.weight()})
        return out


def depth_weight(limit: int) -> int:
    """Return the request weight of a depth request (venue-protocols.md 1.3)."""
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


def exchange_rate_limits() -> list[dict]:
    """Return the ``rateLimits`` array of exchangeInfo (3.4)."""
    return [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": WEIGHT_LIMIT_1M},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": ORDERS_LIMIT_10S},
        {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": ORDERS_LIMIT_1D},
        {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": RAW_REQUESTS_LIMIT_5M},
    ]


__all__ = ["ORDERS_LIMIT_10S", "ORDERS_LIMIT_1D", "RAW_REQUESTS_LIMIT_5M", "RateCounters", "WEIGHT_LIMIT_1M",
           "depth_weight", "exchange_rate_limits"]
