"""`Prefer: wait=N` on the real stack: broker, worker, Redis and uvicorn of the session.

The in-process cases (failed, cancelled, a client that leaves) are in test_prefer_wait.py.
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.integration.stack import IntegrationStack, auth

pytestmark = pytest.mark.integration
RESULTS = "/api/v1/async_background_response/"
QUICK = "/api/v1/analytics/slow/?seconds=0"


@pytest.fixture(scope="module")
def erin(stack: IntegrationStack) -> str:
    return stack.create_user("erin_wait")


def test_a_quick_route_answers_its_own_response_and_is_recorded(http: httpx.Client,
                                                                erin: str) -> None:
    plain = http.get(QUICK, headers=auth(erin))
    waited = http.get(QUICK, headers=auth(erin, **{"x-async-request": "true",
                                                   "prefer": "wait=10"}))
    assert waited.status_code == plain.status_code == 200
    assert waited.content == plain.content
    assert waited.headers["content-type"] == plain.headers["content-type"]
    assert waited.headers["preference-applied"] == "wait=10"
    task_id = waited.headers["x-async-request-id"]
    status = http.get(f"{RESULTS}{task_id}/", headers=auth(erin))
    assert status.status_code == 200 and status.json()["state"] == "completed"
    assert status.json()["response"] == plain.json()


def test_a_slow_route_answers_202_after_the_wait(http: httpx.Client, erin: str) -> None:
    started = time.monotonic()
    response = http.get("/api/v1/analytics/slow/?seconds=4",
                        headers=auth(erin, prefer="respond-async, wait=1"))
    took = time.monotonic() - started
    assert response.status_code == 202 and 0.9 <= took < 3, took
    assert response.headers["preference-applied"] == "respond-async, wait=1"
    assert response.headers["location"].startswith(RESULTS)


def test_a_malformed_wait_is_ignored(http: httpx.Client, erin: str) -> None:
    started = time.monotonic()
    response = http.get("/api/v1/analytics/slow/?seconds=2",
                        headers=auth(erin, **{"x-async-request": "true", "prefer": "wait=abc"}))
    assert response.status_code == 202 and time.monotonic() - started < 1.5
    assert "preference-applied" not in response.headers


def test_a_wait_above_the_cap_is_capped(http: httpx.Client, erin: str) -> None:
    response = http.get(QUICK, headers=auth(erin, prefer="respond-async, wait=3600"))
    assert response.status_code == 200
    assert response.headers["preference-applied"] == "wait=30"  # ASYNC_REQUEST_MAX_WAIT_SEC
