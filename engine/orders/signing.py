"""Request signing for Binance spot: HMAC-SHA256 (hex) and Ed25519 (base64).

Payloads (venue-protocols.md section 4):

* **WS API** (4.2): every entry of ``params`` except ``signature`` (``apiKey``
  included), sorted by name, joined as ``name=value`` with ``&``; values as
  their UTF-8 text **without** percent-encoding. JSON numbers and booleans are
  signed as their JSON text (``100``, ``true``).
* **REST** (4.1): the percent-encoded query string concatenated with the
  percent-encoded body, no separator, parameters in the order sent (no
  sorting). Percent-encoding is mandatory since 2026-01-15.
* HMAC-SHA256 signatures are lower-case hex (4.1), computed by
  :class:`ext.sign.HmacSigner` (key prepared once, OpenSSL); Ed25519
  signatures are base64 (4.3) and must themselves be percent-encoded on REST.
* ``session.logon`` accepts Ed25519 keys only (3.3); HMAC keys sign each
  request and subscribe to user data with ``userDataStream.subscribe.signature``.

Secrets never appear in ``repr``/``str`` or in exception messages; a signer
cannot be pickled (which would write the secret to disk).
"""
from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any, Iterable, Mapping
from urllib.parse import quote, urlencode

from ext import sign as _ext_sign

HMAC_SHA256 = "HMAC"
ED25519 = "ED25519"


def param_text(value: Any) -> str:
    """Return the text a WS API parameter is signed as (4.2).

    ``str`` as is, ``bool`` as ``true``/``false``, ``int`` and ``Decimal`` in
    plain decimal notation (never exponent notation).
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"cannot sign a parameter of type {type(value).__name__}")


def ws_payload(params: Mapping[str, Any]) -> str:
    """Return the WS API signature payload of ``params`` (4.2): sorted, raw UTF-8, no signature."""
    parts = []
    for k in sorted(params):
        if k == "signature":
            continue
        v = params[k]
        parts.append(f"{k}={v if v.__class__ is str else param_text(v)}")
    return "&".join(parts)


def rest_encode(params: Iterable[tuple[str, Any]] | Mapping[str, Any]) -> str:
    """Percent-encode REST parameters in the order given (4.1), e.g. ``symbol=%EF%BC%91...``."""
    items = params.items() if isinstance(params, Mapping) else params
    return urlencode([(k, param_text(v)) for k, v in items], quote_via=quote, safe="")


class Signer:
    """Base class of request signers.

    Attributes
    ----------
    api_key : str
        Public key id (``apiKey`` / ``X-MBX-APIKEY``); not secret.
    kind : str
        ``"HMAC"`` or ``"ED25519"``.
    """

    __slots__ = ("api_key",)
    kind = ""

    def __init__(self, api_key: str) -> None:
        if not api_key:
            raise ValueError("api_key is empty")
        self.api_key = api_key

    def sign(self, payload: str | bytes) -> str:
        """Return the signature of ``payload`` (UTF-8)."""
        raise NotImplementedError

    def sign_ws(self, params: Mapping[str, Any]) -> str:
        """Return the WS API signature of ``params`` (4.2); ``params`` must already hold ``apiKey``."""
        return self.sign(ws_payload(params))

    def signed_ws_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Add ``apiKey`` and ``signature`` to ``params`` (in place) and return it.

        ``params`` must already hold ``timestamp`` (and ``recvWindow`` if used), 4.4.
        """
        params["apiKey"] = self.api_key
        params.pop("signature", None)
        params["signature"] = self.sign(ws_payload(params))
        return params

    def sign_rest(self, query: str, body: str = "") -> str:
        """Return the REST signature of percent-encoded ``query`` + ``body`` (4.1)."""
        return self.sign(query + body)

    def signed_rest_query(self, params: Iterable[tuple[str, Any]] | Mapping[str, Any]) -> str:
        """Return ``<encoded params>&signature=<sig>`` for a GET/DELETE query string (4.1, 4.3)."""
        q = rest_encode(params)
        return f"{q}&signature={quote(self.sign(q), safe='')}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(api_key={self.api_key[:6]}..., kind={self.kind})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError(f"{type(self).__name__} holds a secret and cannot be pickled")


class HmacSigner(Signer):
    """HMAC-SHA256 signer: lower-case hex signatures (4.1, 4.2).

    Parameters
    ----------
    api_key : str
    secret : str or bytes
        The secret key (str is UTF-8 encoded). Only the key state prepared by
        :class:`ext.sign.HmacSigner` is kept, never the secret itself.
    """

    __slots__ = ("_mac",)
    kind = HMAC_SHA256

    def __init__(self, api_key: str, secret: str | bytes) -> None:
        super().__init__(api_key)
        if not secret:
            raise ValueError("secret is empty")
        self._mac = _ext_sign.HmacSigner(secret.encode() if isinstance(secret, str) else secret)

    def sign(self, payload: str | bytes) -> str:
        """Return the hex HMAC-SHA256 of ``payload`` (UTF-8)."""
        return self._mac.sign_hex(payload.encode() if isinstance(payload, str) else payload)


class Ed25519Signer(Signer):
    """Ed25519 signer: base64 signatures (4.3). Needs the ``cryptography`` package.

    Parameters
    ----------
    api_key : str
    private_key : Ed25519PrivateKey, PEM bytes/str, or 32-byte raw seed
    password : bytes, optional
        Password of an encrypted PEM.
    """

    __slots__ = ("_key",)
    kind = ED25519

    def __init__(self, api_key: str, private_key: Any, password: bytes | None = None) -> None:
        super().__init__(api_key)
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        if isinstance(private_key, Ed25519PrivateKey):
            key = private_key
        elif isinstance(private_key, (bytes, bytearray)) and len(private_key) == 32:
            key = Ed25519PrivateKey.from_private_bytes(bytes(private_key))
        elif isinstance(private_key, (str, bytes, bytearray)):
            pem = private_key.encode() if isinstance(private_key, str) else bytes(private_key)
            try:
                key = serialization.load_pem_private_key(pem, password=password)
            except (ValueError, TypeError):
                raise ValueError("private_key is not a readable PEM private key") from None
            if not isinstance(key, Ed25519PrivateKey):
                raise ValueError("private_key is not an Ed25519 key")
        else:
            raise TypeError("private_key must be an Ed25519PrivateKey, PEM text or a 32-byte seed")
        self._key = key

    def sign(self, payload: str | bytes) -> str:
        """Return the base64 Ed25519 signature of ``payload`` (UTF-8)."""
        m = payload.encode() if isinstance(payload, str) else payload
        return base64.b64encode(self._key.sign(m)).decode()

    def public_key_pem(self) -> str:
        """Return the public key as PEM (what is registered with the venue)."""
        from cryptography.hazmat.primitives import serialization

        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


__all__ = ["ED25519", "HMAC_SHA256", "Ed25519Signer", "HmacSigner", "Signer", "param_text",
           "rest_encode", "ws_payload"]
