"""`Prefer: respond-async` at the door, and the 202's headers readable by a browser behind CORS.

The middleware runs in-process on this session's Redis; only the dispatch step is replaced
(the network edge), as in tests/fuzz/test_capture_roundtrip.py. The end-to-end path through the
broker and a worker is tests/integration/test_e2e.py.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import jwt
import pytest
from starlette.middleware.cors import CORSMiddleware

from async_request.headers import preferences
from async_request.middleware import AsyncRequestMiddleware
from async_request.settings import Settings
from async_request.store import OperationStore
from tests.asgi_apps import CapturingDispatcher, echo_app

pytestmark = pytest.mark.integration
SECRET = "prefer-secret-0123456789abcdef0123456789"
TOKEN = jwt.encode({"sub": "prefer-1", "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")


Capturing = tuple[AsyncRequestMiddleware, CapturingDispatcher]


def call(app: Any, headers: dict[str, str], method: str = "POST") -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://test") as client:
            return await client.request(method, "/api/x/", headers=headers, content=b"{}")

    return asyncio.run(go())


@pytest.fixture
def middleware(local_redis_url: str) -> Capturing:
    kept = CapturingDispatcher()
    settings = Settings(secret_key=SECRET, jwt_secret=SECRET, redis_url=local_redis_url)
    store = OperationStore(local_redis_url, 60, secret=SECRET)
    return AsyncRequestMiddleware(echo_app, settings=settings, store=store,
                                  dispatcher=kept), kept  # type: ignore[arg-type]


def test_prefer_respond_async_defers_and_says_so(
        middleware: Capturing) -> None:
    app, kept = middleware
    response = call(app, {"authorization": f"Bearer {TOKEN}",
                          "prefer": "wait=0, Respond-Async; x=1"})
    assert response.status_code == 202 and len(kept.published) == 1
    assert response.headers["preference-applied"] == "respond-async"
    assert response.headers["location"].endswith(f"/{kept.published[0].task_id}/")
    plain = call(app, {"authorization": f"Bearer {TOKEN}", "x-async-request": "true"})
    assert plain.status_code == 202 and "preference-applied" not in plain.headers


@pytest.mark.parametrize("prefer", ["respond_async!!", "", "return=minimal", ";;,,", "wait=5"])
def test_other_or_malformed_preferences_run_the_route(
        middleware: Capturing, prefer: str) -> None:
    app, kept = middleware
    response = call(app, {"authorization": f"Bearer {TOKEN}", "prefer": prefer})
    assert response.status_code == 200 and kept.published == []


def test_prefer_without_a_token_is_401(middleware: Capturing) -> None:
    app, kept = middleware
    response = call(app, {"prefer": "respond-async"})
    assert response.status_code == 401 and kept.published == []


def test_a_browser_behind_cors_can_read_location_and_retry_after(
        middleware: Capturing) -> None:
    inner, _ = middleware
    # README's order: CORS outside, the async-request middleware inside it.
    app = CORSMiddleware(inner, allow_origins=["http://front.example"], allow_methods=["*"],
                         allow_headers=["*"])
    response = call(app, {"authorization": f"Bearer {TOKEN}", "x-async-request": "true",
                          "origin": "http://front.example"})
    assert response.status_code == 202
    assert response.headers["access-control-allow-origin"] == "http://front.example"
    exposed = {h.strip().lower() for h in
               response.headers["access-control-expose-headers"].split(",")}
    assert {"location", "retry-after", "preference-applied"} <= exposed


def test_preferences_parse_like_rfc_7240() -> None:
    scope = {"headers": [(b"prefer", b"respond-async, wait=10"), (b"Prefer", b'x="y"; z'),
                         (b"prefer", b"wait=99")]}
    assert preferences(scope) == {"respond-async": "", "wait": "10", "x": "y"}
