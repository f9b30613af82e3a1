"""Frame decoding glue: one msgspec pass per frame, routed by stream name.

A combined-stream frame starts with ``{"stream":"<name>"``; the name is read
from the bytes and selects a typed envelope decoder created once per payload
type, so the frame is parsed exactly once. Bare frames (raw ``/ws/<stream>``
payloads, REST snapshot bodies in recordings, control replies) are told apart
by their first key, with a small probe decode as the fallback.

Every failure raises a :class:`FrameError` subclass or a msgspec error; use
:func:`classify_error` to turn it into a counter key.
"""
from __future__ import annotations

from typing import Any

import msgspec

from ext.parsers import BadLevelsError, DecodeError, MalformedNumberError, NegativeNumberError, OffGridError
from engine.feed import messages as m

# Message kinds returned by FrameDecoder.decode.
DEPTH = 0
TRADE = 1
AGG_TRADE = 2
BOOK_TICKER = 3
SNAPSHOT = 4
CONTROL = 5
IGNORED = 6

KIND_NAMES = ("depth", "trade", "aggTrade", "bookTicker", "snapshot", "control", "ignored")

# Binance stream types that exist but carry nothing the engine uses: counted, not errors.
_IGNORED_STREAMS = (b"markPrice", b"kline_", b"miniTicker", b"ticker", b"avgPrice", b"forceOrder",
                    b"depth5", b"depth10", b"depth20", b"indexPrice", b"compositeIndex", b"contractInfo")

_STREAM_PREFIX = b'{"stream":"'
_DEPTH_SPEEDS = frozenset((b"", b"@100ms", b"@0ms", b"@250ms", b"@500ms", b"@1000ms"))


class FrameError(ValueError):
    """A frame that is valid JSON but not a message mm-engine understands."""


class UnknownStreamError(FrameError):
    """A combined-stream frame names a stream type we do not decode."""


class UnexpectedEventError(FrameError):
    """A payload's event type ``e`` does not match its stream."""


def classify_error(exc: BaseException) -> str:
    """Map a decoding exception to a stable counter key.

    Keys: ``wrong_type``, ``malformed_json``, ``unknown_stream``, ``unexpected_event``,
    ``off_grid``, ``negative_number``, ``malformed_number``, ``bad_frame``.
    """
    if isinstance(exc, (msgspec.ValidationError, BadLevelsError)):
        return "wrong_type"
    if isinstance(exc, (msgspec.DecodeError, UnicodeDecodeError)):
        return "malformed_json"
    if isinstance(exc, UnknownStreamError):
        return "unknown_stream"
    if isinstance(exc, UnexpectedEventError):
        return "unexpected_event"
    if isinstance(exc, OffGridError):
        return "off_grid"
    if isinstance(exc, NegativeNumberError):
        return "negative_number"
    if isinstance(exc, MalformedNumberError):
        return "malformed_number"
    return "bad_frame"


# msgspec raises UnicodeDecodeError for invalid UTF-8 inside a JSON string.
DECODE_ERRORS = (msgspec.DecodeError, UnicodeDecodeError, FrameError, DecodeError)


def stream_kind(name: bytes | str) -> int:
    """Return the message kind of a stream name such as ``btcusdt@depth@100ms``.

    Raises :class:`UnknownStreamError` for anything else (partial-depth
    ``@depth5`` streams carry no update ids and are not supported).
    """
    b = name.encode() if isinstance(name, str) else name
    at = b.find(b"@")
    if at <= 0:
        raise UnknownStreamError(f"unknown stream {b[:64]!r}")
    rest = b[at + 1:]
    if rest.startswith(b"depth") and rest[5:] in _DEPTH_SPEEDS:
        return DEPTH
    if rest == b"trade":
        return TRADE
    if rest == b"aggTrade":
        return AGG_TRADE
    if rest == b"bookTicker":
        return BOOK_TICKER
    if rest.startswith(_IGNORED_STREAMS):
        return IGNORED
    raise UnknownStreamError(f"unknown stream {b[:64]!r}")


