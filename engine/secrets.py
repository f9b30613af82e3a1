"""API credentials: loading them without leaking them.

Sources, in order (the first that is present wins, never a mix):

1. the environment -- ``MM_API_KEY`` with ``MM_API_SECRET`` (HMAC key) or
   ``MM_ED25519_PRIVATE_KEY_PATH`` (path of an Ed25519 private key, PEM);
2. the secrets file (``paths.secrets_file`` of the configuration), TOML::

       api_key = "..."
       api_secret = "..."                       # HMAC key, or:
       ed25519_private_key_path = "ed25519.pem"  # relative to this file's folder

A Binance API key has one type, so exactly one of the HMAC secret and the
Ed25519 key must be given. Every file read here (secrets file, PEM) must be a
regular file owned by the current user with no group/other permission bits
(``mode & 0o077 == 0``, i.e. ``chmod 600``); otherwise it is refused. Error
messages name the file, the key and the problem, never the content.

Values are held in :class:`Secret`, whose ``repr``/``str``/``format`` show
``***``, which cannot be pickled, and whose value is read only with
:meth:`Secret.reveal` (by the signer). Every ``Secret`` registers its value
(and, for a multi-line PEM, each long line) for redaction:
:func:`redact` replaces registered values in any text, and
:class:`RedactSecretsFilter` does that to log records (message, arguments,
exception and stack text). :func:`install_redaction` puts the filter on the
root logger *and its handlers* (a logger's filters do not see records
propagated from child loggers, its handlers do) and, by default, also wraps the
log-record factory so records reaching handlers added later are redacted too.
"""
from __future__ import annotations

import hmac
import logging
import os
import re
import stat
import threading
import tomllib
from pathlib import Path
from typing import Any, Iterable, Mapping

ENV_API_KEY = "MM_API_KEY"
ENV_API_SECRET = "MM_API_SECRET"
ENV_ED25519_KEY_PATH = "MM_ED25519_PRIVATE_KEY_PATH"
ENV_VARS = (ENV_API_KEY, ENV_API_SECRET, ENV_ED25519_KEY_PATH)
REDACTED = "***"
FILE_KEYS = ("api_key", "api_secret", "ed25519_private_key_path")
HMAC = "HMAC"
ED25519 = "ED25519"

# Shorter registered values are not redacted: a 1-3 character "secret" would blank out
# ordinary words of every log line (real keys are 64 characters).
MIN_REDACT_LEN = 4
# PEM body lines this long are registered on their own, so a partial PEM in a log is redacted.
_MIN_FRAGMENT_LEN = 16
# A secrets file or PEM larger than this is not a secrets file.
_MAX_FILE_BYTES = 1 << 20
_TOML_POS_RE = re.compile(r"\((at line \d+, column \d+|at end of document)\)")


class SecretsError(ValueError):
    """Credentials missing, malformed, or in a file with unsafe permissions (never shows the content)."""


# -- the registry of values to redact -----------------------------------------------------------
_lock = threading.Lock()
_values: set[str] = set()
_pattern: re.Pattern[str] | None = None


def _fragments(value: str) -> list[str]:
    out = [value]
    if "\n" in value:
        out.append(value.strip())
        for line in value.splitlines():
            s = line.strip()
            if len(s) >= _MIN_FRAGMENT_LEN and not s.startswith("-----"):
                out.append(s)
    return [v for v in out if len(v) >= MIN_REDACT_LEN]


def register_secret(value: "str | Secret") -> None:
    """Register a value (and its PEM lines) to be replaced by ``***`` in logs and :func:`redact`."""
    global _pattern
    v = value.reveal() if isinstance(value, Secret) else value
    frags = _fragments(v)
    with _lock:
        if all(f in _values for f in frags):
            return
        _values.update(frags)
        _pattern = None


def _current_pattern() -> re.Pattern[str] | None:
    global _pattern
    p = _pattern
    if p is None and _values:
        with _lock:
            # Longest first, so a value containing another is replaced whole.
            p = _pattern = re.compile("|".join(re.escape(v) for v in sorted(_values, key=len, reverse=True)))
    return p


