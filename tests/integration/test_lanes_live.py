"""Lanes on the real stack (async_request/lanes.py): a slow route cannot hold up fast ones.

This module has its own stack (the session's broker, Redis database 16) whose worker replays
into tests/integration/limits_app.py, with ASYNC_REQUEST_LANES sending `GET /test/sleep/` to
the lane `slow`. It runs no worker serving every lane: one plain Celery worker on the default
lane's queue (`celery worker -Q <queue>`, one process) and one `manage.py
kafka_consumer_single --lanes slow --pool solo`, so "the slow lane is flooded" means its only
worker is busy and its queue holds more long tasks. The sweep is off: flooded tasks wait
longer than any deadline on purpose.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from async_request.records import op_key
from tests.integration.stack import IntegrationStack, auth, own_redis_db
from tools.services import Service, spawn
from tools.stack import CeleryProcess

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MANAGE = str(REPO / "sample_project" / "manage.py")
RESULTS = "/api/v1/async_background_response/"
LANES = ["GET ^/test/sleep/$ slow"]


class Lanes:
    """The module's stack, its two workers and a user token."""

    def __init__(self, live: IntegrationStack, fast: CeleryProcess, slow: CeleryProcess,
                 token: str) -> None:
        self.live, self.fast, self.slow, self.token = live, fast, slow, token

    @property
    def topic(self) -> str:
        return self.live.env["BS_KAFKA_TOPIC_ASYNC_BG"]


def manage_worker(live: IntegrationStack, name: str, *args: str) -> CeleryProcess:
    """`manage.py kafka_consumer_single *args` as a process of the stack (stopped with it)."""
    log = live.logs / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"")
    started = time.monotonic()
    proc = spawn([sys.executable, MANAGE, "kafka_consumer_single", "--hostname",
                  f"{name}@%h", *args], log, env=live.env, cwd=REPO)
    worker = CeleryProcess(name, f"{name}@", proc, log=log, started=started)
    live._stack.services.append(worker)
    return worker


@pytest.fixture(scope="module")
def lanes(kafka: Service, redis_url: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lanes]:
    live = IntegrationStack(
        kafka=kafka.url, redis_url=own_redis_db(redis_url, 16),
        workdir=tmp_path_factory.mktemp("lanes"),
        database_url=os.environ.get("DATABASE_URL") or None,
        extra_env={"BS_ASYNC_REQUEST_ASGI_APP": "tests.integration.limits_app:application",
                   "BS_ASYNC_REQUEST_LANES": json.dumps(LANES),
                   "BS_ASYNC_REQUEST_REPUBLISH_AFTER_SEC": "0",
                   "BS_ASYNC_REQUEST_CANCEL_GRACE_SEC": "1"})
    try:
        live._stack.migrate()
        live.web = live._stack.start_web()
        live.base_url = live.web.url
        topic = live.env["BS_KAFKA_TOPIC_ASYNC_BG"]
        fast = live._stack.start_worker("prefork", 1, ("-Q", topic))
        slow = manage_worker(live, "lanes-slow", "--lanes", "slow", "--pool", "solo")
        slow.wait_ready(90, interval=0.2)
        yield Lanes(live, fast, slow, live.create_user("lanes_user"))
    finally:
        live.stop()


@pytest.fixture
def http(lanes: Lanes) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=lanes.live.base_url, timeout=30) as client:
        yield client


@pytest.fixture
def db(lanes: Lanes) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(lanes.live.redis_url)
    yield client
    client.close()


def defer(http: httpx.Client, token: str, path: str, method: str = "GET",
          **kwargs: Any) -> str:
    response = http.request(method, path, headers=auth(token, **{"x-async-request": "true"}),
                            **kwargs)
    assert response.status_code == 202, response.text
    return str(response.json()["meta"]["async_request_id"])


def state(http: httpx.Client, token: str, task_id: str) -> str:
    response = http.get(f"{RESULTS}{task_id}/", headers=auth(token))
    assert response.status_code in (200, 202), response.text
    return str(response.json()["state"])


def wait_states(http: httpx.Client, token: str, ids: list[str], wanted: set[str],
                timeout: float = 90) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        states = {task_id: state(http, token, task_id) for task_id in ids}
        if set(states.values()) <= wanted or time.monotonic() > deadline:
            return states
        time.sleep(0.1)


def lane_of(db: redis.Redis, task_id: str) -> str:
    return str(db.hget(op_key(task_id), "lane").decode())  # type: ignore[union-attr]


def cancel(http: httpx.Client, token: str, ids: list[str]) -> None:
    for task_id in ids:
        response = http.delete(f"{RESULTS}{task_id}/", headers=auth(token))
        assert response.status_code in (200, 202, 409), response.text


