"""engine.secrets: credentials from the environment or an owner-only file; nothing ever shows a secret."""
from __future__ import annotations

import copy
import io
import logging
import os
import pickle
import uuid

import pytest

from engine.secrets import (ENV_API_KEY, ENV_API_SECRET, ENV_ED25519_KEY_PATH, RedactSecretsFilter, Secret,
                            SecretsError, install_redaction, load_credentials, read_private_file, redact,
                            register_secret, uninstall_redaction)

# The illustrative key pair and test vector of the spot REST docs (venue-protocols.md 4.1).
DOC_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
DOC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
DOC_PAYLOAD = ("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000"
               "&timestamp=1499827319559")
DOC_SIGNATURE = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"


def fresh(tag: str = "s") -> str:
    """A unique secret-looking value, so tests never depend on each other's registrations."""
    return f"{tag}-{uuid.uuid4().hex}"


def private(path, text: str, mode: int = 0o600):
    path.write_text(text)
    os.chmod(path, mode)
    return path


@pytest.fixture
def redaction():
    f = install_redaction()
    yield f
    uninstall_redaction()


def ed25519_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


# -- Secret ----------------------------------------------------------------------------------------
def test_secret_never_shows_its_value():
    v = fresh()
    s = Secret(v)
    assert s.reveal() == v
    shown = [repr(s), str(s), f"{s}", f"{s!r}", f"{s:>80}", "%s" % s, "%r" % (s,), "{}".format(s), str([s]),
             repr({"k": s})]
    for text in shown:
        assert v not in text
    assert repr(s) == "Secret('***')" and str(s) == "***" and f"{s:>80}" == "***"


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_secret_cannot_be_pickled(protocol):
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(Secret(fresh()), protocol=protocol)


def test_secret_copy_eq_bool():
    v = fresh()
    s = Secret(v)
    assert copy.copy(s) is s and copy.deepcopy({"a": s})["a"] is s
    assert s == Secret(v) and s != Secret(fresh()) and hash(s) == hash(Secret(v))
    assert s != v  # never equal to the plain string
    assert bool(s) and not bool(Secret("", register=False))
    with pytest.raises(TypeError):
        Secret(b"bytes")  # type: ignore[arg-type]


def test_redact_replaces_every_registered_value():
    a, b = fresh("a"), fresh("b")
    Secret(a)
    register_secret(b)
    assert redact(f"x {a} y {b} z {a}") == "x *** y *** z ***"
    assert redact("nothing here") == "nothing here"
    # Very short values are not registered (they would blank out ordinary words).
    register_secret("ab")
    assert redact("tab stop") == "tab stop"


def test_redact_covers_pem_lines():
    pem = ed25519_pem()
    Secret(pem)
    body = [ln for ln in pem.splitlines() if not ln.startswith("-----")][0]
    assert redact(pem) == "***"
    assert body not in redact(f"key line: {body}")


# -- environment ------------------------------------------------------------------------------------
def test_hmac_credentials_from_environment_sign_the_doc_vector():
    c = load_credentials(env={ENV_API_KEY: DOC_KEY, ENV_API_SECRET: DOC_SECRET + "\n"})
    assert c.kind == "HMAC" and c.source == "environment"
    assert c.api_key.reveal() == DOC_KEY and c.api_secret.reveal() == DOC_SECRET
    assert c.signer().sign(DOC_PAYLOAD) == DOC_SIGNATURE
    assert DOC_KEY not in repr(c) and DOC_SECRET not in repr(c) and DOC_SECRET not in str(c)
    with pytest.raises(TypeError):
        pickle.dumps(c)


def test_ed25519_credentials_from_environment(tmp_path):
    pem = private(tmp_path / "k.pem", ed25519_pem())
    c = load_credentials(env={ENV_API_KEY: fresh("key"), ENV_ED25519_KEY_PATH: str(pem)})
    assert c.kind == "ED25519" and c.api_secret is None
    signer = c.signer()
    assert signer.kind == "ED25519" and len(signer.sign("payload")) == 88  # 64 bytes, base64


def test_environment_wins_over_the_file(tmp_path):
    f = private(tmp_path / "s.toml", f'api_key = "{fresh()}"\napi_secret = "{fresh()}"\n')
    key = fresh("envkey")
    c = load_credentials(f, env={ENV_API_KEY: key, ENV_API_SECRET: fresh()})
    assert c.source == "environment" and c.api_key.reveal() == key


