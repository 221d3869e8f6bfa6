"""Registry against a real Redis: ownership entries and the claim that makes replays idempotent."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest

from async_request.registry import Registry

pytestmark = pytest.mark.integration


@pytest.fixture
def registry(redis_url: str) -> Registry:
    return Registry(redis_url, expires_sec=60, lease_sec=0.6)


def new_id() -> str:
    return str(uuid.uuid4())


def test_accept_then_forget(registry: Registry) -> None:
    task_id = new_id()
    asyncio.run(registry.accept(task_id, "user:1", "/api/x/", "POST", b"big body"))
    assert registry.entry(task_id) == {**registry.entry(task_id), "owner": "user:1",  # type: ignore[dict-item]
                                       "endpoint": "/api/x/", "method": "POST"}
    assert registry.load_body(task_id) == b"big body"
    asyncio.run(registry.forget(task_id))
    assert registry.entry(task_id) is None and not registry.known(task_id)


def test_first_claim_runs_and_a_finished_run_is_reused(registry: Registry) -> None:
    task_id = new_id()
    assert registry.claim(task_id, "w1", wait_sec=1).action == "run"
    registry.finish(task_id, {"status": 201})
    again = registry.claim(task_id, "w2", wait_sec=1)
    assert again.action == "done" and again.result == {"status": 201}


def test_a_run_that_died_is_resumed_with_its_attempt_number(registry: Registry) -> None:
    task_id = new_id()
    assert registry.claim(task_id, "w1", wait_sec=0).action == "run"
    time.sleep(0.8)  # w1 "died": its lease expires without finish()
    claim = registry.claim(task_id, "w2", wait_sec=0)
    assert claim.action == "resume" and claim.attempt == 2


def test_a_live_run_is_waited_for(registry: Registry) -> None:
    task_id = new_id()
    registry.claim(task_id, "w1", wait_sec=0)
    stop = threading.Event()

    def keep_alive_then_finish() -> None:
        for _ in range(4):
            time.sleep(0.2)
            registry.renew(task_id, "w1")
        registry.finish(task_id, {"status": 200})

    thread = threading.Thread(target=keep_alive_then_finish)
    thread.start()
    claim = registry.claim(task_id, "w2", wait_sec=5)
    thread.join()
    stop.set()
    assert claim.action == "done" and claim.result == {"status": 200}


def test_concurrent_claims_run_once(registry: Registry) -> None:
    task_id = new_id()
    actions: list[str] = []

    def claim(worker: str) -> None:
        actions.append(registry.claim(task_id, worker, wait_sec=0.1).action)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert actions.count("run") == 1
    assert set(actions) <= {"run", "resume"}
