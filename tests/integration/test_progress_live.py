"""Progress on a real Redis and channel layer: stored while running, told before the outcome.

`execution.execute` replays `tests.asgi_apps:progress_app` (ten steps, each reported 100 times)
in a thread while the test reads the store, listening to the owner's group on channels'
in-memory layer (the fixtures of test_execution.py). The last test runs the sample's report
build on the session's stack (web app, Kafka, worker, Redis) with a real WebSocket client.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.test import override_settings

from async_request.execution import execute
from async_request.notifications import layer_message
from async_request.progress import Progress
from async_request.results.status import status_body
from async_request.settings import reset_settings
from async_request.store import OperationStore
from tests.asgi_apps import progress_app
from tests.integration.stack import IntegrationStack, auth
from tests.integration.test_e2e import open_socket
from tests.integration.test_execution import OWNER, accepted, heard, worker_settings

pytestmark = pytest.mark.integration
__all__ = ["worker_settings"]  # a fixture, used by name
PROGRESS_KEYS = {"current", "total", "percent", "message", "updated_at"}


@pytest.fixture
def progress_worker(worker_settings: OperationStore) -> Iterator[OperationStore]:
    with override_settings(ASYNC_REQUEST_ASGI_APP="tests.asgi_apps:progress_app",
                           ASYNC_REQUEST_PROGRESS_INTERVAL_SEC=0.05):
        reset_settings()
        yield worker_settings
    reset_settings()


def test_progress_shows_while_running_and_every_frame_comes_before_the_outcome(
        progress_worker: OperationStore) -> None:
    envelope = accepted(progress_worker)
    task_id = envelope["task_id"]
    bodies: list[dict[str, Any]] = []

    def run() -> None:
        worker = threading.Thread(target=execute, args=(envelope,),
                                  kwargs={"task_id": task_id, "worker": "w1"})
        worker.start()
        while worker.is_alive():
            operation = progress_worker.get(task_id)
            if operation is not None and operation.state == "running":
                bodies.append(status_body(operation))
            time.sleep(0.02)
        worker.join()

    messages = heard(OWNER, run)
    shown = [body["progress"] for body in bodies if body["progress"] is not None]
    assert shown, bodies  # the status body showed progress while it ran
    assert set(shown[-1]) == PROGRESS_KEYS and shown[-1]["total"] == 10
    assert shown[-1]["percent"] == 10.0 * shown[-1]["current"]
    assert shown[-1]["message"] == f"step {shown[-1]['current']}"
    assert shown[-1]["updated_at"].endswith("Z")

    # The outcome comes last; the first frame says it started (no progress yet).
    assert messages[-1] == {**layer_message(task_id, "completed"), "seq": messages[-1]["seq"]}
    assert messages[0]["status"] == "running" and "progress" not in messages[0]
    running = messages[1:-1]
    # 1,000 reports in ~0.4 s at most one write per 50 ms: a handful of frames, not 1,000.
    assert 2 <= len(running) <= 12, running
    assert all(m["status"] == "running" and set(m["progress"]) == PROGRESS_KEYS
               for m in running)
    currents = [m["progress"]["current"] for m in running]
    assert currents == sorted(currents) and currents[0] >= 1

    final = progress_worker.get(task_id)
    assert final is not None and final.state == "completed"
    # The last report, written as the run ended, stays with the outcome.
    assert status_body(final)["progress"]["current"] == 10
    assert status_body(final)["progress"]["percent"] == 100.0


def test_a_progress_write_never_touches_an_ended_run_or_another_workers(
        progress_worker: OperationStore) -> None:
    envelope = accepted(progress_worker)
    task_id = envelope["task_id"]
    late = Progress(1, 10, "late", time.time())
    assert not progress_worker.progress(task_id, "w1", late)  # pending: not written
    progress_worker.claim(task_id, "w1")
    assert not progress_worker.progress(task_id, "w2", late)  # not the run that holds it
    assert progress_worker.progress(task_id, "w1", late)
    progress_worker.finish(task_id, {"task_id": task_id, "status": 200, "endpoint": "/api/x/",
                                     "headers": [], "body": ""})
    assert not progress_worker.progress(task_id, "w1", Progress(2, 10, "after", time.time()))
    operation = progress_worker.get(task_id)
    assert operation is not None and operation.state == "completed"
    assert operation.progress is not None and operation.progress.message == "late"


def test_the_same_route_run_directly_reports_nothing_and_answers() -> None:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=progress_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/")

    response = asyncio.run(call())
    assert (response.status_code, response.text) == (200, "done")


def test_on_the_stack_a_report_build_shows_progress_then_its_outcome(
        stack: IntegrationStack, http: httpx.Client) -> None:
    token = stack.create_user("pat_progress")
    with open_socket(stack, token=token) as ws:
        response = http.post("/api/v1/reports/", json={"kind": "sales", "seconds": 3},
                             headers=auth(token, **{"x-async-request": "true"}))
        assert response.status_code == 202, response.text
        task_id = response.json()["meta"]["async_request_id"]
        status_url = f"/api/v1/async_background_response/{task_id}/"
        deadline, body = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            body = http.get(status_url, headers=auth(token)).json()
            if body["state"] != "pending" and body["progress"] is not None:
                break
            time.sleep(0.1)
        assert body is not None and body["state"] == "running", body
        assert set(body["progress"]) == PROGRESS_KEYS and body["progress"]["total"] == 10
        assert body["progress"]["message"] == "building the sales report"

        frames: list[dict[str, Any]] = []
        while not frames or frames[-1]["status"] in ("pending", "running"):
            data = json.loads(json.loads(ws.recv(timeout=60))["data"])
            if data["task_id"] == task_id:
                frames.append(data)
    assert frames[-1]["status"] == "completed" and "progress" not in frames[-1]
    running = [f for f in frames[:-1] if "progress" in f]
    assert running and all(set(f["progress"]) == PROGRESS_KEYS for f in running)
    final = http.get(status_url, headers=auth(token)).json()
    assert final["state"] == "completed" and final["status"] == 201
    assert final["progress"] == {**final["progress"], "current": 10, "percent": 100.0,
                                 "message": "saving"}
