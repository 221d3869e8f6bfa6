"""Smoke test of the integration fixtures: the whole sample stack comes up and answers."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.integration.stack import IntegrationStack
from tools.stack import HEALTH_PATH, worker_ready

pytestmark = pytest.mark.integration


def test_web_app_answers_health(stack: IntegrationStack) -> None:
    response = httpx.get(stack.base_url + HEALTH_PATH, timeout=10)
    assert response.status_code == 200


def test_default_worker_is_ready(stack: IntegrationStack) -> None:
    # Earlier tests of the session may kill the default worker; ensure_worker brings it back.
    worker = stack.ensure_worker()
    assert worker.process is not None and worker.process.poll() is None
    assert worker_ready(worker)


def test_ws_url_carries_token_or_channel(stack: IntegrationStack) -> None:
    ws = stack.base_url.replace("http://", "ws://", 1)
    assert stack.ws_url() == f"{ws}/ws/"
    assert stack.ws_url(token="a.b.c") == f"{ws}/ws/?token=a.b.c"
    assert stack.ws_url(channel="c" * 16) == f"{ws}/ws/?channel={'c' * 16}"


def test_create_user_returns_a_jwt(stack: IntegrationStack) -> None:
    token = stack.create_user("smoke-user")
    assert token.count(".") == 2
    assert stack.create_user("smoke-user").count(".") == 2  # creating twice is harmless


def test_env_points_at_the_session_services(stack: IntegrationStack) -> None:
    env = stack.env
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == stack.kafka
    assert env["REDIS_URL"] == stack.redis_url
    assert env["REDIS_URL"].endswith("/5")
    assert env["BS_KAFKA_TOPIC_ASYNC_BG"].startswith("ar_test_")


def test_worker_restarts_after_a_kill(stack: IntegrationStack) -> None:
    old = stack.worker
    stack.kill_worker()
    assert old is not None and old.process is not None and old.process.poll() is not None
    new = stack.restart_worker()
    assert new is stack.worker and worker_ready(new)


def test_flower_needs_its_password_and_refuses_other_sites(stack: IntegrationStack) -> None:
    url = stack.start_flower()
    assert httpx.get(url + "/healthcheck", timeout=10).status_code == 200
    foreign = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
    anonymous = httpx.get(url + "/api/workers", headers=foreign, timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers.get("access-control-allow-origin") != "*"
    user, password = stack.flower_auth
    with httpx.Client(base_url=url, auth=(user, password), timeout=10) as flower:
        workers = flower.get("/api/workers", headers=foreign)
        assert workers.status_code == 200
        assert workers.headers.get("access-control-allow-origin") != "*"
        # A page of another site cannot steer it: POSTs need Flower's XSRF cookie.
        shutdown = flower.post("/api/worker/shutdown/nobody@nowhere", headers=foreign)
        assert shutdown.status_code == 403
    assert stack.worker is not None and stack.worker.process.poll() is None  # type: ignore[union-attr]


def test_flower_sees_a_replay_received_started_and_succeeded(stack: IntegrationStack) -> None:
    """Task events are batched (async_request/task_events.py) and task-sent is off; Flower
    still gets the worker's received, started and succeeded for a replay."""
    url = stack.start_flower()
    token = stack.create_user("flower-watcher")
    with httpx.Client(base_url=url, auth=stack.flower_auth, timeout=10) as flower, \
            httpx.Client(base_url=stack.base_url, timeout=30) as http:
        # Flower reads the events topic from where it bound: wait until it sees the worker.
        deadline = time.monotonic() + 60
        while not flower.get("/api/workers").json() and time.monotonic() < deadline:
            time.sleep(0.5)
        accepted = http.get("/api/v1/health/", headers={"Authorization": f"Bearer {token}",
                                                        "X-Async-Request": "true"})
        assert accepted.status_code == 202
        task_id = accepted.json()["meta"]["async_request_id"]
        info: dict[str, object] = {}
        while time.monotonic() < deadline:
            response = flower.get(f"/api/task/info/{task_id}")
            info = response.json() if response.status_code == 200 else {}
            if info.get("state") == "SUCCESS":
                break
            time.sleep(0.3)
    assert info.get("state") == "SUCCESS", info
    assert info.get("received") and info.get("started") and info.get("succeeded"), info
