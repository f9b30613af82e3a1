"""API keys, request signatures and timing security, as Binance spot checks them.

Signature payloads (venue-protocols.md section 4):

* REST (4.1): the query string **as received** concatenated with the request
  body **as received**, no separator, with the ``signature=...`` pair removed.
  Since 2026-01-15 clients must sign the percent-encoded form, which is what
  travels on the wire, so the raw received text is the payload.
* WS API (4.2): every ``params`` entry except ``signature``, sorted by name,
  joined as ``name=value`` with ``&``, values as UTF-8 text **without**
  percent-encoding. The official Python connector signs the percent-encoded
  form instead (4.5); both forms are accepted, as 4.5 suggests.
* HMAC-SHA256 signatures are lower/upper-case hex (case-insensitive); Ed25519
  signatures are base64 (case-sensitive) (4.1, 4.3).
* ``timestamp`` (ms, or µs if it has 16+ digits) and ``recvWindow`` (ms, up to
  3 decimals, default 5000, max 60000) per 4.4: accept only if
  ``timestamp < serverTime + 1000`` and ``serverTime - timestamp <= recvWindow``.

Keys come from the environment (see :meth:`KeyStore.from_env`); the defaults
are test keys. The HMAC default pair is the illustrative pair from Binance's
docs, so the docs' test vectors verify against it.

Secrets are never put in reprs, logs or error messages.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Callable, Iterable, Mapping
from urllib.parse import quote_plus, unquote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

# Binance's illustrative HMAC key pair (spot docs, "SIGNED request example (HMAC)";
# venue-protocols.md 4.1). Test default only.
DEFAULT_API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
DEFAULT_API_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"

# Test Ed25519 key of the simulator (Binance does not publish its example private key,
# venue-protocols.md 4.3). The private seed is public on purpose: test default only.
DEFAULT_ED25519_API_KEY = "mmSimEd25519TestKey000000000000000000000000000000000000000000001"
DEFAULT_ED25519_PRIVATE_SEED = hashlib.sha256(b"mm-engine sim ed25519 test key").digest()

ENV_API_KEY = "MM_SIM_API_KEY"
ENV_API_SECRET = "MM_SIM_API_SECRET"
ENV_ED25519_PUBLIC_KEY = "MM_SIM_ED25519_PUBLIC_KEY"
ENV_ED25519_API_KEY = "MM_SIM_ED25519_API_KEY"

HMAC = "HMAC"
ED25519 = "ED25519"

# recvWindow default and maximum, ms (venue-protocols.md 4.4).
DEFAULT_RECV_WINDOW_MS = Decimal(5000)
MAX_RECV_WINDOW_MS = Decimal(60000)
# A request may be at most this far ahead of server time, ms (4.4).
MAX_AHEAD_MS = Decimal(1000)
# Timestamps with at least this many digits are µs (4.4: "milliseconds or microseconds").
_US_DIGITS = 16

# Binance API keys are 64 alphanumeric characters; anything else is -2014 BAD_API_KEY_FMT.
_KEY_FORMAT = re.compile(r"[A-Za-z0-9]{64}")
_INT = re.compile(r"[0-9]{1,20}")
_RECV_WINDOW = re.compile(r"[0-9]{1,20}(\.[0-9]{1,3})?")


class AuthError(Exception):
    """A request failed authentication; carries the venue's code, message and status.

    Attributes
    ----------
    code : int
        Binance error code (venue-protocols.md 6.1).
    msg : str
        Binance error message (never contains a secret or a signature).
    status : int
        HTTP status (REST) / ``status`` field (WS API).
    """

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(code, msg)
        self.code = code
        self.msg = msg
        self.status = status


def err_bad_signature() -> AuthError:
    """-1022 INVALID_SIGNATURE (SPOT-ERR)."""
    return AuthError(-1022, "Signature for this request is not valid.")


def err_mandatory(name: str) -> AuthError:
    """-1102 for a missing mandatory parameter (SPOT-ERR)."""
    return AuthError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def err_bad_key_format() -> AuthError:
    """-2014 BAD_API_KEY_FMT, HTTP 401."""
    return AuthError(-2014, "API-key format invalid.", 401)


def err_rejected_key() -> AuthError:
    """-2015 REJECTED_MBX_KEY, HTTP 401 (WS API session revocation uses 401 too)."""
    return AuthError(-2015, "Invalid API-key, IP, or permissions for action.", 401)


# -- payloads and primitives -----------------------------------------------------------------
def hmac_sha256_hex(secret: str | bytes, payload: str | bytes) -> str:
    """Return the lower-case hex HMAC-SHA256 of ``payload`` (UTF-8) keyed by ``secret``."""
    k = secret.encode() if isinstance(secret, str) else secret
    m = payload.encode() if isinstance(payload, str) else payload
    return hmac.new(k, m, hashlib.sha256).hexdigest()


def ws_payload(params: Mapping[str, str]) -> str:
    """Return the WS API signature payload: params minus ``signature``, sorted, raw UTF-8 (4.2)."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "signature")


