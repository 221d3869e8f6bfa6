"""Seal credentials (Authorization, Cookie, ...) before they enter the Kafka topic.

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
import json
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from async_request.exceptions import ConfigurationError, EnvelopeError

_INFO = b"async-request credential seal v1"


@lru_cache(maxsize=8)
def _fernet(secret: str) -> Fernet:
    if not secret:
        raise ConfigurationError(
            "setting ASYNC_REQUEST_SECRET_KEY (or Django SECRET_KEY) is empty: "
            "it is needed to seal credentials of queued requests"
        )
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(
        secret.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def seal_headers(headers: list[tuple[str, str]], secret: str) -> str:
    """Encrypt header pairs into an opaque token."""
    return _fernet(secret).encrypt(json.dumps(headers).encode()).decode("ascii")


def unseal_headers(token: str, secret: str) -> list[tuple[str, str]]:
    """Decrypt `seal_headers` output; raise EnvelopeError when the key differs or it was altered."""
    try:
        data = json.loads(_fernet(secret).decrypt(token.encode("ascii")))
    except (InvalidToken, ValueError) as exc:
        raise EnvelopeError(
            "the sealed credentials cannot be opened (secret key changed or data altered)"
        ) from exc
    return [(str(name), str(value)) for name, value in data]
