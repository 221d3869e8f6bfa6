"""Owner resolution: JWT users, anonymous channels, and everything refused."""

from __future__ import annotations

import time
from dataclasses import replace

import jwt
import pytest

from async_request.auth import Owner, new_channel, resolve_owner, validate_channel
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


def test_a_remembered_token_is_still_refused_after_its_exp_or_with_another_key() -> None:
    short = jwt.encode({"sub": "7", "exp": time.time() + 1.0}, "s" * 32, algorithm="HS256")
    headers = {"authorization": f"Bearer {short}"}
    assert resolve_owner(headers, SETTINGS) == Owner("user", "7")
    assert resolve_owner(headers, SETTINGS) == Owner("user", "7")  # from the cache
    with pytest.raises(AuthenticationError, match="signature"):
        resolve_owner(headers, replace(SETTINGS, jwt_secret="t" * 32))
    with pytest.raises(AuthenticationError, match="algorithm"):
        resolve_owner(headers, replace(SETTINGS, jwt_algorithms=("HS512",)))
    time.sleep(1.1)
    with pytest.raises(AuthenticationError, match="expired"):
        resolve_owner(headers, SETTINGS)


def test_anonymous_channel() -> None:
    owner = resolve_owner({"x-async-request": "abcdefghij_KLMNOP-12345"}, SETTINGS)
    # Stored and logged as a keyed hash: the name is the anonymous client's only credential.
    assert owner.kind == "anon" and "abcdefghij" not in str(owner)
    assert owner == resolve_owner({"x-async-request": "abcdefghij_KLMNOP-12345"}, SETTINGS)
    assert owner != resolve_owner({"x-async-request": "abcdefghij_KLMNOP-12346"}, SETTINGS)
    other_key = replace(SETTINGS, secret_key="another-secret-" * 3)
    assert owner != resolve_owner({"x-async-request": "abcdefghij_KLMNOP-12345"}, other_key)


def test_new_channels_are_valid_and_random() -> None:
    names = {new_channel() for _ in range(100)}
    assert len(names) == 100
    assert all(validate_channel(name) == name for name in names)


@pytest.mark.parametrize("name", ["short", "x" * 65, "user.42:group!!!!", "ümlaut-channel-name",
                                  "has space in the name", "aaaaaaaaaaaaaaaa",
                                  "my-channel-name-0001", "a" * 22, "abababababababababababab",
                                  "0123401234012340123401"])
def test_bad_channel_names(name: str) -> None:
    with pytest.raises(InvalidChannelError):
        validate_channel(name)


def test_anonymous_can_be_disabled() -> None:
    with pytest.raises(AnonymousDisabledError):
        resolve_owner({"x-async-request": "abcdefghij_KLMNOP-12345"},
                      replace(SETTINGS, allow_anonymous=False))


def test_owner_parse_round_trip() -> None:
    assert Owner.parse("anon:abc") == Owner("anon", "abc")
    with pytest.raises(ValueError):
        Owner.parse("admin:1")


@pytest.mark.parametrize(("claims", "reason"), [
    ({"sub": "1"}, "`exp` is missing"),
    ({"exp": 4102444800}, "`sub` is missing"),
    ({"sub": 42, "exp": 4102444800}, "`sub` must be a string"),
    ({"sub": "1", "exp": 1}, "the token has expired"),
    ({"sub": "1", "exp": 4102444800, "nbf": 4102444000}, "not valid yet"),
])
def test_a_refused_token_says_why(claims: dict[str, object], reason: str,
                                  caplog: pytest.LogCaptureFixture) -> None:
    signed = jwt.encode(claims, "s" * 32, algorithm="HS256")
    with caplog.at_level("INFO", logger="async_request.auth"), \
            pytest.raises(AuthenticationError, match=reason.replace("`", ".")):
        resolve_owner({"authorization": f"Bearer {signed}"}, SETTINGS)
    assert reason in caplog.text
    assert signed not in caplog.text


def test_a_token_signed_with_another_key_says_so() -> None:
    with pytest.raises(AuthenticationError, match="signature does not match"):
        resolve_owner({"authorization": f"Bearer {token(key='w' * 32)}"}, SETTINGS)
    with pytest.raises(AuthenticationError, match="not a JWT"):
        resolve_owner({"authorization": "Bearer abc"}, SETTINGS)
