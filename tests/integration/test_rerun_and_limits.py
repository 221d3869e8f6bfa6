"""Re-run and limits on the real stack: `POST .../{id}/rerun/`, the per-owner in-flight cap and
per-route time limits.

This module has its own sample stack (on the session's broker and Redis) whose settings are the
point of the tests: ASYNC_REQUEST_MAX_INFLIGHT_PER_OWNER=3, ASYNC_REQUEST_ROUTE_TIMEOUTS of 1 s
on two test routes, and one worker process (`-c 1`), so "the next task runs" means the same
process went on. Its worker replays into tests/integration/limits_app.py (the sample plus
/test/ routes).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from async_request.exceptions import TooManyInFlightError
from async_request.records import inflight_key, op_key, owner_key
from async_request.store import OperationStore
from tests.integration.stack import IntegrationStack, auth, own_redis_db
from tools.services import Service

pytestmark = pytest.mark.integration
RESULTS = "/api/v1/async_background_response/"
CAP = 3
LIMITS = ["GET ^/test/sleep-sync/$ 1", "GET ^/test/sleep/$ 1", "GET ^/test/block/$ 1"]


@pytest.fixture(scope="module")
def limited(kafka: Service, redis_url: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[IntegrationStack]:
    live = IntegrationStack(
        kafka=kafka.url, redis_url=own_redis_db(redis_url, 11),
        workdir=tmp_path_factory.mktemp("limits"),
        database_url=os.environ.get("DATABASE_URL") or None,
        extra_env={"BS_ASYNC_REQUEST_ASGI_APP": "tests.integration.limits_app:application",
                   "BS_ASYNC_REQUEST_ROUTE_TIMEOUTS": json.dumps(LIMITS),
                   "BS_ASYNC_REQUEST_MAX_INFLIGHT_PER_OWNER": str(CAP),
                   "BS_ASYNC_REQUEST_CANCEL_GRACE_SEC": "1"})
    live._worker_options = ("prefork", 1, ())
    try:
        live._stack.migrate()
        live.web = live._stack.start_web()
        live.base_url = live.web.url
        live.worker = live.start_worker("prefork", 1)
        yield live
    finally:
        live.stop()


@pytest.fixture
def http(limited: IntegrationStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=limited.base_url, timeout=30) as client:
        yield client


@pytest.fixture
def db(limited: IntegrationStack) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(limited.redis_url)
    yield client
    client.close()


def defer(http: httpx.Client, token: str, path: str, method: str = "GET",
          **kwargs: Any) -> str:
    response = http.request(method, path, headers=auth(token, **{"x-async-request": "true"}),
                            **kwargs)
    assert response.status_code == 202, response.text
    return str(response.json()["meta"]["async_request_id"])


def status(http: httpx.Client, token: str, task_id: str) -> dict[str, Any]:
    response = http.get(f"{RESULTS}{task_id}/", headers=auth(token))
    assert response.status_code in (200, 202), response.text
    return dict(response.json())


def wait_terminal(http: httpx.Client, token: str, task_id: str,
                  timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = status(http, token, task_id)
        if body["state"] not in ("pending", "running"):
            return body
        assert time.monotonic() < deadline, f"{task_id} still {body['state']}"
        time.sleep(0.05)


def wait_state(http: httpx.Client, token: str, task_id: str, state: str) -> None:
    deadline = time.monotonic() + 30
    while status(http, token, task_id)["state"] != state:
        assert time.monotonic() < deadline, f"{task_id} never became {state}"
        time.sleep(0.05)


def owner_of(db: redis.Redis, task_id: str) -> str:
    return str(db.hget(op_key(task_id), "owner").decode())  # type: ignore[union-attr]


def in_flight(db: redis.Redis, owner: str) -> set[str]:
    return {member.decode() for member in db.zrange(inflight_key(owner), 0, -1)}


def stop_worker(limited: IntegrationStack) -> None:
    assert limited.worker is not None
    limited._stack.stop_service(limited.worker)
    limited.worker = None


# -- per-route time limits ---------------------------------------------------------------------

@pytest.mark.parametrize("route", ["/test/sleep-sync/", "/test/sleep/"])
def test_a_10s_route_with_a_1s_limit_fails_in_about_2s_and_the_next_task_runs(
        limited: IntegrationStack, http: httpx.Client, route: str) -> None:
    limited.ensure_worker()
    token = limited.create_user("limits_time")
    wait_terminal(http, token, defer(http, token, "/api/v1/health/"))  # the worker is warm
    started = time.monotonic()
    slow = defer(http, token, f"{route}?seconds=10")
    after = defer(http, token, "/api/v1/health/")
    failed = wait_terminal(http, token, slow)
    took = time.monotonic() - started
    assert failed["state"] == "failed" and failed["status"] is None, failed
    assert f"ASYNC_REQUEST_ROUTE_TIMEOUTS: GET ^{route}$ 1" in failed["error"], failed["error"]
    assert "within 1s" in failed["error"]
    assert took < 3.5, f"a 1 s limit took {took:.1f} s to end the replay"
    done = wait_terminal(http, token, after)
    assert done["state"] == "completed" and done["status"] == 200, done
    # The single worker process went on while the route (a thread, for `def`) still slept.
    assert time.monotonic() - started < 8


@pytest.mark.long
def test_a_route_that_blocks_the_event_loop_still_fails_at_its_limit(
        limited: IntegrationStack, http: httpx.Client) -> None:
    limited.ensure_worker()
    token = limited.create_user("limits_block")
    wait_terminal(http, token, defer(http, token, "/api/v1/health/"))
    started = time.monotonic()
    blocking = defer(http, token, "/test/block/?seconds=6")
    after = defer(http, token, "/api/v1/health/")
    failed = wait_terminal(http, token, blocking)
    took = time.monotonic() - started
    assert failed["state"] == "failed", failed
    assert "ASYNC_REQUEST_ROUTE_TIMEOUTS: GET ^/test/block/$ 1" in failed["error"]
    assert "blocked the worker's event loop" in failed["error"]
    # its limit (1 s) + the cancel grace (1 s) + LOOP_MARGIN_SEC, not the route's 6 s
    assert took < 5, f"the blocked replay took {took:.1f} s to be given up"
    # The next task runs once the blocking call returns.
    assert wait_terminal(http, token, after)["state"] == "completed"


# -- re-run ------------------------------------------------------------------------------------

def test_rerun_of_a_failed_operation_runs_it_again_under_a_new_id(
        limited: IntegrationStack, http: httpx.Client) -> None:
    limited.ensure_worker()
    token = limited.create_user("rerun_failed")
    old = defer(http, token, "/test/sleep/?seconds=5")
    before = wait_terminal(http, token, old)
    assert before["state"] == "failed"
    rerun = http.post(f"{RESULTS}{old}/rerun/", headers=auth(token))
    assert rerun.status_code == 202, rerun.text
    new = rerun.json()["meta"]["async_request_id"]
    assert rerun.json() == {"data": None, "meta": {"async_request_id": new}} and new != old
    assert rerun.headers["location"] == f"{RESULTS}{new}/"
    assert rerun.headers["retry-after"] == "1"
    assert "Location" in rerun.headers["access-control-expose-headers"]
    again = wait_terminal(http, token, new)
    assert again["state"] == "failed" and again["rerun_of"] == old, again
    assert again["started_at"] > before["finished_at"] and again["attempts"] == 1
    assert again["endpoint"] == "/test/sleep/" and again["method"] == "GET"
    assert status(http, token, old) == before  # the old one stays as it was
    listed = {item["task_id"]: item for item in
              http.get(RESULTS, headers=auth(token)).json()["data"]}
    assert listed[new]["rerun_of"] == old and listed[old]["rerun_of"] is None


def test_rerun_of_a_cancelled_operation_replays_the_same_request_and_body(
        limited: IntegrationStack, http: httpx.Client, db: redis.Redis) -> None:
    limited.ensure_worker()
    token = limited.create_user("rerun_cancelled")
    big = os.urandom(600 * 1024)  # above ASYNC_REQUEST_INLINE_BODY_BYTES: kept aside in Redis
    busy = defer(http, token, "/test/sleep/?seconds=2")  # holds the only worker process
    # Running before the next one is queued: the work topic has several partitions, so a
    # worker that fetches both at once (waking from idle) may start either first.
    deadline = time.monotonic() + 30
    while status(http, token, busy)["state"] != "running":
        assert time.monotonic() < deadline, "the first request never started"
        time.sleep(0.05)
    old = defer(http, token, "/test/echo/?q=1", "POST", content=big)
    cancelled = http.delete(f"{RESULTS}{old}/", headers=auth(token))
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    wait_terminal(http, token, busy)
    # Without the trailing slash too, answered the same (no redirect).
    rerun = http.post(f"{RESULTS}{old}/rerun", headers=auth(token))
    assert rerun.status_code == 202, rerun.text
    new = rerun.json()["meta"]["async_request_id"]
    done = wait_terminal(http, token, new)
    assert done["state"] == "completed" and done["status"] == 200 and done["rerun_of"] == old
    assert done["encoding"] == "base64" and done["response"] == base64.b64encode(big).decode()
    assert dict(done["headers"])["x-had-authorization"] == "True"  # replayed as its owner
    assert status(http, token, old)["state"] == "cancelled"
    # Completed: its captured request is dropped; the cancelled one keeps its own.
    assert db.exists(f"async_request:envelope:{new}", f"async_request:body:{new}") == 0
    assert db.exists(f"async_request:envelope:{old}", f"async_request:body:{old}") == 2


def test_rerun_of_a_completed_pending_or_running_operation_is_409(
        limited: IntegrationStack, http: httpx.Client) -> None:
    limited.ensure_worker()
    token = limited.create_user("rerun_409")
    done = defer(http, token, "/api/v1/health/")
    assert wait_terminal(http, token, done)["state"] == "completed"
    refused = http.post(f"{RESULTS}{done}/rerun/", headers=auth(token))
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert "completed" in refused.json()["detail"]
    running = defer(http, token, "/test/sleep/?seconds=0.9")
    waiting = defer(http, token, "/api/v1/health/")
    for task_id in (running, waiting):
        refused = http.post(f"{RESULTS}{task_id}/rerun/", headers=auth(token))
        assert refused.status_code == 409, refused.text
        assert any(state in refused.json()["detail"] for state in ("pending", "running"))
    wait_terminal(http, token, waiting)


def test_rerun_by_another_owner_unknown_or_malformed_is_404_and_expired_410(
        limited: IntegrationStack, http: httpx.Client, db: redis.Redis) -> None:
    limited.ensure_worker()
    carol = limited.create_user("rerun_carol")
    dave = limited.create_user("rerun_dave")
    failed = defer(http, carol, "/test/sleep/?seconds=5")
    assert wait_terminal(http, carol, failed)["state"] == "failed"
    for path, code in ((f"{failed}/rerun/", 404), (f"{failed}/rerun", 404),
                       (f"{uuid.uuid4()}/rerun/", 404), ("not-an-id/rerun/", 400)):
        refused = http.post(f"{RESULTS}{path}", headers=auth(dave))
        assert refused.status_code == code, (path, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
    assert http.post(f"{RESULTS}a/b/rerun/", headers=auth(dave)).status_code in (400, 404)
    assert http.post(f"{RESULTS}{failed}/", headers=auth(carol)).status_code == 405
    assert http.post(f"{RESULTS}{failed}/rerun/").status_code == 401
    db.delete(op_key(failed))  # as when the record expires: its owner hears 410
    gone = http.post(f"{RESULTS}{failed}/rerun/", headers=auth(carol))
    assert gone.status_code == 410, gone.text


# -- the in-flight cap -------------------------------------------------------------------------

def test_past_the_cap_429_with_retry_after_and_nothing_queued_until_some_finish(
        limited: IntegrationStack, http: httpx.Client, db: redis.Redis) -> None:
    token = limited.create_user("cap_user")
    limited.ensure_worker()
    wait_terminal(http, token, defer(http, token, "/api/v1/health/"))
    stop_worker(limited)  # nothing ends from here
    ids = [defer(http, token, "/api/v1/health/") for _ in range(CAP)]
    owner = owner_of(db, ids[0])
    indexed = db.zcard(owner_key(owner))
    refused = http.get("/api/v1/health/", headers=auth(token, **{"x-async-request": "true"}))
    assert refused.status_code == 429, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) >= 1
    assert "ASYNC_REQUEST_MAX_INFLIGHT_PER_OWNER" in refused.json()["detail"]
    assert in_flight(db, owner) == set(ids)
    assert db.zcard(owner_key(owner)) == indexed  # no record was written for it
    # A cancelled one gives its slot back; a re-run takes one like any request.
    assert http.delete(f"{RESULTS}{ids[0]}/", headers=auth(token)).status_code == 200
    assert in_flight(db, owner) == set(ids[1:])
    ids.append(defer(http, token, "/api/v1/health/"))
    rerun = http.post(f"{RESULTS}{ids[0]}/rerun/", headers=auth(token))
    assert rerun.status_code == 429, rerun.text
    limited.restart_worker()
    for task_id in ids[1:]:
        assert wait_terminal(http, token, task_id)["state"] == "completed"
    assert in_flight(db, owner) == set()
    rerun = http.post(f"{RESULTS}{ids[0]}/rerun/", headers=auth(token))
    assert rerun.status_code == 202, rerun.text
    fresh = [defer(http, token, "/api/v1/health/") for _ in range(CAP - 1)]
    for task_id in [rerun.json()["meta"]["async_request_id"], *fresh]:
        assert wait_terminal(http, token, task_id)["state"] == "completed"


def test_the_slot_of_a_run_whose_worker_crashed_is_freed_by_its_redelivery(
        limited: IntegrationStack, http: httpx.Client, db: redis.Redis) -> None:
    limited.ensure_worker()
    token = limited.create_user("cap_crash")
    task_id = defer(http, token, "/test/sleep-post/?seconds=30", "POST")
    wait_state(http, token, task_id, "running")
    owner = owner_of(db, task_id)
    assert in_flight(db, owner) == {task_id}
    limited.kill_worker()
    limited.restart_worker()
    ended = wait_terminal(http, token, task_id, timeout=90)
    assert ended["state"] == "failed" and "stopped mid-way" in ended["error"], ended
    assert in_flight(db, owner) == set()


def test_a_slot_never_outlives_its_record(limited: IntegrationStack, db: redis.Redis) -> None:
    """Expired, deleted, ended: each frees its slot at the next accept, with no terminal write."""
    def accepter(expires_sec: int) -> Any:
        store = OperationStore(limited.redis_url, expires_sec=expires_sec, secret="s" * 32)
        owner = f"user:slots-{uuid.uuid4()}"

        def accept(cap: int) -> str:
            task_id = str(uuid.uuid4())
            asyncio.run(store.accept(task_id, owner, "/x/", "GET", max_inflight=cap))
            return task_id

        return owner, accept

    owner, accept = accepter(expires_sec=1)
    first = accept(1)
    with pytest.raises(TooManyInFlightError, match=r"you have 1 .*\(1\)"):
        accept(1)
    time.sleep(1.2)  # its record expired: no worker ever wrote an outcome
    assert in_flight(db, owner) == {first}
    second = accept(1)
    assert in_flight(db, owner) == {second}

    owner, accept = accepter(expires_sec=60)
    gone, ended = accept(2), accept(2)
    with pytest.raises(TooManyInFlightError):
        accept(2)
    db.delete(op_key(gone))  # gone before its deadline (evicted, deleted by hand)
    third = accept(2)
    db.hset(op_key(ended), "state", "completed")  # ended, its ZREM lost
    fourth = accept(2)
    assert in_flight(db, owner) == {third, fourth}
    accept(0)
    assert len(in_flight(db, owner)) == 3  # no cap: still counted, for when one is set
