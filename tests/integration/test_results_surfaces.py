"""The FastAPI router and the Django URLconf of the results endpoints: the same answers.

Both read this session's Redis; each request goes once to each surface (FastAPI in-process
through httpx, Django through its test client and `async_request.results.urls`), and the status,
the body and the headers that carry meaning must be equal.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from django.conf import settings
from django.test import AsyncClient, override_settings
from fastapi import FastAPI

from async_request.results.fastapi import router
from async_request.settings import reset_settings
from async_request.store import OperationStore

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
RESULTS = "/api/v1/async_background_response/"
KEPT_HEADERS = ("content-type", "location", "retry-after", "www-authenticate")


@pytest.fixture
def store(local_redis_url: str) -> Iterator[OperationStore]:
    with override_settings(ASYNC_REQUEST_REDIS_URL=local_redis_url,
                           ROOT_URLCONF="tests.django_results_urls"):
        reset_settings()
        yield OperationStore(local_redis_url, 60, secret=settings.SECRET_KEY)
    reset_settings()


def token(sub: str) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 600}, settings.SECRET_KEY,
                      algorithm="HS256")


def both(method: str, path: str, headers: dict[str, str]) -> tuple[Any, Any]:
    """(status, body, headers) of the same request on FastAPI and on Django."""
    app = FastAPI()
    app.include_router(router, prefix="/api/v1")

    async def go() -> tuple[Any, Any]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://test") as client:
            fast = await client.request(method, path, headers=headers)
        slow = await AsyncClient().generic(method, path, headers=headers)
        return ((fast.status_code, fast.json(), _kept(fast.headers)),
                (slow.status_code, slow.json(), _kept(slow.headers)))

    return asyncio.run(go())


def _kept(headers: Any) -> dict[str, str]:
    return {name: headers[name] for name in KEPT_HEADERS if name in headers}


def test_status_list_and_cancel_answer_the_same_on_both(store: OperationStore) -> None:
    sub = f"surf-{uuid.uuid4().hex[:8]}"
    owner, auth = f"user:{sub}", {"authorization": f"Bearer {token(sub)}"}
    ids = {state: str(uuid.uuid4()) for state in ("pending", "completed", "failed", "running")}
    for task_id in ids.values():
        asyncio.run(store.accept(task_id, owner, "/api/v1/orders/", "POST"))
    store.finish(ids["completed"], {"task_id": ids["completed"], "status": 201,
                                    "endpoint": "/api/v1/orders/",
                                    "headers": [["content-type", "application/json"]],
                                    "body": base64.b64encode(b'{"id": 1}').decode()})
    store.fail(ids["failed"], "the replay timed out")
    requests = [("GET", f"{RESULTS}{task_id}/", auth) for task_id in ids.values()] + [
        ("GET", RESULTS, auth), ("GET", f"{RESULTS}?state=failed&limit=1", auth),
        ("GET", f"{RESULTS}?limit=0", auth), ("GET", f"{RESULTS}{uuid.uuid4()}/", auth),
        ("GET", f"{RESULTS}not-a-uuid/", auth), ("GET", f"{RESULTS}{ids['pending']}/", {}),
        ("DELETE", f"{RESULTS}{ids['completed']}/", auth),
        ("DELETE", f"{RESULTS}{uuid.uuid4()}/", auth),
    ]
    for method, path, headers in requests:
        fast, slow = both(method, path, headers)
        assert fast == slow, (method, path)
    # Cancelling changes the record: once on each surface, then both read the same again.
    fast, slow = both("DELETE", f"{RESULTS}{ids['pending']}/", auth)
    assert fast[0] == slow[0] == 200 and fast[1]["state"] == slow[1]["state"] == "cancelled"
    assert {k: v for k, v in fast[1].items() if k != "finished_at"} == {
        k: v for k, v in slow[1].items() if k != "finished_at"}


def test_channels_tickets_and_the_openapi_document_on_both(store: OperationStore) -> None:
    fast, slow = both("POST", f"{RESULTS}channels/", {})
    assert fast[0] == slow[0] == 200 and set(fast[1]) == set(slow[1]) == {"channel"}
    auth = {"authorization": f"Bearer {token('surf-ticket')}"}
    fast, slow = both("POST", f"{RESULTS}tickets/", auth)
    assert fast[0] == slow[0] == 201 and set(fast[1]) == set(slow[1]) == {
        "ticket", "expires_at", "expires_in"}
    assert both("POST", f"{RESULTS}tickets/", {}) == both("POST", f"{RESULTS}tickets/", {})

    async def document() -> Any:
        return await AsyncClient().get(f"{RESULTS}openapi.json")

    response = asyncio.run(document())
    app = FastAPI(title="async-request results")
    app.include_router(router, prefix="/api/v1")
    assert response.status_code == 200
    assert response.json()["paths"] == app.openapi()["paths"]
