"""The sweep (async_request/sweep.py): operations the broker lost are published again.

The store part runs on its own Redis database (6) with a recording dispatcher; the live part
on a broker of its own that is SIGKILLed (tansu keeps messages in memory: they are gone) and
a stack of its own on the same database, with a 3 s deadline.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from async_request.dispatch import Dispatcher
from async_request.envelope import RequestEnvelope
from async_request.records import PENDING
from async_request.settings import Settings, load_settings
from async_request.store import OperationStore
from async_request.sweep import Sweeper
from tests.integration.stack import auth, module_stack, own_redis_db
from tests.integration.test_faults import count_reports, wait_state
from tools.services import free_port, start_tansu

pytestmark = pytest.mark.integration

DB = 6
SECRET = "s" * 32


class Recorder(Dispatcher):
    """A dispatcher that records what it would publish (the broker is not this part's subject)."""

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(settings=settings)
        self.sent: list[str] = []
        self.lanes: list[str] = []

    def send(self, envelope: RequestEnvelope, *, secret: str, lane: str = "default",
             sealed: object = None) -> None:
        self.sent.append(envelope.task_id)
        self.lanes.append(lane)


@pytest.fixture
def store(redis_url: str) -> OperationStore:
    return OperationStore(own_redis_db(redis_url, DB), expires_sec=60, secret=SECRET)


def accepted(store: OperationStore, lane: str | None = None,
             path: str = "/api/v1/orders/") -> str:
    task_id = str(uuid.uuid4())
    envelope = RequestEnvelope(task_id=task_id, owner="user:sweep", method="GET",
                               path=path, raw_path=path.encode(),
                               query_string=b"", headers=(), body=b"")
    asyncio.run(store.accept(task_id, "user:sweep", envelope.path, "GET",
                             envelope=envelope.to_dict(SECRET), lane=lane))
    return task_id


def test_pending_until_claimed_cancelled_or_forgotten(store: OperationStore) -> None:
    claimed, cancelled, forgotten = accepted(store), accepted(store), accepted(store)
    pending = {m.decode() for m in store.client.zrange(PENDING, 0, -1)}  # type: ignore[union-attr]
    assert pending == {claimed, cancelled, forgotten}
    assert store.claim(claimed, "w1").action == "run"
    assert store.cancel(cancelled, "user:sweep") == "cancelled"
    asyncio.run(store.forget(forgotten))
    assert store.client.zcard(PENDING) == 0


def test_sweep_republishes_to_the_lane_the_record_names(store: OperationStore) -> None:
    lanes = load_settings({"BS_ENV_FILE": "/nonexistent", "BS_ASYNC_REQUEST_LANES":
                           '["GET ^/reports/.*$ slow", "GET ^/bulk/$ bulk"]'},
                          django_settings=None)
    # Accepted on `bulk` although its route is unlisted now: the record wins while the lane
    # exists; a lane no longer configured falls back to the route's lane; no lane (a record
    # from before lanes) is the route's lane.
    kept = accepted(store, lane="bulk")
    gone = accepted(store, lane="removed", path="/reports/1/")
    old = accepted(store, path="/reports/2/")
    for task_id in (kept, gone, old):
        store.client.zadd(PENDING, {task_id: time.time() - 60})
    sent = Recorder(lanes)
    assert Sweeper(store, sent, deadline_sec=30, secret=SECRET, interval=30).sweep() == 3
    assert dict(zip(sent.sent, sent.lanes, strict=True)) == {
        kept: "bulk", gone: "slow", old: "slow"}


def test_sweep_republishes_overdue_once_per_interval(store: OperationStore) -> None:
    old, fresh = accepted(store), accepted(store)
    now = time.time()
    store.client.zadd(PENDING, {old: now - 60})  # accepted a minute ago, never claimed
    sent = Recorder()
    first = Sweeper(store, sent, deadline_sec=30, secret=SECRET, interval=30, name="a")
    second = Sweeper(store, sent, deadline_sec=30, secret=SECRET, interval=30, name="b")
    assert first.sweep(now) == 1 and sent.sent == [old]
    assert second.sweep(now) is None  # the other sweeper holds this interval
    store.client.delete("async_request:sweep:lease")  # the interval is over
    assert second.sweep(now + 1) == 0  # re-scored at its re-publish: not due again yet
    assert sent.sent == [old]
    store.client.delete("async_request:sweep:lease")
    assert store.claim(old, "w1").action == "run"  # a claim ends its sweeping
    assert second.sweep(now + 120) == 1 and sent.sent == [old, fresh]


@pytest.fixture(scope="module")
def lossy(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[dict]:
    workdir: Path = tmp_path_factory.mktemp("sweep")
    port = free_port()
    broker = {"service": start_tansu(port, log_path=workdir / "kafka.log"), "port": port}
    try:
        with module_stack(f"127.0.0.1:{port}", redis_url, workdir, DB,
                          {"BS_ASYNC_REQUEST_REPUBLISH_AFTER_SEC": "3"}) as stack:
            yield {"stack": stack, "broker": broker}
    finally:
        broker["service"].stop()


def test_operations_survive_a_broker_that_lost_them(lossy: dict) -> None:
    """Worker stopped, 6 accepted, tansu SIGKILLed and back: all 6 complete, each run once."""
    stack, broker = lossy["stack"], lossy["broker"]
    token = stack.create_user("sweep_lost")
    headers = auth(token, **{"X-Async-Request": "true"})
    with httpx.Client(base_url=stack.base_url, timeout=30) as http:
        warm = http.get("/api/v1/orders/", headers=headers)  # the topic exists, producer up
        assert warm.status_code == 202
        wait_state(http, warm.json()["meta"]["async_request_id"], token, {"completed"}, 60)
        stack.stop_worker()
        ids = []
        for _ in range(6):
            response = http.post("/api/v1/reports/", json={"kind": "sales", "seconds": 0},
                                 headers=headers)
            assert response.status_code == 202, response.text
            ids.append(response.json()["meta"]["async_request_id"])
        broker["service"].kill()  # memory storage: the 6 messages are gone
        # Away for a while: a tansu back within about a session (1.5 s) has left a group
        # member waiting for ever (test_faults.py).
        time.sleep(6)
        broker["service"] = start_tansu(broker["port"],
                                        log_path=stack.workdir / "kafka-restarted.log")
        stack.restart_worker()
        try:
            results = [wait_state(http, task_id, token, {"completed", "failed"}, 120)
                       for task_id in ids]
        except AssertionError:
            print(stack.log_tails())
            raise
    assert [r["state"] for r in results] == ["completed"] * 6
    assert count_reports(stack, "sweep_lost") == 6  # each side effect exactly once
