"""Engine configuration: one TOML file, validated into frozen msgspec Structs.

The file is parsed with the standard library's :mod:`tomllib` and converted
with :func:`msgspec.convert` into :class:`Config`. Every table forbids unknown
keys, every value is range-checked, and every error is a :class:`ConfigError`
whose message starts with the dotted key at fault::

    risk.max_position_steps: expected int >= 0, got -1
    venue.ws_api_url: must start with ws:// or wss://, got 'http://example.com'
    strategy.spread: unknown key (allowed: half_spread_ticks, requote_ticks, ...)

Rules worth knowing:

* Every table and key is optional; a missing one takes the default of
  :meth:`Config.default` (the annotated ``mm-engine.example.toml`` at the repo
  root lists them all).
* The defaults point at the Binance spot **testnet**: trading on production
  needs the URLs written out.
* Plain ``ws://`` / ``http://`` is refused except to a loopback host (the
  simulator) unless ``venue.allow_plaintext = true``: the API key travels in
  every signed request.
* Decimal amounts (``strategy.order_qty``, ``risk.max_order_notional``) are
  quoted strings (``"0.001"``), kept exact; a bare TOML number is refused.
* Durations are integer milliseconds (``*_ms``).
* Relative paths (``paths.*``, ``recording.dir``) are relative to the
  configuration file's folder.
* Credentials never go here (see :mod:`engine.secrets`); a key that looks like
  one is refused with a pointer to the secrets file.
"""
from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec

from engine.instruments import MARKETS, SPOT
from engine.risk import RiskLimits


class ConfigError(ValueError):
    """The configuration file is missing, is not TOML, or holds a wrong value.

    Attributes
    ----------
    key : str
        Dotted key at fault (``"risk.max_position_steps"``), ``""`` when the file as a whole is.
    """

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key


_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,30}$")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9]{1,10}$")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LOOPBACK_NAMES = ("localhost",)


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(field: str, url: str, secure: str, plain: str, allow_plaintext: bool, base_only: bool) -> None:
    # Raise "<field>: ..." (engine.config prefixes the table name).
    if not url.startswith((secure + "://", plain + "://")):
        raise ValueError(f"{field}: must start with {plain}:// or {secure}://, got {url!r}")
    parts = urlsplit(url)
    if not parts.hostname or any(c.isspace() for c in url):
        raise ValueError(f"{field}: not a valid URL (no host, or blanks): {url!r}")
    if parts.scheme == plain and not allow_plaintext and not _is_loopback(parts.hostname):
        raise ValueError(f"{field}: plaintext {plain}:// is allowed only to a loopback host (the simulator); "
                         f"use {secure}:// or set venue.allow_plaintext = true, got {url!r}")
    if base_only and (parts.path not in ("", "/") or parts.query or parts.fragment):
        raise ValueError(f"{field}: give the server base only, e.g. {secure}://stream.binance.com:9443 "
                         f"(the engine appends /stream?streams=...), got {url!r}")


class VenueConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[venue]``: where to connect and what to trade.

    Attributes
    ----------
    market : str
        ``"spot"`` or ``"usdm"`` (depth-sync rules, venue-protocols.md 1.6 / 1.7).
    streams_url : str
        Market-stream server base (``/stream?streams=..`` is appended), ws:// or wss://.
    ws_api_url : str
        WS API endpoint, e.g. ``wss://ws-api.binance.com:443/ws-api/v3`` (3.1).
    rest_url : str
        REST base, e.g. ``https://api.binance.com``.
    symbols : tuple of str
        Venue symbols, upper case, at least one.
    depth_limit : int
        Levels of each depth snapshot, 1..5000 (1.3; the weight grows with it, see engine.ratelimit).
    depth_speed : str
        ``"100ms"`` (``@depth@100ms``) or ``""`` (``@depth``, 1000 ms).
    allow_plaintext : bool
        Allow ws:// / http:// to a non-loopback host.
    """

    market: str = SPOT
    streams_url: str = "wss://stream.testnet.binance.vision"
    ws_api_url: str = "wss://ws-api.testnet.binance.vision/ws-api/v3"
    rest_url: str = "https://testnet.binance.vision"
    symbols: tuple[str, ...] = ("BTCUSDT",)
    depth_limit: Annotated[int, msgspec.Meta(ge=1, le=5000)] = 1000
    depth_speed: str = "100ms"
    allow_plaintext: bool = False

    def __post_init__(self) -> None:
        if self.market not in MARKETS:
            raise ValueError(f"market: must be one of {', '.join(map(repr, MARKETS))}, got {self.market!r}")
        _check_url("streams_url", self.streams_url, "wss", "ws", self.allow_plaintext, base_only=True)
        _check_url("ws_api_url", self.ws_api_url, "wss", "ws", self.allow_plaintext, base_only=False)
        _check_url("rest_url", self.rest_url, "https", "http", self.allow_plaintext, base_only=False)
        if not self.symbols:
            raise ValueError("symbols: must list at least one symbol")
        seen = set()
        for i, s in enumerate(self.symbols):
            if not _SYMBOL_RE.match(s):
                raise ValueError(f"symbols[{i}]: must be 2-30 upper-case letters/digits like 'BTCUSDT', got {s!r}")
            if s in seen:
                raise ValueError(f"symbols[{i}]: {s!r} is listed twice")
            seen.add(s)
        if self.depth_speed not in ("100ms", ""):
            raise ValueError(f"depth_speed: must be '100ms' or '', got {self.depth_speed!r}")


class StrategyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[strategy]``: parameters of :class:`strategies.symmetric.SymmetricQuoter`.

    Attributes
    ----------
    half_spread_ticks : int
        Distance of each quote from the mid, ticks (>= 1).
    requote_ticks : int
        Mid move that triggers a re-quote, ticks (>= 1).
    order_qty : Decimal
        Quote size, base currency (a quoted decimal string, > 0).
    max_position_steps : int
        The strategy's own inventory limit, steps (>= 0, <= ``risk.max_position_steps``).
    size_up_to_min_notional : bool
        Raise a quote below the minimum notional to the minimum, or skip the side.
    """

    half_spread_ticks: Annotated[int, msgspec.Meta(ge=1)] = 5
    requote_ticks: Annotated[int, msgspec.Meta(ge=1)] = 2
    order_qty: Decimal = Decimal("0.001")
    max_position_steps: Annotated[int, msgspec.Meta(ge=0)] = 1000
    size_up_to_min_notional: bool = True

    def __post_init__(self) -> None:
        if not self.order_qty.is_finite() or self.order_qty <= 0:
            raise ValueError(f"order_qty: must be a positive decimal, got {self.order_qty}")


class StalenessConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[liveness.max_staleness]``: longest silence per stream kind before the data counts as stale, ms.

    0 disables the check for that stream (trades and bookTicker may legitimately pause
    on a quiet symbol; depth diffs at 100 ms keep coming on a live one). The user-data
    stream has no entry: it is silent whenever nothing happens to our orders.
    """

    depth_ms: Annotated[int, msgspec.Meta(ge=0)] = 10_000
    trade_ms: Annotated[int, msgspec.Meta(ge=0)] = 0
    book_ticker_ms: Annotated[int, msgspec.Meta(ge=0)] = 0


class LivenessConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[liveness]``: detecting dead connections and stale data.

    Attributes
    ----------
    ping_interval_ms : int
        Our own ping period on each connection, ms (>= 1000: the spot venue allows
        5 incoming messages per second, pings included, section 2).
    pong_timeout_ms : int
        A pong must arrive within this, ms (1 .. ``ping_interval_ms``).
    max_staleness : StalenessConfig
    """

    ping_interval_ms: Annotated[int, msgspec.Meta(ge=1000)] = 20_000
    pong_timeout_ms: Annotated[int, msgspec.Meta(ge=1)] = 10_000
    max_staleness: StalenessConfig = StalenessConfig()

    def __post_init__(self) -> None:
        if self.pong_timeout_ms > self.ping_interval_ms:
            raise ValueError(f"pong_timeout_ms: must be <= liveness.ping_interval_ms ({self.ping_interval_ms}), "
                             f"got {self.pong_timeout_ms}")


class ReconnectConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[reconnect]``: exponential back-off between reconnect attempts.

    Attributes
    ----------
    initial_ms, max_ms : int
        First delay and cap, ms (1 <= initial <= max).
    multiplier : float
        Growth per attempt (>= 1).
    jitter : float
        Fraction of the delay drawn at random, 0..1 (delay is uniform in ``[d * (1 - jitter), d]``).
    max_attempts : int
        Consecutive failed attempts before giving up (>= 0).
    connect_timeout_ms : int
        Bound of one connection attempt (TCP + TLS + WebSocket handshake), ms (>= 1).
    resync_timeout_ms : int
        Bound of the book resync (fresh snapshots) after a market-stream reconnect, ms (>= 1);
        past it the attempt counts as failed.
    max_connection_age_ms : int
        Replace a connection older than this by a new one (opened and synced before the
        swap, no quoting gap), ms; the venue closes connections after 24 h (section 2).
        0 disables the rotation.
    """

    initial_ms: Annotated[int, msgspec.Meta(ge=1)] = 200
    max_ms: Annotated[int, msgspec.Meta(ge=1)] = 5000
    multiplier: float = 2.0
    jitter: float = 0.2
    max_attempts: Annotated[int, msgspec.Meta(ge=0)] = 5
    connect_timeout_ms: Annotated[int, msgspec.Meta(ge=1)] = 10_000
    resync_timeout_ms: Annotated[int, msgspec.Meta(ge=1)] = 10_000
    # 23 h: an hour ahead of the venue's 24 h limit (section 2).
    max_connection_age_ms: Annotated[int, msgspec.Meta(ge=0)] = 82_800_000

    def __post_init__(self) -> None:
        if self.initial_ms > self.max_ms:
            raise ValueError(f"initial_ms: must be <= reconnect.max_ms ({self.max_ms}), got {self.initial_ms}")
        if not math.isfinite(self.multiplier) or self.multiplier < 1:
            raise ValueError(f"multiplier: must be a finite number >= 1, got {self.multiplier}")
        if not math.isfinite(self.jitter) or not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter: must be between 0 and 1, got {self.jitter}")

    def delay_ms(self, attempt: int, u: float) -> int:
        """Return the delay before reconnect ``attempt`` (0-based), ms; ``u`` is uniform in [0, 1)."""
        d = min(float(self.max_ms), self.initial_ms * self.multiplier ** min(attempt, 64))
        return max(1, int(d * (1.0 - self.jitter * u)))


class OrdersConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[orders]``: the order path.

    Attributes
    ----------
    response_timeout_ms : int
        An order request unanswered for this long is treated as of unknown outcome and
        reconciled (venue-protocols.md 3.2: 5xx / timeouts are not failures), ms.
    recv_window_ms : int
        ``recvWindow`` of signed requests, 1..60000 ms (4.4; the venue recommends <= 5000).
    client_id_prefix : str
        Instance prefix of client order ids, 1..10 letters/digits (section 5).
    cancel_timeout_ms : int
        Bound of one fail-closed cancel-all attempt on one route (WS API or REST), ms; the
        attempt is repeated until the venue reports no open orders.
    stop_timeout_ms : int
        Bound of the graceful stop's waits (in-flight orders, cancel-all confirmation), ms.
    """

    response_timeout_ms: Annotated[int, msgspec.Meta(ge=1)] = 5000
    recv_window_ms: Annotated[int, msgspec.Meta(ge=1, le=60_000)] = 5000
    client_id_prefix: str = "mm"
    cancel_timeout_ms: Annotated[int, msgspec.Meta(ge=1)] = 2000
    stop_timeout_ms: Annotated[int, msgspec.Meta(ge=1)] = 10_000

    def __post_init__(self) -> None:
        if not _PREFIX_RE.match(self.client_id_prefix):
            raise ValueError(f"client_id_prefix: must be 1-10 letters/digits, got {self.client_id_prefix!r}")


class RateLimitConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[rate_limit]``: see :class:`engine.ratelimit.RateLimiter`.

    Attributes
    ----------
    safety_margin_pct : int
        Percent of each venue limit kept back from normal requests (cancels may use it), 0..90.
    backoff_initial_ms, backoff_max_ms : int
        Exponential back-off after 429 / -1003 / -1015 (1 <= initial <= max).
    """

    safety_margin_pct: Annotated[int, msgspec.Meta(ge=0, le=90)] = 10
    backoff_initial_ms: Annotated[int, msgspec.Meta(ge=1)] = 1000
    backoff_max_ms: Annotated[int, msgspec.Meta(ge=1)] = 60_000

    def __post_init__(self) -> None:
        if self.backoff_initial_ms > self.backoff_max_ms:
            raise ValueError(f"backoff_initial_ms: must be <= rate_limit.backoff_max_ms ({self.backoff_max_ms}), "
                             f"got {self.backoff_initial_ms}")


class DeadMansSwitchConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[dead_man_switch]``: the venue's own cancel-on-disconnect, armed as a second line.

    USD-M only (``POST /fapi/v1/countdownCancelAll``, venue-protocols.md 8.1): the venue
    cancels all open orders of the symbol when ``countdown_ms`` passes without a new
    heartbeat. Spot has no such mechanism (8.1); there the setting is ignored.

    Attributes
    ----------
    enabled : bool
    countdown_ms : int
        Countdown set by each heartbeat, ms (the venue checks about every 10 ms; do not set it tight).
    heartbeat_ms : int
        Period of the heartbeat, ms (< ``countdown_ms``; the docs' example: 30 s for 120 s).
    """

    enabled: bool = True
    countdown_ms: Annotated[int, msgspec.Meta(ge=1000)] = 120_000
    heartbeat_ms: Annotated[int, msgspec.Meta(ge=100)] = 30_000

    def __post_init__(self) -> None:
        if self.heartbeat_ms >= self.countdown_ms:
            raise ValueError(f"heartbeat_ms: must be < dead_man_switch.countdown_ms ({self.countdown_ms}), "
                             f"got {self.heartbeat_ms}")


class PathsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[paths]``.

    Attributes
    ----------
    secrets_file : str
        Owner-only TOML file with the credentials (:mod:`engine.secrets`); ``""`` reads
        them from the environment only.
    epoch_state : str
        File keeping the client-order-id restart epoch increasing across runs; ``""`` for none.
    kill_file : str
        Kill switch: while this file exists the engine cancels everything and places no
        order (checked on the monitor timer); ``""`` for none.
    """

    secrets_file: str = ""
    epoch_state: str = ""
    kill_file: str = ""


class RecordingConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[recording]``: raw frame recording (engine.recording format).

    Attributes
    ----------
    enabled : bool
    dir : str
        Folder of the recording files.
    """

    enabled: bool = False
    dir: str = "recordings"

    def __post_init__(self) -> None:
        if self.enabled and not self.dir:
            raise ValueError("dir: must be set when recording is enabled")


class LoggingConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[logging]``.

    Attributes
    ----------
    level : str
        ``DEBUG``, ``INFO``, ``WARNING``, ``ERROR`` or ``CRITICAL``.
    """

    level: str = "INFO"

    def __post_init__(self) -> None:
        if self.level not in LOG_LEVELS:
            raise ValueError(f"level: must be one of {', '.join(LOG_LEVELS)}, got {self.level!r}")


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The whole engine configuration (see the module docstring and ``mm-engine.example.toml``)."""

    venue: VenueConfig = VenueConfig()
    strategy: StrategyConfig = StrategyConfig()
    liveness: LivenessConfig = LivenessConfig()
    reconnect: ReconnectConfig = ReconnectConfig()
    orders: OrdersConfig = OrdersConfig()
    risk: RiskLimits = RiskLimits()
    rate_limit: RateLimitConfig = RateLimitConfig()
    dead_man_switch: DeadMansSwitchConfig = DeadMansSwitchConfig()
    paths: PathsConfig = PathsConfig()
    recording: RecordingConfig = RecordingConfig()
    logging: LoggingConfig = LoggingConfig()

    def __post_init__(self) -> None:
        # Cross-table rules: messages carry the full dotted key.
        if self.strategy.max_position_steps > self.risk.max_position_steps:
            raise ValueError(f"strategy.max_position_steps: must be <= risk.max_position_steps "
                             f"({self.risk.max_position_steps}), got {self.strategy.max_position_steps}")
        band = self.risk.price_band_ticks
        if band and self.strategy.half_spread_ticks > band:
            raise ValueError(f"strategy.half_spread_ticks: quotes {self.strategy.half_spread_ticks} ticks from the "
                             f"mid would all be refused by risk.price_band_ticks ({band})")

    @classmethod
    def default(cls) -> "Config":
        """Return the built-in configuration (spot testnet, BTCUSDT)."""
        return cls()

    @property
    def symbol(self) -> str:
        """The first (today: the only) traded symbol."""
        return self.venue.symbols[0]