class FrameDecoder:
    """Decode raw frames into ``(kind, struct)`` pairs.

    ``kind`` is one of DEPTH, TRADE, AGG_TRADE, BOOK_TICKER, SNAPSHOT, CONTROL;
    the struct is the matching type of :mod:`engine.feed.messages` (``Probe`` for
    CONTROL). Raises msgspec.DecodeError (malformed JSON), msgspec.ValidationError
    (wrong field types) or :class:`FrameError`.
    """

    def __init__(self) -> None:
        J = msgspec.json.Decoder
        self._env = {
            DEPTH: J(m.DepthEnvelope),
            TRADE: J(m.TradeEnvelope),
            AGG_TRADE: J(m.AggTradeEnvelope),
            BOOK_TICKER: J(m.BookTickerEnvelope),
        }
        self._bare = {
            DEPTH: J(m.DepthUpdate),
            TRADE: J(m.Trade),
            AGG_TRADE: J(m.AggTrade),
            BOOK_TICKER: J(m.BookTicker),
            SNAPSHOT: J(m.DepthSnapshot),
        }
        self._raw_env = J(m.RawEnvelope)
        self._probe = J(m.Probe)
        self._routes: dict[bytes, tuple[int, Any]] = {}
        self._events = {b"depthUpdate": DEPTH, b"trade": TRADE, b"aggTrade": AGG_TRADE, b"bookTicker": BOOK_TICKER}

    def _route(self, name: bytes) -> tuple[int, Any]:
        kind = stream_kind(name)
        if len(self._routes) < 4096:  # bound the cache against hostile stream names
                self._routes[name] = (kind, self._env.get(kind))
        return kind, self._env.get(kind)

    def decode(self, frame: bytes) -> tuple[int, Any]:
        """Decode one frame. See the class docstring for the result and errors."""
        if frame.startswith(_STREAM_PREFIX):
            end = frame.find(b'"', 11)
            name = frame[11:end]
            route = self._routes.get(name)
            if route is None:
                route = self._route(name)
            kind = route[0]
            if kind == IGNORED:
                return IGNORED, None
            msg = route[1].decode(frame).data
            if kind == DEPTH and msg.event != "depthUpdate":
                raise UnexpectedEventError(f"stream {name!r} carried event {msg.event!r}")
            return kind, msg
        return self._decode_other(frame)

    def _decode_other(self, frame: bytes) -> tuple[int, Any]:
        s = frame.lstrip()
        if s.startswith(b'{"lastUpdateId"'):
            return SNAPSHOT, self._bare[SNAPSHOT].decode(frame)
        if s.startswith(b'{"e":"'):
            end = s.find(b'"', 6)
            kind = self._events.get(s[6:end])
            if kind is None:
                raise UnexpectedEventError(f"unknown event type {s[6:end][:32]!r}")
            return kind, self._bare[kind].decode(frame)
        if s.startswith(b'{"stream"'):
            env = self._raw_env.decode(frame)
            kind = stream_kind(env.stream)
            if kind == IGNORED:
                return IGNORED, None
            msg = self._bare[kind].decode(env.data)
            if kind == DEPTH and msg.event != "depthUpdate":
                raise UnexpectedEventError(f"stream {env.stream!r} carried event {msg.event!r}")
            return kind, msg
        probe = self._probe.decode(frame)
        if probe.lastUpdateId is not None:
            return SNAPSHOT, self._bare[SNAPSHOT].decode(frame)
        if probe.e is not None:
            kind = self._events.get(probe.e.encode())
            if kind is None:
                raise UnexpectedEventError(f"unknown event type {probe.e[:32]!r}")
            return kind, self._bare[kind].decode(frame)
        if probe.u is not None and probe.B is not None:
            return BOOK_TICKER, self._bare[BOOK_TICKER].decode(frame)
        if probe.id is not None or probe.result is not None:
            return CONTROL, probe
        raise FrameError("frame is neither a known stream payload nor a control reply")