def ws_payload_encoded(params: Mapping[str, str]) -> str:
    """Return the percent-encoded variant the official Python connector signs (4.5)."""
    return "&".join(
        f"{quote_plus(k)}={quote_plus(params[k])}" for k in sorted(params) if k != "signature"
    )


def strip_signature(raw: str) -> tuple[str, str | None]:
    """Remove the ``signature=...`` pair from a raw urlencoded string.

    Returns
    -------
    (rest, signature) : tuple
        ``rest`` is the raw text without the pair (other pairs keep their order
        and encoding); ``signature`` is the still-encoded value or ``None``.
    """
    if not raw:
        return "", None
    kept: list[str] = []
    sig: str | None = None
    for pair in raw.split("&"):
        if pair.split("=", 1)[0] == "signature":
            sig = pair.split("=", 1)[1] if "=" in pair else ""
        else:
            kept.append(pair)
    return "&".join(kept), sig


def rest_payload(raw_query: str, raw_body: str) -> tuple[str, str | None]:
    """Return the REST signature payload and the (still-encoded) signature (4.1).

    The payload is the query string concatenated with the body, each as
    received, with the ``signature`` pair removed from whichever carries it.
    """
    q, sig_q = strip_signature(raw_query)
    b, sig_b = strip_signature(raw_body)
    return q + b, sig_q if sig_q is not None else sig_b


def ed25519_sign_b64(private_key: Ed25519PrivateKey, payload: str | bytes) -> str:
    """Return the base64 Ed25519 signature of ``payload`` (what a client sends, 4.3)."""
    m = payload.encode() if isinstance(payload, str) else payload
    return base64.b64encode(private_key.sign(m)).decode()


def default_ed25519_private_key() -> Ed25519PrivateKey:
    """Return the simulator's test Ed25519 private key (for test clients only)."""
    return Ed25519PrivateKey.from_private_bytes(DEFAULT_ED25519_PRIVATE_SEED)


def default_ed25519_public_pem() -> str:
    """Return the PEM public key matching :func:`default_ed25519_private_key`."""
    pub = default_ed25519_private_key().public_key()
    return pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


# -- keys ----------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ApiKey:
    """One registered API key.

    Attributes
    ----------
    api_key : str
        The public key id sent as ``X-MBX-APIKEY`` / ``apiKey``.
    kind : str
        ``"HMAC"`` or ``"ED25519"``.
    """

    api_key: str
    kind: str
    _secret: bytes | None = field(default=None, repr=False)
    _public: Ed25519PublicKey | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return f"ApiKey(api_key={self.api_key[:6]}..., kind={self.kind})"

    def verify(self, payloads: Iterable[str], signature: str) -> bool:
        """Return True if ``signature`` signs any of ``payloads`` with this key."""
        if self.kind == HMAC:
            assert self._secret is not None
            want = signature.lower()
            return any(hmac.compare_digest(hmac_sha256_hex(self._secret, p), want) for p in payloads)
        assert self._public is not None
        try:
            sig = base64.b64decode(signature, validate=True)
        except (ValueError, TypeError):
            return False
        for p in payloads:
            try:
                self._public.verify(sig, p.encode())
                return True
            except InvalidSignature:
                continue
        return False


class KeyStore:
    """The API keys the simulated venue knows (all belong to the one simulated account)."""

    def __init__(self) -> None:
        self._keys: dict[str, ApiKey] = {}

    def __repr__(self) -> str:
        return f"KeyStore({len(self._keys)} keys)"

    def add_hmac(self, api_key: str, secret: str) -> None:
        """Register an HMAC-SHA256 key."""
        self._keys[api_key] = ApiKey(api_key, HMAC, _secret=secret.encode())

    def add_ed25519(self, api_key: str, public_key_pem: str | bytes) -> None:
        """Register an Ed25519 key from its PEM (SubjectPublicKeyInfo) public key."""
        pem = public_key_pem.encode() if isinstance(public_key_pem, str) else public_key_pem
        pub = serialization.load_pem_public_key(pem)
        if not isinstance(pub, Ed25519PublicKey):
            raise ValueError("MM_SIM_ED25519_PUBLIC_KEY is not an Ed25519 public key")
        self._keys[api_key] = ApiKey(api_key, ED25519, _public=pub)

    def lookup(self, api_key: str | None) -> ApiKey:
        """Return the key; raise :class:`AuthError` -2014 (bad format) or -2015 (unknown)."""
        if not api_key:
            raise err_bad_key_format()
        k = self._keys.get(api_key)
        if k is not None:
            return k
        if not _KEY_FORMAT.fullmatch(api_key):
            raise err_bad_key_format()
        raise err_rejected_key()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "KeyStore":
        """Build the key store from the environment.

        ``MM_SIM_API_KEY`` / ``MM_SIM_API_SECRET`` (HMAC; defaults
        :data:`DEFAULT_API_KEY` / :data:`DEFAULT_API_SECRET`),
        ``MM_SIM_ED25519_PUBLIC_KEY`` (PEM; default: the public half of the
        simulator's test key) registered under ``MM_SIM_ED25519_API_KEY``
        (default :data:`DEFAULT_ED25519_API_KEY`).
        """
        e = os.environ if env is None else env
        ks = cls()
        ks.add_hmac(e.get(ENV_API_KEY) or DEFAULT_API_KEY, e.get(ENV_API_SECRET) or DEFAULT_API_SECRET)
        ks.add_ed25519(
            e.get(ENV_ED25519_API_KEY) or DEFAULT_ED25519_API_KEY,
            e.get(ENV_ED25519_PUBLIC_KEY) or default_ed25519_public_pem(),
        )
        return ks


