"""`Prefer: wait=N` at the door, on this session's Redis: the waiter and the store's `done` channel.

The middleware runs in-process; the broker publish is replaced (the network edge) by a "worker"
that records the outcome through `OperationStore.finish`/`fail` from a thread, as a real worker
does. The path through the broker and a real worker is in test_lifecycle.py.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from async_request.middleware import AsyncRequestMiddleware
from async_request.results.schemas import Accepted
from async_request.settings import Settings
from async_request.store import OperationStore
from tests.asgi_apps import echo_app

pytestmark = pytest.mark.integration
SECRET = "wait-secret-0123456789abcdef0123456789ab"
TOKEN = jwt.encode({"sub": "wait-1", "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")


class FakeWorker:
    """Takes each published envelope and, `after` seconds later, stores `outcome` for it."""

    def __init__(self, store: OperationStore) -> None:
        self.store = store
        self.after = 0.2
        self.outcome = "completed"
        self.published: list[Any] = []
        self.timers: list[threading.Timer] = []

    async def enqueue(self, envelope: Any, *, secret: str, lane: str = "default",
                      sealed: Any = None) -> None:
        self.published.append(envelope)
        timer = threading.Timer(self.after, self._end, args=(envelope.task_id,))
        self.timers.append(timer)
        timer.start()

    def _end(self, task_id: str) -> None:
        if self.outcome == "failed":
            self.store.fail(task_id, "the replay timed out")
            return
        self.store.finish(task_id, {
            "task_id": task_id, "status": 201, "endpoint": "/api/x/",
            "headers": [["content-type", "application/json"], ["x-route", "own"],
                        ["content-length", "11"]],
            "body": base64.b64encode(b'{"made": 1}').decode()})


@pytest.fixture
def setup(
        local_redis_url: str,
) -> Iterator[tuple[AsyncRequestMiddleware, FakeWorker, OperationStore]]:
    store = OperationStore(local_redis_url, 60, secret=SECRET)
    worker = FakeWorker(store)
    settings = Settings(secret_key=SECRET, jwt_secret=SECRET, redis_url=local_redis_url,
                        max_wait_sec=3)
    app = AsyncRequestMiddleware(echo_app, settings=settings, store=store,
                                 dispatcher=worker)  # type: ignore[arg-type]
    yield app, worker, store
    for timer in worker.timers:  # outcomes not stored yet stay unstored: nobody reads them
        timer.cancel()


def call(app: Any, prefer: str, trigger: dict[str, str] | None = None) -> tuple[httpx.Response,
                                                                                float]:
    headers = {"authorization": f"Bearer {TOKEN}", "prefer": prefer, **(trigger or {})}

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://test") as client:
            return await client.post("/api/x/", headers=headers, content=b"{}")

    started = time.monotonic()
    response = asyncio.run(go())
    return response, time.monotonic() - started


@pytest.mark.parametrize("trigger", [{"x-async-request": "true"}, None])
def test_an_outcome_within_the_wait_is_the_route_s_own_response(
        setup: Any, trigger: dict[str, str] | None) -> None:
    app, worker, store = setup
    prefer = "wait=2" if trigger else "respond-async, wait=2"
    response, took = call(app, prefer, trigger)
    task_id = worker.published[0].task_id
    assert response.status_code == 201 and response.content == b'{"made": 1}'
    assert response.headers["x-route"] == "own"
    assert response.headers["preference-applied"] == "wait=2"
    assert response.headers["x-async-request-id"] == task_id
    assert took < 1.5
    operation = store.get(task_id)
    assert operation is not None and operation.state == "completed"


def test_a_failed_outcome_answers_its_status_body(setup: Any) -> None:
    app, worker, _ = setup
    worker.outcome = "failed"
    response, _ = call(app, "respond-async, wait=2")
    body = response.json()
    assert response.status_code == 200 and body["state"] == "failed"
    assert body["error"] == "the replay timed out" and body["status"] is None
    assert response.headers["content-location"].endswith(f"/{body['task_id']}/")


def test_no_outcome_within_the_wait_is_the_202_after_the_wait(setup: Any) -> None:
    app, worker, _ = setup
    worker.after = 5
    response, took = call(app, "respond-async, wait=1")
    assert response.status_code == 202 and 0.9 <= took < 2.5
    Accepted.model_validate(response.json())
    assert response.headers["preference-applied"] == "respond-async, wait=1"


def test_the_wait_is_capped_and_a_malformed_one_ignored(setup: Any) -> None:
    app, worker, _ = setup
    worker.after = 10
    response, took = call(app, "respond-async, wait=600")
    assert response.status_code == 202 and 2.9 <= took < 4.5  # max_wait_sec=3
    assert response.headers["preference-applied"] == "respond-async, wait=3"
    response, took = call(app, "respond-async, wait=abc")
    assert response.status_code == 202 and took < 1
    assert response.headers["preference-applied"] == "respond-async"


def test_an_operation_cancelled_while_waited_for_ends_the_wait(setup: Any) -> None:
    app, worker, store = setup
    worker.after = 30
    threading.Timer(0.3, lambda: store.cancel(worker.published[0].task_id, "user:wait-1")
                    ).start()
    response, took = call(app, "respond-async, wait=3")
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    assert took < 2


def test_a_client_that_leaves_stops_the_wait_and_frees_the_connection(setup: Any) -> None:
    app, worker, store = setup
    worker.after = 30
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": b"{}", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(0.3)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def go() -> int:
        scope = {"type": "http", "method": "POST", "path": "/api/x/", "raw_path": b"/api/x/",
                 "query_string": b"", "headers": [
                     (b"authorization", f"Bearer {TOKEN}".encode()),
                     (b"prefer", b"respond-async, wait=3")]}
        await app(scope, receive, send)
        pool = store.aclient().connection_pool
        return len(pool._in_use_connections)  # type: ignore[attr-defined]

    started = time.monotonic()
    in_use = asyncio.run(go())
    assert time.monotonic() - started < 1.5 and sent == [] and in_use == 0
    operation = store.get(worker.published[0].task_id)
    assert operation is not None and operation.state == "pending"  # it goes on


def test_wait_terminal_returns_at_once_times_out_or_knows_nothing(setup: Any) -> None:
    _, _, store = setup
    ended, pending = str(uuid.uuid4()), str(uuid.uuid4())

    async def go() -> tuple[Any, Any, Any, float]:
        await store.accept(ended, "user:wait-1", "/x/", "GET")
        await store.accept(pending, "user:wait-1", "/x/", "GET")
        store.fail(ended, "boom")
        started = time.monotonic()
        done = await store.wait_terminal(ended, 5)
        quick = time.monotonic() - started
        return done, await store.wait_terminal(pending, 0.5), await store.wait_terminal(
            str(uuid.uuid4()), 5), quick

    done, still, unknown, quick = asyncio.run(go())
    assert done is not None and done.state == "failed" and quick < 0.5
    assert still is None and unknown is None
