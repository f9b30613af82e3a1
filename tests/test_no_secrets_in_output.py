"""No API key or secret in anything ``mm-engine run`` prints, logs or writes.

``mm-engine -v run --duration 5`` runs against the loopback simulator with a
real-looking 64-character key and secret in ``MM_SIM_API_KEY`` /
``MM_SIM_API_SECRET`` (the simulator registers them, the engine signs with
them, so the run only trades if they were really used) and debug logging. Its
stdout, stderr and summary JSON must contain neither value, nor the first 16
characters of either, nor their hex / base64 encodings. The reprs and strings of
the engine's signer, credentials and WS API client must not show them either.
"""
from __future__ import annotations

import base64
import json
import os
import pickle
import secrets
import string
import subprocess
import sys
from pathlib import Path

import pytest

from engine.live.wsapi import WsApiClient
from engine.orders.signing import HmacSigner
from engine.orders.tracker import OrderTracker
from engine.secrets import Secret, credentials_from_env, redact
from engine.sim.auth import DEFAULT_API_KEY, DEFAULT_API_SECRET, KeyStore

ROOT = Path(__file__).resolve().parents[1]
_ALNUM = string.ascii_letters + string.digits


def _random64() -> str:
    # Binance keys and secrets are 64 alphanumeric characters (engine.sim.auth checks the key's format).
    return "".join(secrets.choice(_ALNUM) for _ in range(64))


@pytest.fixture(scope="module")
def creds() -> tuple[str, str]:
    key, secret = _random64(), _random64()
    assert key not in (DEFAULT_API_KEY, DEFAULT_API_SECRET) and secret not in (DEFAULT_API_KEY, DEFAULT_API_SECRET)
    return key, secret


def needles(key: str, secret: str) -> dict[str, str]:
    """What must never appear: the values, their first 16 characters, and common encodings."""
    out = {}
    for name, v in (("api key", key), ("api secret", secret)):
        out[name] = v
        out[f"{name}[:16]"] = v[:16]
        out[f"{name} hex[:32]"] = v.encode().hex()[:32]
        out[f"{name} base64[:20]"] = base64.b64encode(v.encode()).decode()[:20]
    return out


def leaks(text: str, key: str, secret: str) -> list[str]:
    return [f"{name} at offset {text.find(n)}: ...{text[max(0, text.find(n) - 80):text.find(n)]!r}"
            for name, n in needles(key, secret).items() if n in text]


@pytest.fixture(scope="module")
def run_output(creds, tmp_path_factory):
    key, secret = creds
    summary = tmp_path_factory.mktemp("run") / "summary.json"
    env = dict(os.environ, MM_SIM_API_KEY=key, MM_SIM_API_SECRET=secret, PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "-v", "run", "--duration", "5", "--summary-json", str(summary)],
        cwd=ROOT, env=env, capture_output=True, timeout=180,
    )
    return proc, summary


def test_run_authenticates_with_the_secrets_from_the_environment(run_output):
    proc, summary = run_output
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    doc = json.loads(summary.read_text())
    # The run traded: the venue accepted requests signed with the secret from the environment.
    assert doc["orders_sent"] > 0 and doc["orders_acked"] > 0, doc
    bad_auth = {c: n for c, n in doc["venue"]["rejects_by_code"].items() if c in ("-1022", "-2014", "-2015")}
    assert bad_auth == {}, bad_auth
    # Debug logging was on (the root logger level is what -v sets; stderr carries the log lines).
    assert b" INFO " in proc.stderr or b" DEBUG " in proc.stderr


def test_no_secret_in_stdout_stderr_or_summary(run_output, creds):
    proc, summary = run_output
    key, secret = creds
    found = {
        "stdout": leaks(proc.stdout.decode(errors="replace"), key, secret),
        "stderr": leaks(proc.stderr.decode(errors="replace"), key, secret),
        "summary json": leaks(summary.read_text(), key, secret),
    }
    assert not any(found.values()), found


def test_reprs_of_signer_credentials_and_clients_hide_the_secrets(creds):
    key, secret = creds
    signer = HmacSigner(key, secret)
    c = credentials_from_env({"MM_API_KEY": key, "MM_API_SECRET": secret})
    client = WsApiClient("ws://127.0.0.1:1/ws-api/v3", c.signer(), OrderTracker({}), {})
    shown = [repr(signer), str(signer), f"{signer}", repr(c), str(c), f"{c}", repr(c.api_key), str(c.api_secret),
             f"{c.api_secret:>70}", repr(c.signer()), repr(client), str(client), repr(KeyStore.from_env(
                 {"MM_SIM_API_KEY": key, "MM_SIM_API_SECRET": secret}))]
    for text in shown:
        assert not leaks(text, key, secret), text
    # The signer keeps no copy of the secret it could leak through its attributes (its api_key
    # attribute is the key by design: it is sent with every request).
    attrs = " ".join(repr(getattr(signer, a, "")) for a in dir(signer) if not a.startswith("__") and a != "api_key")
    assert not leaks(attrs, key, secret)
    for obj in (signer, c, c.api_secret):
        with pytest.raises(TypeError):
            pickle.dumps(obj)
    # Redaction knows them (Credentials registers its Secrets), and still signs with them.
    assert redact(f"key={key} secret={secret}") == "key=*** secret=***"
    assert signer.sign("a=1") == c.signer().sign("a=1") == HmacSigner(key, Secret(secret).reveal()).sign("a=1")


def test_the_leak_detector_finds_what_it_looks_for(creds):
    key, secret = creds
    assert leaks("nothing to see", key, secret) == []
    for text in (f"apiKey={key}", f"X-MBX-APIKEY: {key[:16]}", f"secret {secret}", f"s={secret[:16]}...",
                 secret.encode().hex(), base64.b64encode(secret.encode()).decode()):
        assert leaks(text, key, secret), text