# -- loading --------------------------------------------------------------------------------------
_AT_RE = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_UNKNOWN_RE = re.compile(r"^Object contains unknown field `(?P<key>.*)`$", re.S)
_EXPECTED_RE = re.compile(r"^Expected `(?P<what>[^`]*)`(?P<constraint>[^,]*)(?:, got `(?P<got>[^`]*)`)?$", re.S)
_FIELD_MSG_RE = re.compile(r"^(?P<field>[A-Za-z_][A-Za-z0-9_.]*(?:\[\d+\])?): (?P<rest>.*)$", re.S)
_SEGMENT_RE = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_CREDENTIAL_WORDS = ("secret", "api_key", "apikey", "password", "passphrase", "private_key", "token")
_MISSING = object()
# msgspec's (JSON) type words in TOML's vocabulary.
_TOML_TYPE_WORDS = {"object": "table", "array": "array", "str": "string", "bool": "boolean"}


def _segments(path: str) -> list[str | int]:
    return [m.group(1) if m.group(1) is not None else int(m.group(2)) for m in _SEGMENT_RE.finditer(path)]


def _dotted(segs: list[str | int]) -> str:
    out = ""
    for s in segs:
        out += f"[{s}]" if isinstance(s, int) else (f".{s}" if out else s)
    return out


def _lookup(raw: Any, segs: list[str | int]) -> Any:
    cur = raw
    for s in segs:
        try:
            cur = cur[s]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return cur


def _struct_at(segs: list[str | int]) -> type | None:
    t: Any = Config
    for s in segs:
        if isinstance(s, int):
            return None
        fields = {f.encode_name: f for f in msgspec.structs.fields(t)}
        if s not in fields:
            return None
        t = fields[s].type
        if not (isinstance(t, type) and issubclass(t, msgspec.Struct)):
            return None
    return t


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _type_name(value: Any) -> str:
    names = {bool: "boolean", int: "int", float: "float", str: "string", list: "array", dict: "table"}
    return names.get(type(value), type(value).__name__)


def _rewrite(err: msgspec.ValidationError, raw: Any) -> tuple[str, str]:
    # Return (dotted key, "key: explanation") for a msgspec validation error.
    m = _AT_RE.match(str(err))
    assert m is not None
    msg, path = m.group("msg"), m.group("path") or ""
    segs = _segments(path)
    where = _dotted(segs)
    u = _UNKNOWN_RE.match(msg)
    if u:
        key = u.group("key")
        full = f"{where}.{key}" if where else key
        t = _struct_at(segs)
        allowed = f" (allowed: {', '.join(f.encode_name for f in msgspec.structs.fields(t))})" if t else ""
        hint = ""
        if any(w in key.lower() for w in _CREDENTIAL_WORDS):
            hint = ("; credentials never go in the configuration: put them in the secrets file "
                    "(paths.secrets_file) or the MM_API_KEY / MM_API_SECRET environment variables")
        return full, f"{full}: unknown key{allowed}{hint}"
    f = _FIELD_MSG_RE.match(msg)
    if f:
        # A __post_init__ message "<field>: ..." raised by the table at `where` (msgspec's own
        # messages never start with "<identifier>: ").
        full = f"{where}.{f.group('field')}" if where else f.group("field")
        return full, f"{full}: {f.group('rest')}"
    value = _lookup(raw, segs)
    e = _EXPECTED_RE.match(msg)
    if e:
        what = _TOML_TYPE_WORDS.get(e.group("what"), e.group("what"))
        text = f"expected {what}{e.group('constraint').replace('`', '')}"
        if value is not _MISSING:
            text += f", got {_type_name(value)} {_show(value)}" if e.group("got") else f", got {_show(value)}"
        elif e.group("got"):
            text += f", got {e.group('got')}"
    else:
        text = msg[:1].lower() + msg[1:]
        if value is not _MISSING and where:
            text += f", got {_show(value)}"
    return where, (f"{where}: {text}" if where else text)


