"""Client order ids: instance prefix + restart epoch + monotonic counter.

Format (venue-protocols.md section 5, spot ``^[a-zA-Z0-9-_]{1,36}$``)::

    <prefix>-<epoch base36>-<counter base36>

* ``prefix``: 1..10 ASCII letters/digits naming the engine instance, so two
  instances trading one account never collide (hummingbot#3970 is what happens
  without it);
* ``epoch``: the restart epoch, by default the wall clock in ms at start-up
  (8 base-36 digits until 2059), made strictly increasing across restarts when
  a state file is given (:func:`next_restart_epoch`), so a restarted engine
  never reissues an id of a previous run even if the clock stepped back;
* ``counter``: 0, 1, 2, ... within one run.

The id never contains anything but ``[A-Za-z0-9-]``, which is valid on spot and
on USD-M (``^[.A-Z:/a-z0-9_-]{1,36}$``). :class:`ClientOrderIdGenerator` refuses
to produce an id longer than 36 characters rather than truncate it (truncation
could collide).
"""
from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

# Binance spot's client-id format (venue-protocols.md section 5, SPOT-FIX / ISS-PR34).
CLIENT_ORDER_ID_RE = re.compile(r"^[a-zA-Z0-9\-_]{1,36}$")
MAX_LEN = 36
# Prefix: alphanumeric so that '-' unambiguously separates the three parts.
_PREFIX_RE = re.compile(r"^[A-Za-z0-9]{1,10}$")
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def base36(n: int) -> str:
    """Return ``n`` (>= 0) in lower-case base 36."""
    if n < 0:
        raise ValueError("base36 of a negative number")
    if n == 0:
        return "0"
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(_DIGITS[r])
    return "".join(reversed(out))


def is_valid_client_order_id(cid: str) -> bool:
    """Return True if ``cid`` matches the spot format ``^[a-zA-Z0-9-_]{1,36}$`` (section 5)."""
    return CLIENT_ORDER_ID_RE.match(cid) is not None and cid.isascii()


def next_restart_epoch(state_path: str | os.PathLike[str] | None = None, now_ms: int | None = None) -> int:
    """Return this run's restart epoch (ms since the Unix epoch).

    Parameters
    ----------
    state_path : path, optional
        File keeping the last epoch handed out. When given, the result is
        ``max(now_ms, last + 1)`` and is written back atomically, so epochs are
        strictly increasing across restarts even if the wall clock went back.
        Without it the epoch is the wall clock (ms), unique unless two runs of
        the same prefix start within the same millisecond.
    now_ms : int, optional
        Wall clock in ms (default ``time.time_ns() // 1_000_000``).
    """
    now = time.time_ns() // 1_000_000 if now_ms is None else int(now_ms)
    if state_path is None:
        return now
    p = Path(state_path)
    last = -1
    try:
        text = p.read_text().strip()
        last = int(text) if text else -1
    except FileNotFoundError:
        pass
    except ValueError:
        raise ValueError(f"restart-epoch state file {p} does not hold an integer") from None
    epoch = max(now, last + 1)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=p.name, dir=p.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(f"{epoch}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return epoch


class ClientOrderIdGenerator:
    """Issue never-repeating client order ids for one engine run.

    Parameters
    ----------
    prefix : str
        Instance name, 1..10 ASCII letters or digits.
    epoch : int
        Restart epoch (>= 0), see :func:`next_restart_epoch`.
    start : int
        First counter value (default 0).

    Raises
    ------
    ValueError
        On a bad prefix or epoch, or when an id would exceed 36 characters.
    """

    __slots__ = ("prefix", "epoch", "_head", "_counter")

    def __init__(self, prefix: str, epoch: int, start: int = 0) -> None:
        if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix) or not prefix.isascii():
            raise ValueError(f"client order id prefix must be 1..10 ASCII letters/digits, got {prefix!r}")
        if epoch < 0 or start < 0:
            raise ValueError("epoch and start must be >= 0")
        self.prefix = prefix
        self.epoch = int(epoch)
        self._head = f"{prefix}-{base36(self.epoch)}-"
        if len(self._head) + 1 > MAX_LEN:
            raise ValueError("prefix and epoch leave no room for the counter")
        self._counter = int(start)

    def __repr__(self) -> str:
        return f"ClientOrderIdGenerator(head={self._head!r}, issued={self._counter})"

    @property
    def issued(self) -> int:
        """Number of ids issued so far (the next counter value when ``start`` was 0)."""
        return self._counter

    def next(self) -> str:
        """Return a new client order id (never returned before by any generator of this prefix+epoch)."""
        cid = self._head + base36(self._counter)
        if len(cid) > MAX_LEN:
            raise ValueError("client order id counter exhausted (id would exceed 36 characters)")
        self._counter += 1
        return cid

    __call__ = next

    def owns(self, cid: str) -> bool:
        """Return True if ``cid`` was (or could have been) issued by this run's generator."""
        return cid.startswith(self._head)


def parse_client_order_id(cid: str) -> tuple[str, int, int] | None:
    """Split an id of this module's format into ``(prefix, epoch, counter)``; None if foreign."""
    parts = cid.split("-")
    if len(parts) != 3 or not _PREFIX_RE.match(parts[0]):
        return None
    try:
        return parts[0], int(parts[1], 36), int(parts[2], 36)
    except ValueError:
        return None


__all__ = ["CLIENT_ORDER_ID_RE", "ClientOrderIdGenerator", "base36", "is_valid_client_order_id",
           "next_restart_epoch", "parse_client_order_id"]
