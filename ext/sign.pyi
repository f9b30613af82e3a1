"""Type stub of ext.sign (Cython): HMAC-SHA256 request signing with the key prepared once."""
from typing import Final, NoReturn

BytesLike = bytes | bytearray | memoryview

BACKEND: Final[str]  # "SHA256_CTX" (fast path) or "EVP_MD_CTX" (fallback build)

class HmacSigner:
    """HMAC-SHA256 signer; the secret never appears in repr/str/pickle/errors."""

    def __init__(self, secret: BytesLike) -> None:
        """Prepare the key once. TypeError if not bytes-like, ValueError if empty."""
    def sign_hex(self, payload: BytesLike) -> str:
        """Return the 64-char lower-case hex HMAC-SHA256 of ``payload``; TypeError for ``str``."""
    def __reduce__(self) -> NoReturn: ...
    def __copy__(self) -> NoReturn: ...
    def __deepcopy__(self, memo: object) -> NoReturn: ...
