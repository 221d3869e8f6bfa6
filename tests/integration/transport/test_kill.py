"""SIGKILL loses nothing: the three loss scenarios of the research report (§4.2).

kombu's confluentkafka transport lost the running task, a prefetched task and a requeued
task in these scenarios; here each task must complete after the replacement worker starts.
"""

from __future__ import annotations

import time

import pytest

from tests.integration.transport.conftest import Cluster

pytestmark = pytest.mark.integration


def test_late_kill9_redelivers_the_running_task(cluster: Cluster) -> None:
    """acks_late SLOW runs while later tasks are acked; kill -9; SLOW runs again."""
    worker = cluster.worker(concurrency=2)
    worker.wait_ready()
    app = cluster.app()
    app.send_task("kt.late", args=["SLOW", 30])
    cluster.wait_marks("start", {"SLOW"}, 10)
    fast = {f"F{i}" for i in range(6)}
    for tag in sorted(fast):
        app.send_task("kt.late", args=[tag, 0])
    cluster.wait_marks("done", fast, 10)
    time.sleep(1.5)  # let the commit timer run: it must not commit past SLOW
    worker.kill()
    replacement = cluster.worker(concurrency=2)
    replacement.wait_ready()
    assert cluster.wait_count("start", "SLOW", 2, 15) == 2
    # F* behind SLOW on its partition may run twice (head-of-line, at-least-once): allowed
    app.close()


def test_early_kill9_redelivers_prefetched_tasks(cluster: Cluster) -> None:
    """12 early-ack tasks of 2 s on -c2; kill -9 after the first finishes; none is lost
    except the ones that were running (early ack = at-most-once for those, by design)."""
    worker = cluster.worker(concurrency=2)
    worker.wait_ready()
    app = cluster.app()
    tags = [f"T{i:02d}" for i in range(12)]
    for tag in tags:
        app.send_task("kt.early", args=[tag, 2])
    deadline = time.monotonic() + 20
    while not cluster.marks("done") and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.kill()
    started_before = {tag for tag, _ in cluster.marks("start")}
    done_before = {tag for tag, _ in cluster.marks("done")}
    running_at_kill = started_before - done_before
    replacement = cluster.worker(concurrency=2)
    replacement.wait_ready()
    expected = set(tags) - running_at_kill
    cluster.wait_marks("done", expected, 40)
    assert len(running_at_kill) <= 2


def test_requeue_after_a_later_ack_is_redelivered(cluster: Cluster) -> None:
    """R is rejected with requeue after later tasks were acked; it still runs to the end,
    also when the worker that requeued it is killed."""
    worker = cluster.worker(concurrency=2)
    worker.wait_ready()
    app = cluster.app()
    app.send_task("kt.requeue_once", args=["R", 1.0])
    cluster.wait_marks("start", {"R"}, 10)
    later = {f"L{i}" for i in range(4)}
    for tag in sorted(later):
        app.send_task("kt.late", args=[tag, 0])
    cluster.wait_marks("done", later | {"R"}, 20)
    worker.kill()
    assert [tag for tag, _ in cluster.marks("start")].count("R") >= 2
    app.close()
