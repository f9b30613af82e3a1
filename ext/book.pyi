"""Type stub of ext.book (Cython): L2 order book of one symbol in int64 ticks and lots."""
from typing import Final

import numpy as np
import numpy.typing as npt

BID: Final[int]  # 0
ASK: Final[int]  # 1
NO_BID: Final[int]  # -2**63: best_bid() of a book without bids
NO_ASK: Final[int]  # 2**63 - 1: best_ask() of a book without asks
MIN_PRICE_TICKS: Final[int]  # -2**62: lowest price accepted by set/apply
MAX_PRICE_TICKS: Final[int]  # 2**62 - 1: highest price accepted by set/apply

Int64Array = npt.NDArray[np.int64]

class BookIntegrityError(Exception):
    """The book is crossed or its internal state is inconsistent."""

class OrderBook:
    """L2 order book of one symbol; ``side`` is BID (0) or ASK (1)."""

    @property
    def last_update_id(self) -> int:
        """Venue sequence of the last applied update (0 initially)."""
    @property
    def valid(self) -> bool:
        """False until mark_valid(); clear() and invalidate() reset it."""
    @property
    def updates_applied(self) -> int:
        """Number of level updates applied (including no-op deletes)."""
    @property
    def window_ticks(self) -> int:
        """Width of the dense window in ticks."""
    @property
    def window_base_ticks(self) -> int:
        """Price in ticks of the first slot of the dense window."""
    @property
    def recenter_count(self) -> int:
        """Number of times the dense window has moved."""
    def __init__(self, window_ticks: int = 1 << 17) -> None:
        """Raises ValueError unless window_ticks is a multiple of 64 in [64, 2**26]."""
    def set(self, side: int, price_ticks: int, qty_lots: int) -> None:
        """Set one level's absolute qty (0 deletes; absent delete is a no-op).

        Raises ValueError (bad side, qty < 0, price out of range); book unchanged.
        """
    def apply(self, side: int, prices: Int64Array, qtys: Int64Array) -> None:
        """Set many levels of one side; all validated first (ValueError, book unchanged)."""
    def clear(self) -> None:
        """Remove every level; keep last_update_id; valid = False."""
    def mark_valid(self, last_update_id: int) -> None: ...
    def invalidate(self) -> None: ...
    def set_last_update_id(self, u: int) -> None: ...
    def best_bid(self) -> int:
        """Best bid in ticks or NO_BID."""
    def best_ask(self) -> int:
        """Best ask in ticks or NO_ASK."""
    def best_bid_qty(self) -> int:
        """Lots at the best bid, 0 if none."""
    def best_ask_qty(self) -> int:
        """Lots at the best ask, 0 if none."""
    def qty_at(self, side: int, price_ticks: int) -> int:
        """Lots at one price, 0 if no level. Raises ValueError on a bad side."""
    def is_crossed(self) -> bool:
        """Both sides present and best bid >= best ask."""
    def n_levels(self, side: int) -> int:
        """Number of levels of one side. Raises ValueError on a bad side."""
    def n_overflow(self, side: int) -> int:
        """Number of levels of one side kept outside the dense window."""
    def top(self, side: int, n: int) -> tuple[Int64Array, Int64Array]:
        """(prices ticks, qtys lots) of the best min(n, n_levels) levels, best first.

        Raises ValueError on a bad side or n < 0.
        """
    def levels(self, side: int) -> tuple[Int64Array, Int64Array]:
        """(prices ticks, qtys lots) of all levels of one side, best first."""
    def check_integrity(self) -> None:
        """Raise BookIntegrityError if crossed or internally inconsistent."""