def redact(text: str) -> str:
    """Return ``text`` with every registered secret value replaced by ``***``."""
    p = _current_pattern()
    if p is None or not text:
        return text
    return p.sub(REDACTED, text)


class Secret:
    """A secret string that does not show itself.

    ``repr`` is ``Secret('***')``, ``str`` and every ``format`` spec give ``***``;
    pickling raises ``TypeError`` (it would write the value out); equality is
    constant-time. The value is registered for redaction (:func:`redact`).

    Parameters
    ----------
    value : str
    register : bool
        Register the value for redaction (default True).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str, *, register: bool = True) -> None:
        if not isinstance(value, str):
            raise TypeError(f"Secret value must be a str, got {type(value).__name__}")
        self._value = value
        if register:
            register_secret(value)

    def reveal(self) -> str:
        """Return the value. Only the request signer should call this."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{REDACTED}')"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError("a Secret cannot be pickled")

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")

    def __getstate__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")

    def __copy__(self) -> "Secret":
        return self

    def __deepcopy__(self, memo: Any) -> "Secret":
        return self


# -- logging ---------------------------------------------------------------------------------------
_exc_formatter = logging.Formatter()


def redact_record(record: logging.LogRecord) -> None:
    """Redact a log record in place: rendered message (then ``args=None``), exception and stack text."""
    if _current_pattern() is None:
        return
    try:
        msg = record.getMessage()
    except Exception:  # noqa: BLE001 - logging would print msg and args raw in handleError
        msg = f"{record.msg} [arguments not shown: the message could not be formatted]"
        record.msg = redact(msg)
        record.args = None
    else:
        red = redact(msg)
        if red != msg:
            record.msg = red
            record.args = None
    if record.exc_info and record.exc_info[0] is not None:
        text = record.exc_text or _exc_formatter.formatException(record.exc_info)
        red = redact(text)
        if red != text:
            # Formatters append exc_text as is when exc_info is None.
            record.exc_text = red
            record.exc_info = None
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


