"""The asyncio pool (async_request/pool.py) in a real worker on the live stack: replays side by
side on one loop, Flower's task events, a cancel that frees the slot, a killed worker's task
delivered again and not run twice. Its own stack on Redis database 20."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from async_request.records import op_key
from tests.integration.stack import IntegrationStack, auth, module_stack
from tests.integration.test_faults import count_reports
from tests.integration.test_pools import wait_ended
from tools.services import Service
from tools.soak import RESULTS

pytestmark = pytest.mark.integration
SLOW = "/api/v1/analytics/slow/?seconds={}"
ASYNC = {"X-Async-Request": "true"}


@pytest.fixture(scope="module")
def pool_stack(kafka: Service, redis_url: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[IntegrationStack]:
    """Its own stack whose default worker is `-P asyncio -c 4`; slow replays over 4 s fail."""
    env = {"BS_ASYNC_REQUEST_ROUTE_TIMEOUTS": json.dumps(["GET ^/api/v1/analytics/slow/$ 4"]),
           "BS_ASYNC_REQUEST_MAX_INFLIGHT_PER_OWNER": "0"}
    with module_stack(kafka.url, redis_url, tmp_path_factory.mktemp("asyncio-pool"), 20, env,
                      worker=("asyncio", 4)) as stack:
        yield stack


def accept(http: httpx.Client, token: str, path: str) -> str:
    response = http.get(path, headers=auth(token, **ASYNC))
    assert response.status_code == 202, response.text
    return str(response.json()["meta"]["async_request_id"])


def wait_state(http: httpx.Client, task_id: str, token: str, state: str,
               timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while http.get(RESULTS.format(task_id), headers=auth(token)).json().get("state") != state:
        assert time.monotonic() < deadline, f"task {task_id} never became {state}"
        time.sleep(0.1)


def spans(stack: IntegrationStack, ids: list[str]) -> list[tuple[float, float]]:
    client = redis.Redis.from_url(stack.redis_url)
    return sorted(tuple(float(v) for v in client.hmget(op_key(task_id), "started_at",  # type: ignore[misc]
                                                        "finished_at")) for task_id in ids)


def test_replays_run_side_by_side_on_one_loop(pool_stack: IntegrationStack) -> None:
    token = pool_stack.create_user("asyncio-side")
    with httpx.Client(base_url=pool_stack.base_url, timeout=30) as http:
        ids = [accept(http, token, SLOW.format(1)) for _ in range(8)]
        ended = [wait_ended(http, task_id, token) for task_id in ids]
    assert [(e["state"], e["status"], e["attempts"]) for e in ended] == [
        ("completed", 200, 1)] * 8
    started = spans(pool_stack, ids)
    # One worker process, no children: some replay started before an earlier one ended.
    assert any(later[0] < earlier[1] for earlier, later in zip(started, started[1:],
                                                               strict=False))
    assert pool_stack.worker is not None and pool_stack.worker.process is not None
    assert children_of(pool_stack.worker.process.pid) == []


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_flower_sees_received_started_succeeded_and_failed(
        pool_stack: IntegrationStack) -> None:
    url = pool_stack.start_flower()
    token = pool_stack.create_user("asyncio-flower")
    with httpx.Client(base_url=url, auth=pool_stack.flower_auth, timeout=10) as flower, \
            httpx.Client(base_url=pool_stack.base_url, timeout=30) as http:
        deadline = time.monotonic() + 60
        while not flower.get("/api/workers").json() and time.monotonic() < deadline:
            time.sleep(0.5)
        good = accept(http, token, SLOW.format(0))
        bad = accept(http, token, SLOW.format(10))  # over its 4 s limit: fails
        infos: dict[str, dict[str, object]] = {}
        while time.monotonic() < deadline + 30 and len(infos) < 2:
            for task_id in (good, bad):
                response = flower.get(f"/api/task/info/{task_id}")
                info = response.json() if response.status_code == 200 else {}
                if info.get("state") in ("SUCCESS", "FAILURE"):
                    infos[task_id] = info
            time.sleep(0.3)
    assert infos[good]["state"] == "SUCCESS", infos
    assert infos[good].get("received") and infos[good].get("started"), infos
    assert infos[good].get("succeeded"), infos
    assert infos[bad]["state"] == "FAILURE" and infos[bad].get("failed"), infos
    assert "ROUTE_TIMEOUTS" in str(infos[bad].get("exception")), infos


def test_a_cancelled_replay_frees_its_slot(pool_stack: IntegrationStack) -> None:
    token = pool_stack.create_user("asyncio-cancel")
    with httpx.Client(base_url=pool_stack.base_url, timeout=30) as http:
        # Fill the 4 slots with replays that would run to their limit (slow ones, 3.9 s)...
        long = [accept(http, token, SLOW.format(3.9)) for _ in range(4)]
        for task_id in long:
            wait_state(http, task_id, token, "running")
        waiting = accept(http, token, SLOW.format(0))
        # ... cancel one: the waiting replay takes its slot while the other three still run.
        assert http.delete(RESULTS.format(long[0]), headers=auth(token)).status_code == 202
        done = wait_ended(http, waiting, token)
        rest = [wait_ended(http, task_id, token) for task_id in long]
    assert done["state"] == "completed"
    assert [r["state"] for r in rest] == ["cancelled", "completed", "completed", "completed"]
    (waited_start, _), = spans(pool_stack, [waiting])
    assert all(waited_start < end for _, end in spans(pool_stack, long[1:]))


def test_a_killed_worker_s_replay_is_delivered_again_and_not_run_twice(
        pool_stack: IntegrationStack) -> None:
    token = pool_stack.create_user("asyncio-kill")
    with httpx.Client(base_url=pool_stack.base_url, timeout=30) as http:
        post = http.post("/api/v1/reports/", json={"kind": "sales", "seconds": 8},
                         headers=auth(token, **ASYNC))
        assert post.status_code == 202
        post_id = post.json()["meta"]["async_request_id"]
        get_id = accept(http, token, SLOW.format(3))
        wait_state(http, post_id, token, "running")
        wait_state(http, get_id, token, "running")
        deadline = time.monotonic() + 30
        while count_reports(pool_stack, "asyncio-kill") == 0:
            assert time.monotonic() < deadline, "the report was never created"
        pool_stack.kill_worker()
        pool_stack.restart_worker()
        post_result = wait_ended(http, post_id, token, timeout=120)
        get_result = wait_ended(http, get_id, token, timeout=120)
    assert post_result["state"] == "failed", post_result
    assert "stopped mid-way" in str(post_result["error"])
    assert (get_result["state"], get_result["status"], get_result["attempts"]) == (
        "completed", 200, 2)
    assert count_reports(pool_stack, "asyncio-kill") == 1
