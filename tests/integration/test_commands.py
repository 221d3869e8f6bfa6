"""The management commands on the real stack: lifetime, replacement, signals, no task lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.integration.stack import IntegrationStack

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MANAGE = str(REPO / "sample_project" / "manage.py")


def spawn_command(stack: IntegrationStack, args: list[str], log: Path,
                  **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, MANAGE, *args], cwd=REPO,
                            env={**stack.env, **env}, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)


def wait_results(http: httpx.Client, ids: list[str], token: str, timeout: float) -> set[str]:
    deadline = time.monotonic() + timeout
    completed: set[str] = set()
    while time.monotonic() < deadline and len(completed) < len(ids):
        for task_id in ids:
            if task_id in completed:
                continue
            response = http.get(f"/api/v1/async_background_response/{task_id}/",
                                headers={"authorization": f"Bearer {token}"})
            if response.status_code == 200:
                assert response.json()["state"] == "completed", response.text
                completed.add(task_id)
        time.sleep(0.3)
    return completed


def test_single_consumer_retires_after_its_lifetime(stack: IntegrationStack) -> None:
    log = stack.logs / "consumer_single.log"
    started = time.monotonic()
    proc = spawn_command(stack, ["kafka_consumer_single", "--pool", "solo"], log,
                         BS_KAFKA_CONSUMER_LIFETIME_SEC="4",
                         BS_KAFKA_CONSUMER_LIFETIME_JITTER_SEC="1")
    try:
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    elapsed = time.monotonic() - started
    assert code == 0, log.read_text()[-3000:]
    assert 4 <= elapsed < 90  # retired after its lifetime, not never (speed is not the point)
    assert "lifetime" in log.read_text()


def test_bad_setting_fails_at_start_naming_it(stack: IntegrationStack) -> None:
    log = stack.logs / "consumer_bad_setting.log"
    proc = spawn_command(stack, ["kafka_consumer_single"], log,
                         BS_KAFKA_CONSUMER_LIFETIME_SEC="soon")
    assert proc.wait(timeout=60) != 0
    assert "KAFKA_CONSUMER_LIFETIME_SEC" in log.read_text()


def test_multiple_consumers_replace_retirees_lose_nothing_and_stop_on_sigterm(
        stack: IntegrationStack) -> None:
    token = stack.create_user("commands_user")
    log = stack.logs / "consumer_multiple.log"
    supervisor = spawn_command(
        stack, ["kafka_consumer_multiple", "--consumers-count=2", "--concurrency=1"], log,
        BS_KAFKA_CONSUMER_LIFETIME_SEC="5", BS_KAFKA_CONSUMER_LIFETIME_JITTER_SEC="2")
    ids: list[str] = []
    try:
        time.sleep(3)
        children = psutil.Process(supervisor.pid).children()
        assert len(children) == 2
        with httpx.Client(base_url=stack.base_url, timeout=30) as http:
            headers = {"authorization": f"Bearer {token}", "x-async-request": "true"}
            for _ in range(40):  # spans at least one retirement of each worker
                response = http.get("/api/v1/analytics/slow/?seconds=0.2", headers=headers)
                assert response.status_code == 202
                ids.append(response.json()["meta"]["async_request_id"])
                time.sleep(0.25)
            completed = wait_results(http, ids, token, timeout=120)
        assert completed == set(ids)
        text = log.read_text()
        assert "replacing it" in text, text[-3000:]
        workers = psutil.Process(supervisor.pid).children(recursive=True)
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=60) == 0
        time.sleep(0.5)
        assert not [p for p in workers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    finally:
        if supervisor.poll() is None:
            os.killpg(os.getpgid(supervisor.pid), signal.SIGKILL)


def test_consumers_count_must_be_positive(stack: IntegrationStack) -> None:
    done = stack.manage("kafka_consumer_multiple", "--consumers-count=0", check=False)
    assert done.returncode != 0
    assert "--consumers-count" in done.stderr


def test_kafka_tasks_modules_are_registered(stack: IntegrationStack) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "celery_app", "inspect", "registered", "-t", "10"],
        cwd=REPO, env=stack.env, capture_output=True, text=True, timeout=60, check=False)
    assert "async_request.replay_request" in done.stdout, done.stdout + done.stderr
    assert "demo.cleanup_reports" in done.stdout


def test_a_worker_with_a_replay_target_that_does_not_import_refuses_to_start(
        stack: IntegrationStack) -> None:
    log = stack.logs / "consumer_bad_app.log"
    proc = spawn_command(stack, ["kafka_consumer_single", "--pool", "solo"], log,
                         BS_ASYNC_REQUEST_ASGI_APP="sample_project.asgi:no_such_app")
    try:
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text(errors="replace")
    assert code != 0, text[-3000:]
    assert "async_request.E002" in text and "ASYNC_REQUEST_ASGI_APP" in text, text[-3000:]
    assert "ready." not in text
