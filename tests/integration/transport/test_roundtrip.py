"""A real worker on our Kafka transport: round trips, failures, every pool, warm shutdown."""

from __future__ import annotations

import time

import pytest
from celery.exceptions import TimeoutError as CeleryTimeout

from tests.integration.transport.conftest import Cluster

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("pool", ["prefork", "threads", "solo"])
def test_pool_round_trip_and_warm_shutdown(cluster: Cluster, pool: str) -> None:
    worker = cluster.worker(pool=pool, concurrency=1 if pool == "solo" else 2)
    worker.wait_ready()
    app = cluster.app()
    # Speed is measured in bench/transport.py; here: it works, and nothing hangs.
    assert app.send_task("kt.noop", args=["first"]).get(timeout=60) == "first"
    for index in range(20):
        assert app.send_task("kt.noop", args=[f"t{index}"]).get(timeout=5) == f"t{index}"
    failing = app.send_task("kt.fail", args=["x"])
    with pytest.raises(ValueError, match="failing on purpose"):
        failing.get(timeout=5)
    results = [app.send_task("kt.early", args=[f"b{i}"]) for i in range(30)]
    assert [r.get(timeout=15) for r in results] == [f"b{i}" for i in range(30)]
    assert worker.term() < 30  # warm shutdown returns (a hang would be the bug)
    app.close()


def test_two_queues_as_fast_as_one(cluster: Cluster) -> None:
    """An extra, empty queue costs nothing (kombu's transport adds 5 s per empty queue)."""
    worker = cluster.worker(extra=["-Q", f"{cluster.names.queue},{cluster.names.queue}-x,"
                                         f"{cluster.names.queue}-y"])
    worker.wait_ready()
    app = cluster.app()
    app.send_task("kt.noop", args=["warm"]).get(timeout=10)
    took = []
    for index in range(10):
        started = time.monotonic()
        app.send_task("kt.noop", args=[f"t{index}"]).get(timeout=5)
        took.append(time.monotonic() - started)
    # kombu's stock transport waits 5 s per empty queue; any median under 1 s rules that out.
    assert sorted(took)[5] < 1.0
    other = app.send_task("kt.noop", args=["other"], queue=f"{cluster.names.queue}-y")
    assert other.get(timeout=5) == "other"
    app.close()


def test_no_worker_means_no_result(cluster: Cluster) -> None:
    app = cluster.app()
    result = app.send_task("kt.noop", args=["nobody"])
    with pytest.raises(CeleryTimeout):
        result.get(timeout=0.5)
    app.close()


def test_idle_workers_wake_for_tasks_and_rebalance_while_idle(cluster: Cluster) -> None:
    """Idle mode pauses the work partitions; a task, or a rebalance, wakes them (no loss)."""
    cluster.options = {"idle_after": 0.3}
    first = cluster.worker(concurrency=1)
    first.wait_ready()
    app = cluster.app()
    assert app.send_task("kt.noop", args=["warm"]).get(timeout=60) == "warm"
    for index in range(5):  # each task arrives after the worker went idle
        time.sleep(0.8)
        assert app.send_task("kt.noop", args=[f"i{index}"]).get(timeout=10) == f"i{index}"
    second = cluster.worker(concurrency=1)  # joins while the first is idle: a rebalance
    second.wait_ready()
    time.sleep(3.0)
    tags = {f"r{index}" for index in range(20)}
    for tag in sorted(tags):
        app.send_task("kt.noop", args=[tag])
    cluster.wait_marks("done", tags, 30)
    app.close()
