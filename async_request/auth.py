"""Who owns a queued request: JWT users and anonymous channels.

Pure functions: `verify_jwt` (PyJWT), `validate_channel`, `resolve_owner` from request headers.
A channel name only ever addresses an anonymous group (`anon:`), so no header can name a user's
group; user ownership comes from a verified token alone.
"""

from __future__ import annotations

import re
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
from async_request.settings import Settings

CHANNEL_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,64}")


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
            "the channel name must be 16 to 64 characters of A-Z, a-z, 0-9, '-' and '_'"
        )
    return name


def verify_jwt(token: str, settings: Settings) -> dict[str, Any]:
    """Verify a JWT (signature, `exp`, `sub`) and return its claims."""
    if not settings.jwt_secret:
        raise AuthenticationError("token verification is not configured (no JWT secret)")
    try:
        claims: dict[str, Any] = jwt.decode(
            token, settings.jwt_secret, algorithms=list(settings.jwt_algorithms),
            options={"require": ["exp", "sub"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthenticationError("the token has expired") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthenticationError("the token is invalid") from exc
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
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
    return Owner("anon", validate_channel(name))
