"""Read and write recordings in the ``<local receive time> <raw JSON>`` line format.

This is the format of hftbacktest's collector (``shared/data/hftbacktest``) and
mm-engine's own recording format: one frame per line, the local receive time as
an integer (19 digits: ns since the epoch; 16 digits: µs, converted to ns here),
one space, then the frame exactly as received. Files may be gzip-compressed
(detected by magic bytes, not by name). REST depth snapshots are stored as their
raw body with no combined-stream envelope.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator, NamedTuple

_GZIP_MAGIC = b"\x1f\x8b"


class RecordingError(ValueError):
    """A recording line cannot be split into timestamp and frame."""


class Record(NamedTuple):
    """One recorded frame.

    Attributes
    ----------
    ts_local_ns : int
        Local receive time, ns since the epoch (µs files are scaled by 1000).
    frame : bytes
        The frame as received, without the trailing newline.
    source : str
        ``<file>:<line>`` (1-based) for error reports.
    """

    ts_local_ns: int
    frame: bytes
    source: str


def open_recording(path: str | os.PathLike[str]) -> BinaryIO:
    """Open a recording for binary reading, transparently un-gzipping it."""
    with open(path, "rb") as f:
        head = f.read(2)
    if head == _GZIP_MAGIC:
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def parse_line(line: bytes, source: str = "?") -> Record:
    """Split one recording line. Raises :class:`RecordingError` if malformed."""
    line = line.rstrip(b"\r\n")
    sp = line.find(b" ")
    if sp <= 0:
        raise RecordingError(f"{source}: no '<timestamp> <frame>' separator")
    ts_raw = line[:sp]
    if not ts_raw.isdigit():
        raise RecordingError(f"{source}: timestamp is not an integer")
    ts = int(ts_raw)
    n = len(ts_raw)
    if n == 16:  # microseconds (2023 hftbacktest files)
        ts *= 1000
    elif n != 19:
        raise RecordingError(f"{source}: timestamp has {n} digits, expected 19 (ns) or 16 (µs)")
    return Record(ts, line[sp + 1:], source)


def iter_records(paths: Iterable[str | os.PathLike[str]], errors: list[RecordingError] | None = None) -> Iterator[Record]:
    """Yield the records of one session's files, in the order given.

    Malformed lines are skipped; if ``errors`` is given they are appended to it,
    otherwise :class:`RecordingError` is raised. Empty lines are ignored.
    """
    for p in paths:
        name = Path(p).name
        with open_recording(p) as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield parse_line(line, f"{name}:{i}")
                except RecordingError as e:
                    if errors is None:
                        raise
                    errors.append(e)


class RecordingWriter:
    """Append frames as ``<ns> <frame>`` lines to a gzip (``.gz``) or plain file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        p = Path(path)
        self._f: BinaryIO
        if p.suffix == ".gz":
            self._f = gzip.open(p, "ab")  # type: ignore[assignment]
        else:
            self._f = open(p, "ab")

    def write(self, ts_local_ns: int, frame: bytes) -> None:
        """Write one frame. Raises ``ValueError`` if the frame holds a newline."""
        if b"\n" in frame:
            raise ValueError("frame contains a newline; it cannot be stored one per line")
        self._f.write(b"%d %s\n" % (ts_local_ns, frame))

    def close(self) -> None:
        """Flush and close the file."""
        self._f.close()

    def __enter__(self) -> "RecordingWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def data_dir() -> Path:
    """Return the recorded-data folder.

    ``$MM_DATA_DIR`` if set; otherwise the first ``shared/data`` found beside the
    repository or one of its parent folders (``../shared/data`` in the usual
    layout); otherwise ``../shared/data`` (which may not exist: callers check).
    """
    env = os.environ.get("MM_DATA_DIR")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[1]
    for parent in repo.parents:
        cand = parent / "shared" / "data"
        if cand.is_dir():
            return cand
    return repo.parent / "shared" / "data"


__all__ = ["Record", "RecordingError", "RecordingWriter", "data_dir", "iter_records", "open_recording", "parse_line"]