@pytest.mark.parametrize("env, words", [
    ({}, "no credentials"),
    ({ENV_API_SECRET: "x" * 20}, f"{ENV_API_KEY} is not set"),
    ({ENV_API_KEY: "k" * 20}, "exactly one of"),
    ({ENV_API_KEY: "k" * 20, ENV_API_SECRET: "  "}, f"{ENV_API_SECRET} is empty"),
    ({ENV_API_KEY: "k k k k", ENV_API_SECRET: "s" * 20}, "contains blanks"),
])
def test_bad_environment(env, words):
    with pytest.raises(SecretsError, match=words):
        load_credentials(env=env)


def test_both_key_types_are_refused(tmp_path):
    pem = private(tmp_path / "k.pem", ed25519_pem())
    with pytest.raises(SecretsError, match="exactly one of"):
        load_credentials(env={ENV_API_KEY: fresh(), ENV_API_SECRET: fresh(), ENV_ED25519_KEY_PATH: str(pem)})


def test_scrub_env_removes_the_secret_from_the_environment():
    env = {ENV_API_KEY: fresh(), ENV_API_SECRET: fresh()}
    c = load_credentials(env=env, scrub_env=True)
    assert ENV_API_SECRET not in env and c.api_secret is not None


# -- the secrets file --------------------------------------------------------------------------------
def test_secrets_file_owner_only(tmp_path):
    key, secret = fresh("key"), fresh("secret")
    f = private(tmp_path / "s.toml", f'api_key = "{key}"\napi_secret = "{secret}"\n')
    c = load_credentials(f, env={})
    assert c.kind == "HMAC" and c.source == str(f)
    assert c.api_key.reveal() == key and c.api_secret.reveal() == secret


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o601, 0o620])
def test_secrets_file_readable_by_others_is_refused(tmp_path, mode):
    secret = fresh("secret")
    f = private(tmp_path / "s.toml", f'api_key = "{fresh()}"\napi_secret = "{secret}"\n', mode)
    with pytest.raises(SecretsError) as ei:
        load_credentials(f, env={})
    msg = str(ei.value)
    assert f"permissions {mode:04o}" in msg and f"chmod 600 {f}" in msg and str(f) in msg
    assert secret not in msg and "api_secret" not in msg


def test_owner_only_modes_are_accepted(tmp_path):
    for mode in (0o600, 0o400):
        f = private(tmp_path / f"s{mode:o}.toml", f'api_key = "{fresh()}"\napi_secret = "{fresh()}"\n', mode)
        assert load_credentials(f, env={}).kind == "HMAC"


def test_ed25519_key_file_must_be_owner_only_too(tmp_path):
    pem = private(tmp_path / "k.pem", ed25519_pem(), 0o644)
    f = private(tmp_path / "s.toml", f'api_key = "{fresh()}"\ned25519_private_key_path = "k.pem"\n')
    with pytest.raises(SecretsError, match=r"k\.pem: permissions 0644"):
        load_credentials(f, env={})
    os.chmod(pem, 0o600)
    c = load_credentials(f, env={})  # relative to the secrets file's folder
    assert c.kind == "ED25519" and c.signer().kind == "ED25519"


def test_not_a_pem(tmp_path):
    junk = fresh("junk")
    private(tmp_path / "k.pem", junk)
    f = private(tmp_path / "s.toml", f'api_key = "{fresh()}"\ned25519_private_key_path = "k.pem"\n')
    with pytest.raises(SecretsError, match="not a PEM private key") as ei:
        load_credentials(f, env={})
    assert junk not in str(ei.value)


