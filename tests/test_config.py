"""engine.config: TOML loading, validation, and error messages that name the key."""
from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from engine.config import Config, ConfigError, ReconnectConfig, load_config, parse_config
from engine.risk import RiskLimits

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "mm-engine.example.toml"


def err(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as ei:
        parse_config(text)
    return ei.value


# -- defaults and the example file ------------------------------------------------------------------
def test_default_is_testnet_btcusdt_spot():
    c = Config.default()
    assert c == Config()
    assert c.symbol == "BTCUSDT" and c.venue.market == "spot"
    assert "testnet" in c.venue.ws_api_url and "testnet" in c.venue.streams_url and "testnet" in c.venue.rest_url
    assert c.strategy.order_qty == Decimal("0.001")
    assert c.risk == RiskLimits()


def test_empty_file_gives_the_default():
    assert parse_config("") == Config.default()


def test_example_file_equals_the_default(tmp_path):
    c = load_config(EXAMPLE)
    # Relative paths come back resolved against the example's folder.
    assert c.recording.dir == str(ROOT / "recordings")
    d = Config.default()
    assert msgspec.structs.replace(c, recording=d.recording) == d


def _keys(t: type, prefix: str = "") -> set[str]:
    out = set()
    for f in msgspec.structs.fields(t):
        ft = f.type
        if isinstance(ft, type) and issubclass(ft, msgspec.Struct):
            out |= _keys(ft, f"{prefix}{f.encode_name}.")
        else:
            out.add(prefix + f.encode_name)
    return out


def _flat(doc: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in doc.items():
        out |= _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k}
    return out


def test_example_file_lists_every_key():
    raw = tomllib.loads(EXAMPLE.read_text())
    assert _flat(raw) == _keys(Config)


def test_full_file_is_read_exactly(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("""
[venue]
market = "usdm"
streams_url = "ws://127.0.0.1:9000"
ws_api_url = "ws://127.0.0.1:9000/ws-api/v3"
rest_url = "http://localhost:9001"
symbols = ["ETHUSDT", "BTCUSDT"]
depth_limit = 100
depth_speed = ""
[strategy]
half_spread_ticks = 3
order_qty = "0.10000000000000000001"
max_position_steps = 7
[risk]
max_position_steps = 7
max_order_notional = "123.45"
breaker_exempt_codes = [-2010]
[liveness.max_staleness]
depth_ms = 1500
[paths]
secrets_file = "secrets.toml"
epoch_state = "/var/lib/mm/epoch"
""")
    c = load_config(f)
    assert c.venue.market == "usdm" and c.venue.symbols == ("ETHUSDT", "BTCUSDT") and c.symbol == "ETHUSDT"
    assert c.venue.depth_limit == 100 and c.venue.depth_speed == ""
    assert c.strategy.order_qty == Decimal("0.10000000000000000001")  # exact, not a binary float
    assert c.risk.max_order_notional == Decimal("123.45") and c.risk.breaker_exempt_codes == (-2010,)
    assert c.liveness.max_staleness.depth_ms == 1500 and c.liveness.max_staleness.trade_ms == 0
    assert c.paths.secrets_file == str(tmp_path / "secrets.toml")
    assert c.paths.epoch_state == "/var/lib/mm/epoch"
    assert c.strategy.requote_ticks == 2  # untouched keys keep their default


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        Config.default().venue.symbols = ("X",)  # type: ignore[misc]


# -- error messages ---------------------------------------------------------------------------------
def test_message_examples_from_the_issue():
    e = err("[risk]\nmax_position_steps = -1\n")
    assert str(e) == "<string>: risk.max_position_steps: expected int >= 0, got -1"
    assert e.key == "risk.max_position_steps"
    assert isinstance(e, ValueError)
    e = err("[venue]\nws_api_url = 'http://example.com/ws-api/v3'\n")
    assert e.key == "venue.ws_api_url"
    assert "venue.ws_api_url: must start with ws:// or wss://" in str(e)


@pytest.mark.parametrize("text, key, words", [
    ("[risk]\nmax_position_steps = 'a'", "risk.max_position_steps", "expected int, got string 'a'"),
    ("[risk]\nmax_order_steps = 0", "risk.max_order_steps", "expected int >= 1, got 0"),
    ("[risk]\nprice_band_bps = 10001", "risk.price_band_bps", "expected int <= 10000, got 10001"),
    ("[risk]\nmax_order_notional = '0'", "risk.max_order_notional", "must be a positive decimal"),
    ("[risk]\nmax_order_notional = 'NaN'", "risk.max_order_notional", "must be a positive decimal"),
    ("[risk]\nbreaker_exempt_codes = [-2010, 'x']", "risk.breaker_exempt_codes[1]", "expected int, got string"),
    ("[strategy]\nhalf_spread_ticks = 0", "strategy.half_spread_ticks", ">= 1, got 0"),
    ("[strategy]\norder_qty = 'abc'", "strategy.order_qty", "invalid decimal"),
    ("[strategy]\norder_qty = '-0.1'", "strategy.order_qty", "must be a positive decimal"),
    ("[strategy]\norder_qty = 0.001", "strategy.order_qty", "expected a decimal string"),
    ("[strategy]\norder_qty = 1", "strategy.order_qty", "expected a decimal string"),
    ("[strategy]\nmax_position_steps = 1001", "strategy.max_position_steps", "<= risk.max_position_steps (1000)"),
    ("[risk]\nprice_band_ticks = 4", "strategy.half_spread_ticks", "risk.price_band_ticks (4)"),
    ("[venue]\nmarket = 'futures'", "venue.market", "must be one of 'spot', 'usdm'"),
    ("[venue]\nstreams_url = 'https://x'", "venue.streams_url", "must start with ws:// or wss://"),
    ("[venue]\nstreams_url = 'wss://x/stream?streams=a'", "venue.streams_url", "server base only"),
    ("[venue]\nrest_url = 'wss://x'", "venue.rest_url", "must start with http:// or https://"),
    ("[venue]\nrest_url = 'http://api.binance.com'", "venue.rest_url", "plaintext http://"),
    ("[venue]\nws_api_url = 'ws://10.0.0.5/ws-api/v3'", "venue.ws_api_url", "plaintext ws://"),
    ("[venue]\nws_api_url = 'wss://'", "venue.ws_api_url", "not a valid URL"),
    ("[venue]\nsymbols = []", "venue.symbols", "at least one"),
    ("[venue]\nsymbols = ['BTCUSDT', 'ethusdt']", "venue.symbols[1]", "upper-case"),
    ("[venue]\nsymbols = ['BTCUSDT', 'BTCUSDT']", "venue.symbols[1]", "listed twice"),
    ("[venue]\nsymbols = 'BTCUSDT'", "venue.symbols", "expected array, got string"),
    ("[venue]\ndepth_limit = 5001", "venue.depth_limit", "expected int <= 5000, got 5001"),
    ("[venue]\ndepth_limit = true", "venue.depth_limit", "expected int, got boolean True"),
    ("[venue]\ndepth_speed = '250ms'", "venue.depth_speed", "'100ms' or ''"),
    ("venue = 3", "venue", "expected table, got int 3"),
    ("[liveness]\nping_interval_ms = 999", "liveness.ping_interval_ms", "expected int >= 1000, got 999"),
    ("[liveness]\npong_timeout_ms = 20001", "liveness.pong_timeout_ms", "<= liveness.ping_interval_ms"),
    ("[liveness.max_staleness]\ndepth_ms = -5", "liveness.max_staleness.depth_ms", "expected int >= 0, got -5"),
    ("[reconnect]\ninitial_ms = 6000", "reconnect.initial_ms", "<= reconnect.max_ms (5000)"),
    ("[reconnect]\nmultiplier = 0.5", "reconnect.multiplier", ">= 1"),
    ("[reconnect]\njitter = 1.5", "reconnect.jitter", "between 0 and 1"),
    ("[reconnect]\njitter = nan", "reconnect.jitter", "between 0 and 1"),
    ("[reconnect]\nmax_attempts = -1", "reconnect.max_attempts", ">= 0, got -1"),
    ("[reconnect]\nconnect_timeout_ms = 0", "reconnect.connect_timeout_ms", ">= 1, got 0"),
    ("[liveness.max_staleness]\nuser_data_ms = 1", "liveness.max_staleness.user_data_ms", "unknown key"),
    ("[orders]\nrecv_window_ms = 60001", "orders.recv_window_ms", "<= 60000, got 60001"),
    ("[orders]\nclient_id_prefix = 'mm-1'", "orders.client_id_prefix", "1-10 letters/digits"),
    ("[rate_limit]\nsafety_margin_pct = 91", "rate_limit.safety_margin_pct", "<= 90, got 91"),
    ("[rate_limit]\nbackoff_initial_ms = 70000", "rate_limit.backoff_initial_ms", "<= rate_limit.backoff_max_ms"),
    ("[recording]\nenabled = true\ndir = ''", "recording.dir", "must be set"),
    ("[logging]\nlevel = 'info'", "logging.level", "one of DEBUG, INFO"),
])
def test_wrong_values_name_their_key(text, key, words):
    e = err(text)
    assert e.key == key
    assert f": {key}: " in str(e), str(e)
    assert words in str(e), str(e)


@pytest.mark.parametrize("text, key, allowed", [
    ("foo = 1", "foo", "venue, strategy, liveness"),
    ("[risk]\nmax_position = 5", "risk.max_position", "max_position_steps, max_order_steps"),
    ("[liveness.max_staleness]\ndepth = 5", "liveness.max_staleness.depth", "depth_ms, trade_ms"),
    ("[strategy]\nspread = 1", "strategy.spread", "half_spread_ticks"),
])
def test_unknown_keys_are_refused_by_name(text, key, allowed):
    e = err(text)
    assert e.key == key
    assert f"{key}: unknown key (allowed: " in str(e) and allowed in str(e)


def test_a_credential_in_the_config_is_refused_without_echoing_it():
    e = err("[venue]\napi_secret = 'hunter2-very-secret'\n")
    assert e.key == "venue.api_secret"
    assert "secrets file" in str(e) and "MM_API_SECRET" in str(e)
    assert "hunter2" not in str(e)


def test_plaintext_is_allowed_to_loopback_or_when_asked():
    c = parse_config("[venue]\nstreams_url = 'ws://127.0.0.1:9000'\nws_api_url = 'ws://[::1]:9000/ws-api/v3'\n"
                     "rest_url = 'http://localhost:9001'\n")
    assert c.venue.ws_api_url == "ws://[::1]:9000/ws-api/v3"
    c = parse_config("[venue]\nallow_plaintext = true\nws_api_url = 'ws://10.0.0.5/ws-api/v3'\n")
    assert c.venue.ws_api_url.startswith("ws://10.")


def test_invalid_toml_names_the_file(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("[risk]\nmax_position_steps = \n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML: .*line 2"):
        load_config(f)


def test_missing_file():
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read the configuration"):
        load_config("/nonexistent/nope.toml")


def test_non_utf8_file(tmp_path):
    f = tmp_path / "b.toml"
    f.write_bytes(b"a = '\xff'\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(f)


def test_file_errors_keep_the_key(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[orders]\nresponse_timeout_ms = 0\n")
    with pytest.raises(ConfigError) as ei:
        load_config(f)
    assert ei.value.key == "orders.response_timeout_ms"
    assert str(ei.value) == f"{f}: orders.response_timeout_ms: expected int >= 1, got 0"


# -- helpers ----------------------------------------------------------------------------------------
def test_reconnect_delay_grows_caps_and_jitters():
    r = ReconnectConfig(initial_ms=100, max_ms=1000, multiplier=2.0, jitter=0.5)
    assert [r.delay_ms(n, 0.0) for n in range(6)] == [100, 200, 400, 800, 1000, 1000]
    assert r.delay_ms(0, 0.999999) == 50  # at most `jitter` of the delay is taken off
    assert r.delay_ms(10_000, 0.0) == 1000  # huge attempt counts do not overflow
    assert ReconnectConfig(jitter=0.0).delay_ms(1, 0.9) == 400