class RedactSecretsFilter(logging.Filter):
    """Logging filter replacing registered secrets (:func:`register_secret`) with ``***``; never drops a record.

    Parameters
    ----------
    secrets : iterable of str or Secret, optional
        Extra values to register.
    """

    def __init__(self, secrets: Iterable["str | Secret"] = (), name: str = "") -> None:
        super().__init__(name)
        for s in secrets:
            register_secret(s)

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; return True."""
        redact_record(record)
        return True


def install_redaction(logger: logging.Logger | None = None, *, record_factory: bool = True) -> RedactSecretsFilter:
    """Install a :class:`RedactSecretsFilter` on ``logger`` (default: root) and on each of its handlers.

    Call it after logging is configured. With ``record_factory`` (default) the log-record
    factory is wrapped as well, so records of every logger are redacted when created,
    whatever handler they reach later. Idempotent; undo with :func:`uninstall_redaction`.
    """
    target = logger if logger is not None else logging.getLogger()
    f = next((x for x in target.filters if isinstance(x, RedactSecretsFilter)), None)
    if f is None:
        f = RedactSecretsFilter()
        target.addFilter(f)
    for h in target.handlers:
        if not any(isinstance(x, RedactSecretsFilter) for x in h.filters):
            h.addFilter(f)
    if record_factory:
        current = logging.getLogRecordFactory()
        if not getattr(current, "_mm_redacting", False):
            def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
                rec = current(*args, **kwargs)
                redact_record(rec)
                return rec

            factory._mm_redacting = True  # type: ignore[attr-defined]
            factory._mm_previous = current  # type: ignore[attr-defined]
            logging.setLogRecordFactory(factory)
    return f


def uninstall_redaction(logger: logging.Logger | None = None) -> None:
    """Remove what :func:`install_redaction` installed on ``logger`` (default: root) and the factory."""
    target = logger if logger is not None else logging.getLogger()
    for obj in [target, *target.handlers]:
        for x in [x for x in obj.filters if isinstance(x, RedactSecretsFilter)]:
            obj.removeFilter(x)
    current = logging.getLogRecordFactory()
    if getattr(current, "_mm_redacting", False):
        logging.setLogRecordFactory(current._mm_previous)  # type: ignore[attr-defined]


# -- reading files ---------------------------------------------------------------------------------
def read_private_file(path: str | os.PathLike[str], what: str = "secrets file") -> str:
    """Return the text of an owner-only file; refuse it if group/others have any permission.

    Raises
    ------
    SecretsError
        Missing, unreadable, not a regular file, owned by another user, ``mode & 0o077 != 0``,
        too large or not UTF-8. The message never contains the file's content.
    """
    p = os.fspath(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise SecretsError(f"{what} {p}: no such file") from None
    except OSError as e:
        raise SecretsError(f"{what} {p}: cannot open: {e.strerror}") from None
    try:
        # fstat the opened file (not the path): what is checked is what is read.
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SecretsError(f"{what} {p}: not a regular file")
        euid = os.geteuid()
        if st.st_uid != euid and euid != 0:
            raise SecretsError(f"{what} {p}: owned by uid {st.st_uid}, not by this user (uid {euid}); "
                               "it must belong to the user running the engine")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise SecretsError(f"{what} {p}: permissions {mode:04o} give group/others access; "
                               f"it must be readable by its owner only: chmod 600 {p}")
        if st.st_size > _MAX_FILE_BYTES:
            raise SecretsError(f"{what} {p}: larger than {_MAX_FILE_BYTES} bytes")
        chunks = []
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
    finally:
        os.close(fd)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise SecretsError(f"{what} {p}: not UTF-8 text") from None


def _read_pem(path: str | os.PathLike[str], what: str) -> Secret:
    text = read_private_file(path, what)
    if "-----BEGIN" not in text or "PRIVATE KEY-----" not in text:
        raise SecretsError(f"{what} {os.fspath(path)}: not a PEM private key (no '-----BEGIN ... PRIVATE KEY-----')")
    return Secret(text)


# -- credentials -----------------------------------------------------------------------------------
class Credentials:
    """An API key and its signing key (HMAC secret or Ed25519 private key), all :class:`Secret`.

    Attributes
    ----------
    api_key : Secret
    api_secret : Secret or None
        HMAC-SHA256 secret.
    ed25519_private_key : Secret or None
        PEM text.
    source : str
        ``"environment"`` or the secrets file's path.
    """

    __slots__ = ("api_key", "api_secret", "ed25519_private_key", "source")

    def __init__(self, api_key: Secret, api_secret: Secret | None = None,
                 ed25519_private_key: Secret | None = None, source: str = "") -> None:
        if not api_key:
            raise SecretsError(f"{source or 'credentials'}: the API key is empty")
        if (api_secret is None) == (ed25519_private_key is None):
            raise SecretsError(f"{source or 'credentials'}: give exactly one of the HMAC secret and the Ed25519 "
                               "private key (a Binance API key has one type)")
        self.api_key = api_key
        self.api_secret = api_secret
        self.ed25519_private_key = ed25519_private_key
        self.source = source

    @property
    def kind(self) -> str:
        """``"HMAC"`` or ``"ED25519"``."""
        return HMAC if self.api_secret is not None else ED25519

    def signer(self) -> Any:
        """Return the request signer (:class:`engine.orders.signing.HmacSigner` or ``Ed25519Signer``)."""
        from engine.orders.signing import Ed25519Signer, HmacSigner

        if self.api_secret is not None:
            return HmacSigner(self.api_key.reveal(), self.api_secret.reveal())
        assert self.ed25519_private_key is not None
        try:
            return Ed25519Signer(self.api_key.reveal(), self.ed25519_private_key.reveal())
        except ValueError as e:
            # Ed25519Signer's messages never include the key; keep ours as clear.
            raise SecretsError(f"{self.source}: Ed25519 private key unusable: {e}") from None

    def __repr__(self) -> str:
        return f"Credentials(kind={self.kind}, source={self.source!r}, api_key={REDACTED})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("Credentials cannot be pickled")


def _nonempty(value: str | None, name: str, where: str) -> Secret | None:
    if value is None:
        return None
    v = value.strip()
    if not v:
        raise SecretsError(f"{where}: {name} is empty")
    if any(c.isspace() for c in v):
        raise SecretsError(f"{where}: {name} contains blanks")
    return Secret(v)


def credentials_from_env(env: Mapping[str, str]) -> Credentials:
    """Read ``MM_API_KEY`` + ``MM_API_SECRET`` or ``MM_ED25519_PRIVATE_KEY_PATH`` from ``env``."""
    where = "environment"
    if not env.get(ENV_API_KEY):
        raise SecretsError(f"{where}: {ENV_API_KEY} is not set (but {ENV_API_SECRET} or "
                           f"{ENV_ED25519_KEY_PATH} is)")
    key = _nonempty(env.get(ENV_API_KEY), ENV_API_KEY, where)
    secret = _nonempty(env.get(ENV_API_SECRET), ENV_API_SECRET, where) if env.get(ENV_API_SECRET) else None
    pem = None
    if env.get(ENV_ED25519_KEY_PATH):
        pem = _read_pem(Path(env[ENV_ED25519_KEY_PATH]).expanduser(), f"{ENV_ED25519_KEY_PATH} file")
    assert key is not None
    return Credentials(key, secret, pem, where)


def credentials_from_file(path: str | os.PathLike[str]) -> Credentials:
    """Read the owner-only TOML secrets file at ``path`` (keys: :data:`FILE_KEYS`)."""
    p = Path(path).expanduser()
    where = f"secrets file {p}"
    text = read_private_file(p)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = _TOML_POS_RE.search(str(e))
        pos = f" ({m.group(1)})" if m else ""
        raise SecretsError(f"{where}: not valid TOML{pos}; the content is not shown") from None
    for k, v in doc.items():
        if k not in FILE_KEYS:
            raise SecretsError(f"{where}: unknown key {k!r} (allowed: {', '.join(FILE_KEYS)})")
        if not isinstance(v, str):
            raise SecretsError(f"{where}: {k} must be a string")
    if "api_key" not in doc:
        raise SecretsError(f"{where}: api_key is missing")
    key = _nonempty(doc.get("api_key"), "api_key", where)
    secret = _nonempty(doc.get("api_secret"), "api_secret", where)
    pem = None
    if doc.get("ed25519_private_key_path"):
        kp = Path(doc["ed25519_private_key_path"]).expanduser()
        if not kp.is_absolute():
            kp = p.resolve().parent / kp
        pem = _read_pem(kp, "ed25519_private_key_path file")
    elif "ed25519_private_key_path" in doc:
        raise SecretsError(f"{where}: ed25519_private_key_path is empty")
    assert key is not None
    return Credentials(key, secret, pem, str(p))


def load_credentials(secrets_file: str | os.PathLike[str] | None = None,
                     env: Mapping[str, str] | None = None, *, scrub_env: bool = False) -> Credentials:
    """Load the credentials: from the environment if any ``MM_*`` variable is set, else from ``secrets_file``.

    Parameters
    ----------
    secrets_file : path, optional
        ``paths.secrets_file`` of the configuration (``""``/None: environment only).
    env : mapping, optional
        Default ``os.environ``.
    scrub_env : bool
        Remove ``MM_API_SECRET`` from ``env`` once read (child processes then do not inherit it).

    Raises
    ------
    SecretsError
    """
    e = os.environ if env is None else env
    if any(e.get(k) for k in ENV_VARS):
        creds = credentials_from_env(e)
        if scrub_env and hasattr(e, "pop"):
            e.pop(ENV_API_SECRET, None)
        return creds
    if secrets_file:
        return credentials_from_file(secrets_file)
    raise SecretsError(f"no credentials: set {ENV_API_KEY} and {ENV_API_SECRET} (HMAC) or "
                       f"{ENV_ED25519_KEY_PATH} (Ed25519), or set paths.secrets_file in the configuration")


__all__ = ["Credentials", "ENV_API_KEY", "ENV_API_SECRET", "ENV_ED25519_KEY_PATH", "FILE_KEYS", "REDACTED",
           "RedactSecretsFilter", "Secret", "SecretsError", "credentials_from_env", "credentials_from_file",
           "install_redaction", "load_credentials", "read_private_file", "redact", "redact_record",
           "register_secret", "uninstall_redaction"]
