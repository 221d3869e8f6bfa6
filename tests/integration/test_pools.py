"""The threads pool: one worker process whose threads hand their replays to its one event loop,
so I/O-bound async routes run side by side (README "Sizing workers")."""

from __future__ import annotations

import time

import httpx
import pytest
import redis

from async_request.records import op_key
from tests.integration.stack import IntegrationStack, auth
from tools.soak import RESULTS

pytestmark = pytest.mark.integration


def wait_ended(http: httpx.Client, task_id: str, token: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        response = http.get(RESULTS.format(task_id), headers=auth(token))
        body = response.json() if response.status_code in (200, 202) else {}
        if body.get("state") in ("completed", "failed", "cancelled"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} did not end; last {body}")


def test_a_threads_worker_runs_async_replays_side_by_side(stack: IntegrationStack) -> None:
    token = stack.create_user("pool-threads")
    stack.kill_worker()  # the threads worker below is then the only one
    worker = stack.start_worker("threads", 4)
    try:
        with httpx.Client(base_url=stack.base_url, timeout=30) as http:
            ids = []
            for _ in range(6):
                accepted = http.get("/api/v1/analytics/slow/?seconds=1",
                                    headers=auth(token, **{"X-Async-Request": "true"}))
                assert accepted.status_code == 202
                ids.append(accepted.json()["meta"]["async_request_id"])
            ended = [wait_ended(http, task_id, token) for task_id in ids]
    finally:
        worker.stop()
        stack.ensure_worker()
    assert [(e["state"], e["status"], e["attempts"]) for e in ended] == [
        ("completed", 200, 1)] * 6
    client = redis.Redis.from_url(stack.redis_url)
    spans = sorted(tuple(float(v) for v in client.hmget(op_key(task_id), "started_at",
                                                        "finished_at")) for task_id in ids)
    # Some replay started before an earlier one finished: they ran at the same time.
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))
