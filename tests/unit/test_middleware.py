"""AsyncRequestMiddleware: what passes through, and every refusal before anything is queued."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import httpx
import jwt
import pytest

from async_request.dispatch import message_size
from async_request.middleware import AsyncRequestMiddleware, capture
from async_request.settings import Settings
from async_request.store import OperationStore
from tests.asgi_apps import echo_app

SETTINGS = Settings(secret_key="s" * 32, jwt_secret="s" * 32, max_body_bytes=1000,
                    redis_url="redis://127.0.0.1:1/0")
TOKEN = jwt.encode({"sub": "7", "exp": int(time.time()) + 86400}, "s" * 32, algorithm="HS256")


class Recorder:
    """Wraps echo_app and counts calls, to prove the route did not run."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        await echo_app(scope, receive, send)


async def request(settings: Settings, method: str = "POST", path: str = "/api/x/",
                  headers: dict[str, str] | None = None, content: bytes = b"{}",
                  ) -> tuple[httpx.Response, Recorder]:
    inner = Recorder()
    # Redis on a closed port: anything that reaches the store gets 503, never a 202.
    app = AsyncRequestMiddleware(inner, settings=settings,
                                 store=OperationStore(settings.redis_url, 60,
                                                      secret=settings.secret_key))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.request(method, path, headers=headers, content=content)
    return response, inner


pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("value", [None, "false", "0", ""])
async def test_sync_values_run_the_route(value: str | None) -> None:
    headers = {} if value is None else {"x-async-request": value}
    response, inner = await request(SETTINGS, headers=headers, content=b"hello")
    assert response.status_code == 200 and response.content == b"hello"
    assert inner.calls == 1


async def test_forged_internal_header_is_just_a_header() -> None:
    response, inner = await request(SETTINGS, headers={"x-async-request-internal": "true"})
    assert response.status_code == 200 and inner.calls == 1


async def test_results_path_is_never_queued() -> None:
    response, inner = await request(SETTINGS, "GET", "/api/v1/async_background_response/x/",
                                    headers={"x-async-request": "true"})
    assert inner.calls == 1


@pytest.mark.parametrize(("headers", "status"), [
    ({"x-async-request": "true"}, 401),
    ({"x-async-request": "true", "authorization": "Bearer nope"}, 401),
    ({"x-async-request": "short"}, 400),
    ({"x-async-request": "bad channel name with spaces"}, 400),
])
async def test_refusals_are_problem_json(headers: dict[str, str], status: int) -> None:
    response, inner = await request(SETTINGS, headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["detail"] and body["title"]
    assert inner.calls == 0


async def test_body_over_the_limit_is_413() -> None:
    response, inner = await request(
        SETTINGS, headers={"x-async-request": "true", "authorization": f"Bearer {TOKEN}"},
        content=b"x" * 1001)
    assert response.status_code == 413 and inner.calls == 0
    assert "ASYNC_REQUEST_MAX_BODY_BYTES" in response.json()["detail"]


async def test_unsupported_method_is_405() -> None:
    response, inner = await request(
        SETTINGS, "TRACE", headers={"x-async-request": "true", "authorization": f"Bearer {TOKEN}"},
        content=b"")
    assert response.status_code == 405 and inner.calls == 0


async def test_redis_down_gives_503_and_runs_nothing() -> None:
    response, inner = await request(
        SETTINGS, headers={"x-async-request": "true", "authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 503 and inner.calls == 0
    assert response.headers["retry-after"] == "5"


async def test_anonymous_disabled_is_403() -> None:
    # The same answer as the WebSocket's close code 4403: one mapping for every surface.
    response, inner = await request(replace(SETTINGS, allow_anonymous=False),
                                    headers={"x-async-request": "abcdefghij_KLMNOP-12345"})
    assert response.status_code == 403 and inner.calls == 0
    assert response.headers["content-type"] == "application/problem+json"


async def test_headers_over_the_limit_are_431_naming_limit_and_size() -> None:
    response, inner = await request(
        replace(SETTINGS, max_header_bytes=4096),
        headers={"x-async-request": "true", "authorization": f"Bearer {TOKEN}",
                 "x-big": "h" * 5000})
    assert response.status_code == 431 and inner.calls == 0
    body = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert body["setting"] == "ASYNC_REQUEST_MAX_HEADER_BYTES" and body["limit"] == 4096
    assert body["size"] > 5000 and "retry-after" not in response.headers


async def test_headers_that_seal_above_the_message_limit_are_431() -> None:
    # Under the header limit, but sealed (and base64-encoded by kombu) above the broker's.
    response, inner = await request(
        replace(SETTINGS, kafka_max_message_bytes=8192),
        headers={"x-async-request": "true", "authorization": f"Bearer {TOKEN}",
                 "x-big": "h" * 6000})
    assert response.status_code == 431 and inner.calls == 0
    body = response.json()
    assert body["setting"] == "KAFKA_MAX_MESSAGE_BYTES" and body["limit"] == 8192
    assert body["size"] > 8192


def test_a_body_that_would_not_fit_the_message_travels_aside() -> None:
    settings = replace(SETTINGS, max_body_bytes=10**6, kafka_max_message_bytes=8192)
    scope = {"type": "http", "method": "POST", "path": "/x/", "headers": [],
             "query_string": b""}
    small = capture(scope, b"s" * 1000, task_id="t", owner="user:7", settings=settings)
    big = capture(scope, b"b" * 7000, task_id="t", owner="user:7", settings=settings)
    assert small.body == b"s" * 1000 and small.body_ref is None
    assert big.body is None and big.body_ref == "t" and big.body_size == 7000
    assert message_size(big) <= 8192
