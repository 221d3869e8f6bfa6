"""Seal what a queued request carries before it enters the queue or the store.

Everything of a captured request but its routing fields (task id, owner, method, path) is
sealed: headers (credentials or not: `X-Auth-Token`, `X-CSRFToken` and a thousand other names
carry secrets), the query string (`?access_token=`) and the body (a login's password); so is a
stored response body (an issued token). Kafka topics, Celery's events, Redis and their backups
then hold nothing readable.

We encrypt rather than replace credentials with a signed identity because the replay must run
"as the same user" through the app's *own* authentication, whatever it is (JWT, session cookie,
API key): an encrypted copy of the original headers works with any of them, a signed identity
only with apps that learn to trust it. Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`)
gives confidentiality and integrity; the key is derived with HKDF from
ASYNC_REQUEST_SECRET_KEY (default: Django's SECRET_KEY), so workers and web apps that share
settings share the key, and the key never travels. Rotating the secret makes queued requests
unreadable: they fail with a clear error instead of running as nobody.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from async_request.exceptions import ConfigurationError, EnvelopeError

_INFO = b"async-request credential seal v1"
_CHANNEL_INFO = b"async-request anonymous channel v1:"


@lru_cache(maxsize=8)
def _fernet(secret: str, info: bytes = _INFO) -> Fernet:
    if not secret:
        raise ConfigurationError(
            "setting ASYNC_REQUEST_SECRET_KEY (or Django SECRET_KEY) is empty: "
            "it is needed to seal queued requests and stored results"
        )
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
        secret.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def seal(data: bytes, secret: str, *, info: bytes = _INFO) -> str:
    """Encrypt and authenticate `data` into an opaque ASCII token.

    `info` picks a key of its own for another use (subscription tickets), so nothing sealed for
    one use can be opened as another.
    """
    return _fernet(secret, info).encrypt(data).decode("ascii")


def sealed_length(size: int) -> int:
    """Length of the token `seal` makes of `size` bytes, without encrypting (a size check).

    A Fernet token is version (1) + timestamp (8) + IV (16) + the data padded to whole
    16-byte blocks (PKCS7: always at least one byte) + HMAC (32), in padded base64."""
    raw = 1 + 8 + 16 + (size // 16 + 1) * 16 + 32
    return 4 * ((raw + 2) // 3)


def unseal(token: str, secret: str, *, info: bytes = _INFO) -> bytes:
    """Inverse of `seal`; raise EnvelopeError when the key differs or the token was altered."""
    try:
        return _fernet(secret, info).decrypt(token.encode("ascii"))
    except (InvalidToken, ValueError) as exc:
        raise EnvelopeError(
            "sealed data cannot be opened (secret key changed or data altered)"
        ) from exc


def keyed_hash(value: str, secret: str) -> str:
    """A keyed SHA-256 of `value` (hex, 32 characters): stored instead of a credential."""
    if not secret:
        raise ConfigurationError("setting ASYNC_REQUEST_SECRET_KEY (or Django SECRET_KEY) is "
                                 "empty: it is needed to hash anonymous channel names")
    digest = hmac.new(secret.encode(), _CHANNEL_INFO + value.encode(), hashlib.sha256)
    return digest.hexdigest()[:32]
