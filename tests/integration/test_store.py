"""The operation store against a real Redis: records and the claim that makes replays idempotent."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest

from async_request.events import EventLog
from async_request.records import inflight_key
from async_request.store import OperationStore

pytestmark = pytest.mark.integration


@pytest.fixture
def store(local_redis_url: str) -> OperationStore:
    return OperationStore(local_redis_url, expires_sec=60, secret="s" * 32, lease_sec=0.6)


def new_id() -> str:
    return str(uuid.uuid4())


def accepted(store: OperationStore, owner: str = "user:store-1", method: str = "POST") -> str:
    task_id = new_id()
    asyncio.run(store.accept(task_id, owner, "/api/x/", method))
    return task_id


def test_accept_then_forget(store: OperationStore) -> None:
    task_id = new_id()
    asyncio.run(store.accept(task_id, "user:store-1", "/api/x/", "POST", b"big body"))
    operation = store.get(task_id)
    assert operation is not None
    assert (operation.owner, operation.endpoint, operation.method, operation.state) == (
        "user:store-1", "/api/x/", "POST", "pending")
    assert operation.created_at > 0 and operation.started_at is None
    assert store.load_body(task_id) == b"big body"
    asyncio.run(store.forget(task_id))
    assert store.get(task_id) is None and store.claim(task_id, "w1").action == "unknown"


def test_first_claim_runs_and_a_finished_run_is_reused(store: OperationStore) -> None:
    task_id = accepted(store)
    claim = store.claim(task_id, "w1")
    assert (claim.action, claim.owner, claim.attempt) == ("run", "user:store-1", 1)
    running = store.get(task_id)
    assert running is not None and running.state == "running" and running.started_at
    store.finish(task_id, {"status": 201})
    again = store.claim(task_id, "w2")
    assert again.action == "done" and again.result == {"status": 201}
    done = store.get(task_id)
    assert done is not None and done.state == "completed" and done.finished_at
    assert done.result == {"status": 201}


def test_a_failed_run_is_not_run_again(store: OperationStore) -> None:
    task_id = accepted(store)
    store.claim(task_id, "w1")
    store.fail(task_id, "the request did not finish within 1s")
    claim = store.claim(task_id, "w2")
    assert claim.action == "failed" and claim.error == "the request did not finish within 1s"


def test_a_run_that_died_is_resumed_with_its_attempt_number(store: OperationStore) -> None:
    task_id = accepted(store)
    assert store.claim(task_id, "w1").action == "run"
    time.sleep(0.8)  # w1 "died": its lease expires without finish()
    claim = store.claim(task_id, "w2")
    assert claim.action == "resume" and claim.attempt == 2


def test_a_live_run_is_waited_for(store: OperationStore) -> None:
    task_id = accepted(store)
    store.claim(task_id, "w1")
    stop = threading.Event()

    def keep_alive_then_finish() -> None:
        for _ in range(4):
            time.sleep(0.2)
            store.renew(task_id, "w1")
        store.finish(task_id, {"status": 200})

    thread = threading.Thread(target=keep_alive_then_finish)
    thread.start()
    claim = store.claim(task_id, "w2")
    thread.join()
    stop.set()
    assert claim.action == "done" and claim.result == {"status": 200}


def test_concurrent_claims_run_once(store: OperationStore) -> None:
    task_id = accepted(store)
    actions: list[str] = []

    def claim(worker: str) -> None:
        actions.append(store.claim(task_id, worker).action)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert actions.count("run") == 1
    assert set(actions) <= {"run", "resume"}


def logged_events(store: OperationStore, owner: str) -> list[tuple[int, str, str]]:
    """(seq, task id, status) of the owner's event log."""
    log = EventLog(max_length=1000, ttl_sec=60)

    async def read() -> list[tuple[int, str, str]]:
        backlog = await log.since(store.aclient(), owner, 0)
        return [(e.seq, e.data["task_id"], e.data["status"]) for e in backlog.events]

    return asyncio.run(read())


def test_claim_and_outcome_log_their_events_in_the_same_call(store: OperationStore) -> None:
    owner = f"user:folded-{uuid.uuid4()}"
    log = EventLog(max_length=1000, ttl_sec=60)
    task_id = accepted(store, owner)
    claim = store.claim(task_id, "w1", log.entry(owner, task_id, {"task_id": task_id,
                                                                 "status": "running"}, "running"))
    assert claim.action == "run" and claim.seq == 1
    done = log.entry(owner, task_id, {"task_id": task_id, "status": "completed"}, "completed")
    assert store.finish(task_id, {"status": 200}, done).seq == 2
    # A redelivered outcome is logged once: the first seq comes back.
    assert store.finish(task_id, {"status": 200}, done).seq == 2
    assert logged_events(store, owner) == [(1, task_id, "running"), (2, task_id, "completed")]
    assert not store.client.zcard(inflight_key(owner))


def test_an_event_for_another_owner_than_the_stored_one_is_not_logged(
        store: OperationStore) -> None:
    owner, named = f"user:real-{uuid.uuid4()}", f"user:forged-{uuid.uuid4()}"
    log = EventLog(max_length=1000, ttl_sec=60)
    task_id = accepted(store, owner)
    running = log.entry(named, task_id, {"task_id": task_id, "status": "running"}, "running")
    claim = store.claim(task_id, "w1", running)
    assert claim.action == "run" and claim.seq is None and claim.owner == owner
    failed = log.entry(named, task_id, {"task_id": task_id, "status": "failed"}, "failed")
    assert store.fail(task_id, "boom", failed).seq is None
    assert logged_events(store, named) == [] and logged_events(store, owner) == []
    # The stored owner's in-flight slot is given back all the same.
    assert not store.client.zcard(inflight_key(owner))