def wall_clock_ms() -> int:
    """Return the wall clock in ms since the epoch."""
    return time.time_ns() // 1_000_000


class Authenticator:
    """Timing and signature checks shared by the REST and WS API front ends.

    Parameters
    ----------
    keys : KeyStore
    clock_ms : callable, optional
        Server clock in ms used for ``timestamp``/``recvWindow`` (default: wall
        clock, because clients stamp requests with their wall clock).
    """

    def __init__(self, keys: KeyStore, clock_ms: Callable[[], int] | None = None) -> None:
        self.keys = keys
        self.clock_ms = clock_ms or wall_clock_ms

    def __repr__(self) -> str:
        return f"Authenticator({self.keys!r})"

    def check_timestamp(self, timestamp: str | None, recv_window: str | None) -> None:
        """Apply the 4.4 timing rule; raise :class:`AuthError` -1102 / -1021."""
        if timestamp is None or timestamp == "":
            raise err_mandatory("timestamp")
        if not _INT.fullmatch(timestamp):
            raise AuthError(
                -1100,
                "Illegal characters found in parameter 'timestamp'; legal range is '^[0-9]{1,20}$'.",
            )
        ts = Decimal(timestamp)
        if len(timestamp) >= _US_DIGITS:
            ts = ts / 1000
        rw = DEFAULT_RECV_WINDOW_MS
        if recv_window is not None:
            try:
                if not _RECV_WINDOW.fullmatch(recv_window):
                    raise InvalidOperation
                rw = Decimal(recv_window)
            except InvalidOperation:
                raise AuthError(
                    -1100,
                    "Illegal characters found in parameter 'recvWindow'; legal range is "
                    "'^[0-9]{1,20}(\\.[0-9]{1,3})?$'.",
                ) from None
            if rw > MAX_RECV_WINDOW_MS:
                raise AuthError(-1102, "'recvWindow' contains unexpected value. Cannot be greater than 60000.")
        now = Decimal(self.clock_ms())
        if ts >= now + MAX_AHEAD_MS:
            raise AuthError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now - ts > rw:
            raise AuthError(-1021, "Timestamp for this request is outside of the recvWindow.")

    def verify_rest(self, api_key: str | None, raw_query: str, raw_body: str,
                    timestamp: str | None, recv_window: str | None) -> ApiKey:
        """Authenticate a SIGNED REST request (4.1, 4.4).

        Parameters
        ----------
        api_key : str or None
            ``X-MBX-APIKEY`` header.
        raw_query, raw_body : str
            Query string and form body exactly as received (percent-encoded).
        timestamp, recv_window : str or None
            Decoded parameter values.
        """
        key = self.keys.lookup(api_key)
        self.check_timestamp(timestamp, recv_window)
        payload, sig = rest_payload(raw_query, raw_body)
        if sig is None or sig == "":
            raise err_mandatory("signature")
        # Base64 signatures arrive percent-encoded (4.3); '+' is not a space here.
        if not key.verify((payload,), unquote(sig)):
            raise err_bad_signature()
        return key

    def verify_ws(self, params: Mapping[str, str]) -> ApiKey:
        """Authenticate WS API params carrying ``apiKey`` + ``signature`` (4.2, 4.4).

        ``params`` holds every parameter's text (strings unquoted, numbers and
        booleans as their JSON text).
        """
        api_key = params.get("apiKey")
        if api_key is None:
            raise err_mandatory("apiKey")
        key = self.keys.lookup(api_key)
        self.check_timestamp(params.get("timestamp"), params.get("recvWindow"))
        sig = params.get("signature")
        if not sig:
            raise err_mandatory("signature")
        raw = ws_payload(params)
        enc = ws_payload_encoded(params)
        if not key.verify((raw,) if raw == enc else (raw, enc), sig):
            raise err_bad_signature()
        return key
