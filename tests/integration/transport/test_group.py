"""Consumer group membership on a real broker: leaving safely, and a session Kafka accepts.

tansu keeps naming a group leader that left (LeaveGroup) while the group was rebalancing, and
then no member ever gets partitions again (docs/transport.md, "Known issues"). A worker that
stops while another one joins is exactly that case; the transport waits until its member is
not rebalancing before it leaves.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.transport.conftest import Cluster, Names
from tests.integration.transport.kafka_proxy import MinSessionProxy
from tools.services import free_port, start_tansu

pytestmark = pytest.mark.integration


def test_a_worker_stopping_while_another_joins_does_not_wedge_the_group(
        cluster: Cluster) -> None:
    leader = cluster.worker(pool="solo", concurrency=1)
    leader.wait_ready()
    app = cluster.app()
    assert app.send_task("kt.noop", args=["warm"]).get(timeout=60) == "warm"
    time.sleep(1.5)  # the group is stable, with the first worker as its leader
    joiner = cluster.worker(pool="solo", concurrency=1)
    joiner.wait_ready()  # its JoinGroup is now parked by tansu: the group is rebalancing
    time.sleep(0.3)
    leader.term()  # warm shutdown of the leader in the middle of the rebalance
    tags = {f"g{i}" for i in range(10)}
    for tag in sorted(tags):
        app.send_task("kt.noop", args=[tag])
    cluster.wait_marks("done", tags, 30)  # the joiner got the partitions
    app.close()


@pytest.fixture
def kafka_min_session(kt_logs: Path) -> Iterator[tuple[str, MinSessionProxy]]:
    """A tansu that refuses sessions below 6000 ms, as Apache Kafka does by default."""
    proxy_port = free_port()
    broker = start_tansu(log_path=kt_logs / "tansu-min-session.log", advertised_port=proxy_port)
    proxy = MinSessionProxy(proxy_port, int(broker.url.rsplit(":", 1)[1])).start()
    try:
        yield f"127.0.0.1:{proxy_port}", proxy
    finally:
        proxy.stop()
        broker.stop()


def test_a_session_the_broker_refuses_is_replaced_by_a_longer_one(
        kafka_min_session: tuple[str, MinSessionProxy], kt_redis_url: str, names: Names,
        kt_logs: Path) -> None:
    address, proxy = kafka_min_session
    cluster = Cluster(address, kt_redis_url, names, kt_logs)
    try:
        worker = cluster.worker()
        worker.wait_ready()
        app = cluster.app()
        assert app.send_task("kt.noop", args=["x"]).get(timeout=60) == "x"
        assert proxy.refused[:1] == [1500]  # the default, refused
        assert proxy.accepted and set(proxy.accepted) == {6000}
        assert "rejoining with 6000" in worker.text()
    finally:
        cluster.close()


def test_a_configured_session_is_never_changed(
        kafka_min_session: tuple[str, MinSessionProxy], kt_redis_url: str, names: Names,
        kt_logs: Path) -> None:
    address, proxy = kafka_min_session
    cluster = Cluster(address, kt_redis_url, names, kt_logs)
    cluster.options = {"kafka_consumer_config": {"session.timeout.ms": 3000,
                                                 "heartbeat.interval.ms": 500}}
    try:
        worker = cluster.worker()
        worker.wait_for("refuses session.timeout.ms=3000 from the transport options", 30)
        assert not proxy.accepted
    finally:
        cluster.close()


def test_partitions_paused_by_flow_control_are_fetched_again_after_a_rebalance(
        cluster: Cluster) -> None:
    """librdkafka keeps a partition's pause across revoke and re-assign: a worker whose
    partitions were paused when a second worker joined must still consume what it gets back."""
    cluster.options = {"idle_after": 0, "max_buffered": 2}
    first = cluster.worker(pool="solo", concurrency=1)
    first.wait_ready()
    app = cluster.app()
    assert app.send_task("kt.noop", args=["warm"]).get(timeout=60) == "warm"
    slow = {f"s{i:02d}" for i in range(16)}
    for tag in sorted(slow):  # 0.5 s each: the prefetch window fills, then the inbox: paused
        app.send_task("kt.late", args=[tag, 0.5])
    cluster.wait_marks("start", {sorted(slow)[0]}, 20)
    second = cluster.worker(pool="solo", concurrency=1)  # rebalance while paused
    second.wait_ready()
    later = {f"l{i}" for i in range(20)}
    for tag in sorted(later):
        app.send_task("kt.noop", args=[tag])
    cluster.wait_marks("done", slow | later, 60)
    app.close()
