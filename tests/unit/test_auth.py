"""Owner resolution: JWT users, anonymous channels, and everything refused."""

from __future__ import annotations

import time
from dataclasses import replace

import jwt
import pytest

from async_request.auth import Owner, resolve_owner, validate_channel
from async_request.exceptions import (
    AnonymousDisabledError,
    AuthenticationError,
    InvalidChannelError,
)
from async_request.headers import async_mode
from async_request.settings import Settings

SETTINGS = Settings(secret_key="s" * 32, jwt_secret="s" * 32)


def token(sub: str = "42", exp_in: int = 60, key: str = "s" * 32) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + exp_in}, key, algorithm="HS256")


@pytest.mark.parametrize(("value", "mode"), [
    (None, "sync"), ("", "sync"), ("false", "sync"), ("0", "sync"), (" FALSE ", "sync"),
    ("true", "token"), ("1", "token"), ("True", "token"), ("my-channel-name-0001", "channel"),
])
def test_async_mode(value: str | None, mode: str) -> None:
    assert async_mode(value) == mode


def test_bearer_token_makes_a_user_owner() -> None:
    owner = resolve_owner({"authorization": f"Bearer {token()}"}, SETTINGS)
    assert owner == Owner("user", "42")


def test_token_wins_over_channel_header() -> None:
    owner = resolve_owner({"authorization": f"Bearer {token()}",
                           "x-async-request": "user.42-but-as-channel"}, SETTINGS)
    assert owner.kind == "user"


@pytest.mark.parametrize("headers", [
    {"authorization": "Bearer " + token(exp_in=-10)},
    {"authorization": "Bearer " + token(key="wrong" * 8)},
    {"authorization": "Bearer not-a-jwt"},
    {"authorization": "Basic dXNlcjpwYXNz"},
    {"authorization": "Bearer"},
    {"x-async-request": "true"},
    {},
])
def test_refused_credentials(headers: dict[str, str]) -> None:
    with pytest.raises(AuthenticationError):
        resolve_owner(headers, SETTINGS)


def test_anonymous_channel() -> None:
    owner = resolve_owner({"x-async-request": "abcdefghij_KLMNOP-123"}, SETTINGS)
    assert owner == Owner("anon", "abcdefghij_KLMNOP-123")


@pytest.mark.parametrize("name", ["short", "x" * 65, "user.42:group!!!!", "ümlaut-channel-name",
                                  "has space in the name"])
def test_bad_channel_names(name: str) -> None:
    with pytest.raises(InvalidChannelError):
        validate_channel(name)


def test_anonymous_can_be_disabled() -> None:
    with pytest.raises(AnonymousDisabledError):
        resolve_owner({"x-async-request": "abcdefghij_KLMNOP-123"},
                      replace(SETTINGS, allow_anonymous=False))


def test_owner_parse_round_trip() -> None:
    assert Owner.parse("anon:abc") == Owner("anon", "abc")
    with pytest.raises(ValueError):
        Owner.parse("admin:1")
