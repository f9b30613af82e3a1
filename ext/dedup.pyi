"""Type stub of ext.dedup (Cython): fixed-capacity FIFO ring of recent clientOrderIds."""
from typing import Final

MAX_CID_LEN: Final[int]  # 36: venue limit on clientOrderId length
MAX_CAPACITY: Final[int]  # 2**24

class DedupRing:
    """O(1) insert / lookup / oldest-eviction of clientOrderIds (1..36 ASCII chars) with a state per id."""

    def __init__(self, capacity: int) -> None: ...
    @property
    def capacity(self) -> int:
        """Number of ids remembered, fixed at construction."""
    @property
    def inserts(self) -> int:
        """Successful inserts since construction."""
    @property
    def refused(self) -> int:
        """Inserts refused because the id was already in the ring."""
    @property
    def evictions(self) -> int:
        """Oldest entries dropped to make room (FIFO by insertion)."""
    def insert(self, cid: str, state: int, payload: object = None) -> bool:
        """Insert (evicting the oldest if full); False and ``refused += 1`` if ``cid`` is in the ring."""
    def contains(self, cid: str) -> bool: ...
    def get_state(self, cid: str) -> int:
        """State code of ``cid``, or -1 if absent."""
    def get_payload(self, cid: str) -> object | None:
        """Payload of ``cid``, or None if absent."""
    def set_state(self, cid: str, state: int) -> bool:
        """Set the state code; False if absent. Does not change the entry's age."""
    def set_payload(self, cid: str, payload: object) -> bool:
        """Set the payload; False if absent."""
    def oldest(self) -> str | None:
        """The next id to be evicted, or None if empty."""
    def __len__(self) -> int: ...
    def __contains__(self, cid: str) -> bool: ...