def _decimal_fields_are_strings(raw: Any, t: type, segs: list[str | int]) -> None:
    # Decimal amounts must be TOML strings: a TOML float has already been rounded to binary.
    if not isinstance(raw, dict):
        return
    for f in msgspec.structs.fields(t):
        if f.encode_name not in raw:
            continue
        v = raw[f.encode_name]
        ft = f.type
        if ft is Decimal and not isinstance(v, str):
            key = _dotted(segs + [f.encode_name])
            raise ConfigError(f"{key}: expected a decimal string such as \"0.001\" (quoted, so it stays exact), "
                              f"got {_type_name(v)} {_show(v)}", key)
        if isinstance(ft, type) and issubclass(ft, msgspec.Struct):
            _decimal_fields_are_strings(v, ft, segs + [f.encode_name])


def _resolve(path: str, base: Path | None) -> str:
    if not path or base is None:
        return path
    p = Path(os.path.expanduser(path))
    return str(p if p.is_absolute() else base / p)


def config_from_dict(raw: Any, base_dir: str | os.PathLike[str] | None = None) -> Config:
    """Validate an already-parsed TOML document into a :class:`Config`.

    Relative paths are resolved against ``base_dir`` when given. Raises :class:`ConfigError`.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"the configuration must be a TOML table, got {_type_name(raw)}")
    _decimal_fields_are_strings(raw, Config, [])
    try:
        cfg = msgspec.convert(raw, Config)
    except msgspec.ValidationError as e:
        key, message = _rewrite(e, raw)
        raise ConfigError(message, key) from None
    base = Path(base_dir) if base_dir is not None else None
    if base is not None:
        rs = msgspec.structs.replace
        cfg = rs(cfg,
                 paths=rs(cfg.paths, secrets_file=_resolve(cfg.paths.secrets_file, base),
                          epoch_state=_resolve(cfg.paths.epoch_state, base),
                          kill_file=_resolve(cfg.paths.kill_file, base)),
                 recording=rs(cfg.recording, dir=_resolve(cfg.recording.dir, base)))
    return cfg


def parse_config(text: str, source: str = "<string>", base_dir: str | os.PathLike[str] | None = None) -> Config:
    """Parse TOML ``text`` into a :class:`Config`; ``source`` names it in errors. Raises :class:`ConfigError`."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from None
    try:
        return config_from_dict(raw, base_dir)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}", e.key) from None


def load_config(path: str | os.PathLike[str]) -> Config:
    """Load and validate the TOML configuration file at ``path``.

    Relative paths inside it are resolved against the file's folder.

    Raises
    ------
    ConfigError
        Unreadable file, invalid TOML, unknown key or wrong value; the message
        starts with the file name and names the key.
    """
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the configuration: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    return parse_config(text, str(p), p.resolve().parent)


__all__ = ["Config", "ConfigError", "DeadMansSwitchConfig", "LOG_LEVELS", "LivenessConfig", "LoggingConfig", "OrdersConfig", "PathsConfig",
           "RateLimitConfig", "ReconnectConfig", "RecordingConfig", "RiskLimits", "StalenessConfig",
           "StrategyConfig", "VenueConfig", "config_from_dict", "load_config", "parse_config"]
