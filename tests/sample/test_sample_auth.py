"""Token endpoint, bearer checks on FastAPI and Django routes, and the demo's commands."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db(transaction=True)

PROBLEM = "application/problem+json"


def assert_unauthorized(response: Any, detail: str) -> None:
    assert response.status_code == 401
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {
        "type": "about:blank",
        "title": "Unauthorized",
        "status": 401,
        "detail": detail,
    }


def test_token_endpoint_issues_a_jwt_for_the_user(client: Any, alice: Any) -> None:
    response = client.post(
        "/api/v1/auth/token/", json={"username": "alice", "password": "alice-pw"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == settings.DEMO_JWT_TTL_SEC
    claims = jwt.decode(body["access_token"], settings.SECRET_KEY, algorithms=["HS256"])
    assert claims["sub"] == str(alice.pk)
    assert claims["exp"] - claims["iat"] == settings.DEMO_JWT_TTL_SEC
    orders = client.get(
        "/api/v1/orders/", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert orders.status_code == 200


def test_token_endpoint_rejects_bad_credentials(client: Any, alice: Any) -> None:
    response = client.post("/api/v1/auth/token/", json={"username": "alice", "password": "x"})
    assert_unauthorized(response, "bad username or password")


def test_token_endpoint_validates_the_body(client: Any) -> None:
    assert client.post("/api/v1/auth/token/", json={"username": "alice"}).status_code == 422


def test_missing_token_is_a_problem_401(client: Any) -> None:
    assert_unauthorized(client.get("/api/v1/orders/"), "missing bearer token")


@pytest.mark.parametrize(
    "authorization",
    ["Bearer not-a-jwt", "Bearer " + jwt.encode({"sub": "1", "exp": 2**40}, "wrong-key-" * 4)],
)
def test_invalid_token_is_a_problem_401(client: Any, authorization: str) -> None:
    response = client.get("/api/v1/orders/", headers={"Authorization": authorization})
    assert_unauthorized(response, "invalid token")


def test_expired_token_is_a_problem_401(client: Any, alice: Any, auth_for: Any) -> None:
    response = client.get("/api/v1/orders/", headers=auth_for(alice, ttl=-10))
    assert_unauthorized(response, "token expired")


def test_replay_accepts_a_token_that_expired_while_queued(
    replay_client: Any, alice: Any, auth_for: Any
) -> None:
    response = replay_client.get("/api/v1/orders/", headers=auth_for(alice, ttl=-10))
    assert response.status_code == 200


def test_inactive_user_is_rejected(client: Any, alice: Any, alice_auth: dict[str, str]) -> None:
    alice.is_active = False
    alice.save()
    response = client.get("/api/v1/orders/", headers=alice_auth)
    assert_unauthorized(response, "unknown or inactive user")


def test_django_view_takes_the_same_bearer_token(client: Any, alice_auth: dict[str, str]) -> None:
    assert client.get("/django/orders/", headers=alice_auth).status_code == 200
    response = client.get("/django/orders/", headers={"Authorization": "Bearer nope"})
    assert_unauthorized(response, "invalid token")


def test_create_demo_user_creates_then_updates(capsys: pytest.CaptureFixture[str]) -> None:
    from django.contrib.auth import authenticate

    call_command("create_demo_user", "carol", "--password", "one")
    call_command("create_demo_user", "carol", "--password", "two")
    out = capsys.readouterr().out
    assert "created user 'carol'" in out
    assert "updated user 'carol'" in out
    assert authenticate(username="carol", password="one") is None
    assert authenticate(username="carol", password="two") is not None


def test_issue_token_prints_a_token_for_the_user(
    alice: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    call_command("issue_token", "alice")
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, settings.SECRET_KEY, algorithms=["HS256"])
    assert claims["sub"] == str(alice.pk)


def test_issue_token_refuses_unknown_users() -> None:
    with pytest.raises(CommandError, match="no active user 'nobody'"):
        call_command("issue_token", "nobody")
