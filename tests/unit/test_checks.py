"""Start-up checks: a weak or well-known secret is reported, naming the setting."""

from __future__ import annotations

import pytest

from async_request.checks import secret_warnings, weak_secret
from async_request.settings import Settings

STRONG = "Zq3v9Lr0u1Yw7PnT2sX8kD4bG6hJ5mQcE0aVfR"


@pytest.mark.parametrize("secret", [
    "", "short", "django-insecure-" + "x" * 40,
    "dev-only-insecure-key-change-me-0123456789abcdef0123456789", "changeme" * 5,
])
def test_weak_secrets_say_why(secret: str) -> None:
    assert weak_secret(secret)


def test_a_random_secret_passes() -> None:
    assert weak_secret(STRONG) is None
    assert secret_warnings(Settings(secret_key=STRONG, jwt_secret=STRONG)) == []


def test_messages_name_the_setting() -> None:
    [sealing] = secret_warnings(Settings(secret_key="short", jwt_secret="short"))
    assert sealing.id == "async_request.W001" and "ASYNC_REQUEST_SECRET_KEY" in sealing.msg
    found = secret_warnings(Settings(secret_key=STRONG, jwt_secret="django-insecure-abc"))
    assert [m.id for m in found] == ["async_request.W002"]
    assert "ASYNC_REQUEST_JWT_SECRET" in found[0].msg