def test_each_worker_says_which_lanes_it_serves(lanes: Lanes) -> None:
    assert f"serves lanes: default (queue {lanes.topic})" in lanes.fast.text()
    assert f"serves lanes: slow (queue {lanes.topic}.slow)" in lanes.slow.text()


def test_flower_shows_each_workers_lane_queue(lanes: Lanes) -> None:
    url = lanes.live.start_flower()
    queues: dict[str, set[str]] = {}
    with httpx.Client(base_url=url, auth=lanes.live.flower_auth, timeout=15) as flower:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            workers = flower.get("/api/workers", params={"refresh": "1"}).json()
            queues = {name.split("@")[0]: {q["name"] for q in info.get("active_queues") or ()}
                      for name, info in workers.items()}
            if queues.get("lanes-slow") and queues.get(lanes.fast.name):
                break
            time.sleep(0.5)
    assert queues.get("lanes-slow") == {f"{lanes.topic}.slow"}, queues
    assert queues.get(lanes.fast.name) == {lanes.topic}, queues


def test_routes_go_to_their_lane_and_unlisted_ones_to_the_default(
        lanes: Lanes, http: httpx.Client, db: redis.Redis) -> None:
    slow = defer(http, lanes.token, "/test/sleep/?seconds=0")
    quick = defer(http, lanes.token, "/test/echo/", method="POST", content=b"hi")
    assert lane_of(db, slow) == "slow" and lane_of(db, quick) == "default"
    assert wait_states(http, lanes.token, [slow, quick], {"completed"}) == {
        slow: "completed", quick: "completed"}
    # Each ran on the worker of its lane.
    assert slow in lanes.slow.text() and slow not in lanes.fast.text()
    assert quick in lanes.fast.text() and quick not in lanes.slow.text()


def test_the_default_lane_serves_while_the_slow_lane_is_flooded(
        lanes: Lanes, http: httpx.Client) -> None:
    flood = [defer(http, lanes.token, "/test/sleep/?seconds=60") for _ in range(6)]
    try:
        # The slow lane's only worker is busy with one (any: they spread over partitions);
        # the others wait in its queue.
        deadline = time.monotonic() + 60
        while "running" not in {state(http, lanes.token, task_id) for task_id in flood}:
            assert time.monotonic() < deadline, "the slow lane's worker never took the flood"
            time.sleep(0.1)
        quick = [defer(http, lanes.token, "/test/echo/", method="POST", content=b"q")
                 for _ in range(5)]
        done = wait_states(http, lanes.token, quick, {"completed"})
        assert set(done.values()) == {"completed"}, done
        waiting = {task_id: state(http, lanes.token, task_id) for task_id in flood}
        assert list(waiting.values()).count("running") == 1, waiting
        assert list(waiting.values()).count("pending") == 5, waiting
    finally:
        cancel(http, lanes.token, flood)
    assert set(wait_states(http, lanes.token, flood, {"cancelled"}).values()) == {"cancelled"}


def test_a_rerun_goes_to_the_lane_of_the_original(
        lanes: Lanes, http: httpx.Client, db: redis.Redis) -> None:
    original = defer(http, lanes.token, "/test/sleep/?seconds=60")
    cancel(http, lanes.token, [original])
    assert wait_states(http, lanes.token, [original], {"cancelled"}) == {original: "cancelled"}
    response = http.post(f"{RESULTS}{original}/rerun/", headers=auth(lanes.token))
    assert response.status_code == 202, response.text
    again = str(response.json()["meta"]["async_request_id"])
    try:
        assert db.hget(op_key(again), "rerun_of") == original.encode()
        assert lane_of(db, again) == "slow"
        assert wait_states(http, lanes.token, [again], {"running"}) == {again: "running"}
        assert again in lanes.slow.text() and again not in lanes.fast.text()
    finally:
        cancel(http, lanes.token, [again])
    assert wait_states(http, lanes.token, [again], {"cancelled"}) == {again: "cancelled"}


def _refused(argv: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120, check=False)
    text = done.stdout + done.stderr
    assert done.returncode != 0, text[-3000:]
    assert "ready." not in text
    return text


def test_a_lane_that_does_not_exist_stops_the_worker_naming_it(lanes: Lanes) -> None:
    env = lanes.live.env
    text = _refused([sys.executable, MANAGE, "kafka_consumer_single", "--lanes", "default,slwo"],
                    env)
    assert "--lanes 'default,slwo': 'slwo' is not a lane; the lanes are default, slow" in text
    typo = f"{lanes.topic}.slwo"
    text = _refused([sys.executable, "-m", "celery", "-A", "celery_app", "worker", "-P", "solo",
                     "-Q", f"{lanes.topic},{typo}"], env)
    assert f"-Q '{typo}': no lane has this queue" in text, text[-3000:]
