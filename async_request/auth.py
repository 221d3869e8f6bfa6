"""Who owns a queued request: JWT users and anonymous channels.

Pure functions: `verify_jwt` (PyJWT), `validate_channel`, `resolve_owner` from request headers.
A channel name only ever addresses an anonymous group (`anon:`), so no header can name a user's
group; user ownership comes from a verified token alone.

An anonymous channel name is the only credential of its client: whoever knows it reads its
results. So it must be unguessable (`validate_channel`: at least 22 characters, about 128 bits
as base64url, of at least 10 different characters; `new_channel()` makes one), and it is never
stored or logged: the owner is `anon:<keyed hash of the name>`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import jwt

from async_request.exceptions import (
    AnonymousDisabledError,
    AuthenticationError,
    InvalidChannelError,
)
from async_request.headers import ASYNC_HEADER, async_mode
from async_request.seal import keyed_hash
from async_request.settings import Settings

logger = logging.getLogger(__name__)

CHANNEL_PATTERN = re.compile(r"[A-Za-z0-9_-]{22,64}")
#: A random name has many different characters; "aaaa…" or "abab…" has few.
CHANNEL_MIN_DISTINCT = 10
#: Tokens `verify_jwt` remembers as verified, per process (a client sends the same one again
#: and again: decoding it was 7 % of the web server's CPU in a burst, docs/benchmarks.md).
VERIFIED_TOKENS = 1024
#: digest of (secret, algorithms, token) → (claims, exp): accepted tokens only.
_verified: dict[bytes, tuple[dict[str, Any], float]] = {}


@dataclass(frozen=True)
class Owner:
    """The owner of a task: a user (JWT `sub`) or an anonymous channel."""

    kind: Literal["user", "anon"]
    ident: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.ident}"

    @classmethod
    def parse(cls, text: str) -> Owner:
        """Inverse of `str(owner)`; raises ValueError for anything else."""
        kind, _, ident = text.partition(":")
        if kind not in ("user", "anon") or not ident:
            raise ValueError(f"not an owner: {text!r}")
        return cls(kind, ident)  # type: ignore[arg-type]


def validate_channel(name: str) -> str:
    """Return `name` if it is a valid anonymous channel name, else raise InvalidChannelError."""
    name = name.strip()
    if not CHANNEL_PATTERN.fullmatch(name):
        raise InvalidChannelError(
            "the channel name must be 22 to 64 characters of A-Z, a-z, 0-9, '-' and '_' "
            "(make one with secrets.token_urlsafe(16))"
        )
    if len(set(name)) < CHANNEL_MIN_DISTINCT:
        raise InvalidChannelError(
            "the channel name is guessable: use a random one (secrets.token_urlsafe(16)), "
            f"with at least {CHANNEL_MIN_DISTINCT} different characters"
        )
    return name


def new_channel() -> str:
    """A fresh random channel name for an anonymous client (128 bits, base64url)."""
    return secrets.token_urlsafe(16)


def _reason(exc: jwt.InvalidTokenError) -> str:
    """Why PyJWT refused a token, in words a client can act on (never the token itself)."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "the token has expired"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"the token is invalid: `{exc.claim}` is missing"
    if isinstance(exc, jwt.exceptions.InvalidSubjectError):
        return "the token is invalid: `sub` must be a string"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "the token is not valid yet (`nbf` or `iat` in the future)"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "the token is invalid: its signature does not match (another key?)"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "the token is invalid: its algorithm is not accepted (ASYNC_REQUEST_JWT_ALGORITHMS)"
    if isinstance(exc, jwt.DecodeError):
        return "the token is invalid: it is not a JWT"
    return "the token is invalid"


def verify_jwt(token: str, settings: Settings) -> dict[str, Any]:
    """Verify a JWT (signature, `exp`, `sub`) and return its claims.

    AuthenticationError says why a token is refused; the reason is also logged at INFO (the
    token never is), so "401" in a client has an answer in the server's log. A token accepted
    before, with the same secret and algorithms, is accepted again without decoding until its
    `exp`: its signature cannot have changed, and `nbf` or `iat` were already past. Refused
    tokens are not remembered, nor is any token itself: the cache's keys are digests.
    """
    if not settings.jwt_secret:
        raise AuthenticationError("token verification is not configured (no JWT secret)")
    key = hashlib.sha256("\0".join((settings.jwt_secret, *settings.jwt_algorithms,
                                     token)).encode()).digest()
    known = _verified.get(key)
    if known is not None and time.time() < known[1]:
        return dict(known[0])
    claims = _decode(token, settings)
    if len(_verified) >= VERIFIED_TOKENS:
        _verified.clear()  # a burst of distinct tokens: start again rather than track age
    _verified[key] = (claims, float(claims["exp"]))
    return dict(claims)


def _decode(token: str, settings: Settings) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token, settings.jwt_secret, algorithms=list(settings.jwt_algorithms),
            options={"require": ["exp", "sub"]},
        )
    except jwt.InvalidTokenError as exc:
        reason = _reason(exc)
        logger.info("refused a Bearer token: %s (%s)", reason, type(exc).__name__)
        raise AuthenticationError(reason) from exc
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        logger.info("refused a Bearer token: it has no subject")
        raise AuthenticationError("the token has no subject")
    return claims


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an `Authorization: Bearer` header; raise if the header is malformed."""
    value = headers.get("authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("the Authorization header must be 'Bearer <token>'")
    return token.strip()


def user_owner(token: str, settings: Settings) -> Owner:
    """Owner of a verified token."""
    return Owner("user", str(verify_jwt(token, settings)["sub"]))


def resolve_owner(headers: Mapping[str, str], settings: Settings) -> Owner:
    """Owner of a request from its lower-cased headers; raise AuthenticationError if none.

    A valid Bearer token wins. Without `Authorization`, an `X-Async-Request: <channel>` value
    names an anonymous owner (when ASYNC_REQUEST_ALLOW_ANONYMOUS is on).
    """
    token = bearer_token(headers)
    if token is not None:
        return user_owner(token, settings)
    value = headers.get(ASYNC_HEADER)
    if async_mode(value) != "channel" or value is None:
        raise AuthenticationError(
            "send 'Authorization: Bearer <token>', or 'X-Async-Request: <channel name>' "
            "for an anonymous client"
        )
    return channel_owner(value, settings)


def channel_owner(name: str, settings: Settings) -> Owner:
    """Owner of an anonymous channel name; refused when anonymous use is off or the name is bad."""
    if not settings.allow_anonymous:
        raise AnonymousDisabledError("anonymous async requests are disabled; send a Bearer token")
    return Owner("anon", keyed_hash(validate_channel(name), settings.secret_key))
