"""After the 202, on the real stack: states and times, cancel, my operations, expiry.

The web app, broker, Redis and worker are the session's (tests/live_fixtures.py); the cancel
test stops the worker, queues and cancels 1,000 order creations, starts a worker again and
counts the orders that were created: none.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from async_request.auth import Owner
from async_request.exceptions import OperationGoneError, UnknownOperationError
from async_request.results.status import owned
from async_request.store import OperationStore
from tests.integration.stack import IntegrationStack, auth

pytestmark = pytest.mark.integration
RESULTS = "/api/v1/async_background_response/"
LIFECYCLE = {"task_id", "state", "method", "endpoint", "created_at", "started_at",
             "finished_at", "expires_at", "attempts"}


@pytest.fixture(scope="module")
def carol(stack: IntegrationStack) -> str:
    return stack.create_user("carol_life")


@pytest.fixture(scope="module")
def dave(stack: IntegrationStack) -> str:
    return stack.create_user("dave_life")


def defer(http: httpx.Client, token: str, path: str = "/api/v1/analytics/slow/?seconds=0.3",
          method: str = "GET", **kwargs: Any) -> str:
    response = http.request(method, path, headers=auth(token, **{"x-async-request": "true"}),
                            **kwargs)
    assert response.status_code == 202, response.text
    return str(response.json()["meta"]["async_request_id"])


def wait_terminal(http: httpx.Client, token: str, task_id: str) -> httpx.Response:
    deadline = time.monotonic() + 60
    while True:
        response = http.get(f"{RESULTS}{task_id}/", headers=auth(token))
        if response.status_code != 202 or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def test_every_state_carries_times_and_while_running_says_when_to_look_again(
        http: httpx.Client, carol: str) -> None:
    task_id = defer(http, carol, "/api/v1/analytics/slow/?seconds=1")
    early = http.get(f"{RESULTS}{task_id}/", headers=auth(carol))
    assert early.status_code == 202
    assert early.headers["location"] == f"{RESULTS}{task_id}/"
    assert 1 <= int(early.headers["retry-after"]) <= 10
    body = early.json()
    assert set(body) >= LIFECYCLE and body["state"] in ("pending", "running")
    assert body["method"] == "GET" and body["endpoint"] == "/api/v1/analytics/slow/"
    datetime.fromisoformat(body["created_at"].replace("Z", "+00:00"))
    done = wait_terminal(http, carol, task_id)
    assert done.status_code == 200 and "retry-after" not in done.headers
    final = done.json()
    assert final["state"] == "completed" and final["status"] == 200 and final["attempts"] == 1
    assert {"headers", "response", "encoding"} <= set(final)  # the original's fields stay
    assert final["created_at"] <= final["started_at"] <= final["finished_at"] < final["expires_at"]


def test_cancel_an_ended_operation_is_409_and_names_the_state(http: httpx.Client,
                                                              carol: str) -> None:
    task_id = defer(http, carol, "/api/v1/health/")
    assert wait_terminal(http, carol, task_id).json()["state"] == "completed"
    refused = http.delete(f"{RESULTS}{task_id}/", headers=auth(carol))
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert "completed" in refused.json()["detail"]


def test_nobody_else_steers_or_sees_an_operation(http: httpx.Client, carol: str,
                                                 dave: str) -> None:
    task_id = defer(http, carol, "/api/v1/health/")
    for request in (http.get(f"{RESULTS}{task_id}/", headers=auth(dave)),
                    http.delete(f"{RESULTS}{task_id}/", headers=auth(dave)),
                    http.delete(f"{RESULTS}{uuid.uuid4()}/", headers=auth(dave))):
        assert request.status_code == 404, request.text
    malformed = http.delete(f"{RESULTS}not-an-id/", headers=auth(dave))
    assert malformed.status_code == 400 and "task_id" in malformed.json()["detail"]
    listed = http.get(RESULTS, headers=auth(dave)).json()["data"]
    assert task_id not in {item["task_id"] for item in listed}


def test_my_operations_newest_first_with_a_cursor_and_filters(http: httpx.Client,
                                                              stack: IntegrationStack) -> None:
    erin = stack.create_user("erin_life")
    ids = [defer(http, erin, "/api/v1/health/") for _ in range(5)]
    for task_id in ids:
        wait_terminal(http, erin, task_id)
    first = http.get(RESULTS, params={"limit": 2}, headers=auth(erin)).json()
    assert [item["task_id"] for item in first["data"]] == ids[::-1][:2]
    assert set(first["data"][0]) >= LIFECYCLE
    second = http.get(RESULTS, params={"limit": 2, "cursor": first["meta"]["next_cursor"]},
                      headers=auth(erin)).json()
    assert [item["task_id"] for item in second["data"]] == ids[::-1][2:4]
    rest = http.get(RESULTS, params={"limit": 50, "cursor": second["meta"]["next_cursor"]},
                    headers=auth(erin)).json()
    assert [item["task_id"] for item in rest["data"]] == ids[:1]
    assert http.get(RESULTS, params={"state": "pending,running"},
                    headers=auth(erin)).json()["data"] == []
    done = http.get(RESULTS, params={"state": "completed"}, headers=auth(erin)).json()
    assert {item["task_id"] for item in done["data"]} == set(ids)
    for params, name in (({"state": "done"}, "state"), ({"limit": "0"}, "limit"),
                         ({"limit": "x"}, "limit"), ({"cursor": "%%%"}, "cursor")):
        bad = http.get(RESULTS, params=params, headers=auth(erin))
        assert bad.status_code == 400 and bad.json()["detail"].startswith(name), bad.text


def test_a_thousand_cancelled_operations_never_run_even_with_no_worker_up(
        stack: IntegrationStack, http: httpx.Client) -> None:
    frank = stack.create_user("frank_life")
    before = len(http.get("/api/v1/orders/?limit=1000", headers=auth(frank)).json())
    assert stack.worker is not None
    stack._stack.stop_service(stack.worker)  # every worker is down from here
    stack.worker = None

    async def send_all() -> list[str]:
        limits = asyncio.Semaphore(16)
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as client:
            async def one(i: int) -> str:
                async with limits:
                    response = await client.post(
                        "/api/v1/orders/", json={"title": f"never {i}", "amount": "1.00"},
                        headers=auth(frank, **{"x-async-request": "true"}))
                    assert response.status_code == 202, response.text
                    task_id = str(response.json()["meta"]["async_request_id"])
                    cancelled = await client.delete(f"{RESULTS}{task_id}/", headers=auth(frank))
                    assert cancelled.status_code == 200 and cancelled.json()["state"] == (
                        "cancelled"), cancelled.text
                    return task_id

            return await asyncio.gather(*(one(i) for i in range(1000)))

    ids = asyncio.run(send_all())
    again = http.delete(f"{RESULTS}{ids[0]}/", headers=auth(frank))
    assert again.status_code == 200 and again.json()["state"] == "cancelled"  # idempotent

    worker = stack.restart_worker()
    log = Path(str(worker.log))
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        seen = log.read_text(errors="replace").count("was cancelled before it ran")
        if seen >= len(ids):
            break
        time.sleep(0.5)
    assert seen >= len(ids), f"the worker consumed {seen} of {len(ids)} cancelled messages"
    after = len(http.get("/api/v1/orders/?limit=1000", headers=auth(frank)).json())
    assert after == before, f"{after - before} cancelled orders were created"
    states = {http.get(f"{RESULTS}{task_id}/", headers=auth(frank)).json()["state"]
              for task_id in ids[:50]}
    assert states == {"cancelled"}


def test_an_expired_operation_is_gone_for_its_owner_and_unknown_to_others(
        local_redis_url: str) -> None:
    store = OperationStore(local_redis_url, expires_sec=1, secret="s" * 32)
    task_id = str(uuid.uuid4())
    asyncio.run(store.accept(task_id, "user:g1", "/x/", "GET"))
    assert owned(task_id, Owner("user", "g1"), store).state == "pending"
    time.sleep(1.5)
    with pytest.raises(OperationGoneError):
        owned(task_id, Owner("user", "g1"), store)
    with pytest.raises(UnknownOperationError):
        owned(task_id, Owner("user", "g2"), store)


def test_cancelling_a_running_route_stops_it_and_frees_the_worker(
        stack: IntegrationStack, http: httpx.Client, carol: str) -> None:
    stack.ensure_worker()
    task_id = defer(http, carol, "/api/v1/analytics/slow/?seconds=30")
    deadline = time.monotonic() + 30
    while http.get(f"{RESULTS}{task_id}/", headers=auth(carol)).json()["state"] != "running":
        assert time.monotonic() < deadline, "the slow route never started"
        time.sleep(0.1)
    asked = time.monotonic()
    cancelling = http.delete(f"{RESULTS}{task_id}/", headers=auth(carol))
    assert cancelling.status_code == 202 and cancelling.json()["cancel_requested"] is True
    ended = wait_terminal(http, carol, task_id).json()
    took = time.monotonic() - asked
    assert ended["state"] == "cancelled" and ended["status"] is None, ended
    assert took < 20, f"a 30 s route took {took:.1f} s to stop after its cancel"
    # The worker slot is free again: the next request runs.
    after = defer(http, carol, "/api/v1/health/")
    assert wait_terminal(http, carol, after).json()["state"] == "completed"