def test_unreadable_pem_content_is_not_shown(tmp_path):
    body = "A" * 40
    private(tmp_path / "k.pem", f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n")
    f = private(tmp_path / "s.toml", f'api_key = "{fresh()}"\ned25519_private_key_path = "k.pem"\n')
    c = load_credentials(f, env={})
    with pytest.raises(SecretsError, match="Ed25519 private key unusable") as ei:
        c.signer()
    assert body not in str(ei.value)


def test_bad_toml_does_not_show_the_content(tmp_path):
    secret = fresh("secret")
    f = private(tmp_path / "s.toml", f'api_key = "{fresh()}"\napi_secret = {secret}\n')
    with pytest.raises(SecretsError, match=r"not valid TOML \(at line 2, column \d+\); the content is not shown") \
            as ei:
        load_credentials(f, env={})
    assert secret not in str(ei.value) and secret[:8] not in str(ei.value)


@pytest.mark.parametrize("body, words", [
    ('api_key = "K{}"\napi_secret = "S{}"\nextra = "X{}"\n', "unknown key 'extra'"),
    ('api_key = "K{}"\napi_secret = 12345678\n', "api_secret must be a string"),
    ('api_secret = "S{}"\n', "api_key is missing"),
    ('api_key = ""\napi_secret = "S{}"\n', "api_key is empty"),
    ('api_key = "K{}"\n', "exactly one of"),
    ('api_key = "K{}"\ned25519_private_key_path = ""\n', "ed25519_private_key_path is empty"),
    ('[binance]\napi_key = "K{}"\n', "unknown key 'binance'"),
])
def test_bad_secrets_file(tmp_path, body, words):
    tag = uuid.uuid4().hex
    f = private(tmp_path / "s.toml", body.replace("{}", tag))
    with pytest.raises(SecretsError, match=words) as ei:
        load_credentials(f, env={})
    assert tag not in str(ei.value)


def test_missing_directory_and_foreign_files(tmp_path):
    with pytest.raises(SecretsError, match="no such file"):
        load_credentials(tmp_path / "none.toml", env={})
    with pytest.raises(SecretsError, match="not a regular file"):
        read_private_file(tmp_path)


def test_symlink_to_an_owner_only_file_is_followed_and_checked(tmp_path):
    target = private(tmp_path / "real.toml", f'api_key = "{fresh()}"\napi_secret = "{fresh()}"\n')
    link = tmp_path / "link.toml"
    link.symlink_to(target)
    assert load_credentials(link, env={}).kind == "HMAC"
    os.chmod(target, 0o644)
    with pytest.raises(SecretsError, match="permissions 0644"):
        load_credentials(link, env={})


# -- logging ----------------------------------------------------------------------------------------
def test_without_redaction_the_secret_would_leak(caplog):
    # Control: proves the log tests below can fail.
    secret = fresh("leak")
    Secret(secret)
    with caplog.at_level(logging.INFO):
        logging.getLogger("engine.test").info("payload %s", secret)
    assert secret in caplog.text


def test_log_messages_args_and_exceptions_are_redacted(caplog, redaction):
    key, secret = fresh("key"), fresh("secret")
    c = load_credentials(env={ENV_API_KEY: key, ENV_API_SECRET: secret})
    log = logging.getLogger("engine.live.wsapi")  # a child logger: propagated records
    with caplog.at_level(logging.DEBUG):
        log.info("signing with %s and %s", c.api_key.reveal(), c.api_secret.reveal())
        log.warning(f"inline {secret} in the message")
        log.debug("in a dict %r", {"apiKey": key, "secret": secret})
        log.info("the Secret itself: %s %r", c.api_secret, c.api_secret)
        try:
            raise RuntimeError(f"request failed: {secret}")
        except RuntimeError:
            log.exception("with traceback")
        log.error("numbers still format: %d %.2f", 42, 1.5)
        log.info("stack", stack_info=True)
        logging.getLogger().warning("root logger %s", secret)
    text = caplog.text
    assert secret not in text and key not in text
    for rec in caplog.records:
        assert secret not in rec.getMessage() and key not in rec.getMessage()
    assert "signing with *** and ***" in text
    assert "inline *** in the message" in text
    assert "RuntimeError: request failed: ***" in text  # the traceback is kept, redacted
    assert "numbers still format: 42 1.50" in text
    assert "Secret('***')" in text


def test_handler_added_after_install_is_covered(redaction):
    secret = fresh("late")
    Secret(secret)
    buf = io.StringIO()
    h = logging.StreamHandler(buf)
    h.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("engine.test.late")
    log.addHandler(h)
    log.setLevel(logging.INFO)
    try:
        log.info("late %s", secret)
        try:
            raise ValueError(secret)
        except ValueError:
            log.exception("boom")
    finally:
        log.removeHandler(h)
    out = buf.getvalue()
    assert "late ***" in out and secret not in out and "ValueError: ***" in out


def test_filter_on_a_single_handler_without_the_factory():
    secret = fresh("handler")
    buf = io.StringIO()
    h = logging.StreamHandler(buf)
    h.addFilter(RedactSecretsFilter([secret]))
    log = logging.getLogger("engine.test.handler")
    log.addHandler(h)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        log.info("value=%s", secret)
        log.info("bad format %d", secret)  # formatting fails: args must not be printed raw
    finally:
        log.removeHandler(h)
        log.propagate = True
    out = buf.getvalue()
    assert "value=***" in out and secret not in out


def test_install_is_idempotent_and_uninstall_restores():
    before = logging.getLogRecordFactory()
    root = logging.getLogger()
    f1 = install_redaction()
    f2 = install_redaction()
    try:
        assert f1 is f2
        assert sum(isinstance(x, RedactSecretsFilter) for x in root.filters) == 1
        assert logging.getLogRecordFactory() is not before
    finally:
        uninstall_redaction()
    assert logging.getLogRecordFactory() is before
    assert not any(isinstance(x, RedactSecretsFilter) for x in root.filters)
