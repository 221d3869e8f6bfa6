"""What only a real Apache Kafka broker checks (run with AR_TEST_KAFKA=apache: `make test-kafka`).

The tansu-based tests imitate Kafka's session rule with a proxy (test_group.py) and restart a
tansu of their own (test_publish.py); here the session broker is an Apache Kafka node
(tools/apache_kafka.py), which refuses sessions below its `group.min.session.timeout.ms`
(6000) itself and auto-creates topics that a metadata request names.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions

from tests.integration.transport.conftest import ROOT, Cluster
from tools.services import Service

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.environ.get("AR_TEST_KAFKA") != "apache",
                       reason="needs AR_TEST_KAFKA=apache (make test-kafka)"),
]


def _partitions(broker: str, topic: str) -> int:
    metadata = AdminClient({"bootstrap.servers": broker}).list_topics(timeout=10)
    return len(metadata.topics[topic].partitions)


def test_the_worker_joins_with_the_brokers_minimum_session_and_leaves_at_shutdown(
        cluster: Cluster) -> None:
    # detect_broker: Apache Kafka reports group.min.session.timeout.ms (6000)
    worker = cluster.worker(pool="solo", concurrency=1)
    worker.wait_ready()
    app = cluster.app()
    assert app.send_task("kt.noop", args=["x"]).get(timeout=60) == "x"
    # ... and its fetches wait for records (Kafka answers a held fetch as soon as one arrives)
    assert ("joins with session.timeout.ms=6000 and fetch.wait.max.ms=100; a stopping worker "
            "leaves the group") in worker.text()
    assert "INVALID_SESSION_TIMEOUT" not in worker.text()
    worker.term(timeout=30)
    assert "not leaving group" not in worker.text()


def test_without_detection_the_default_session_is_refused_and_the_worker_rejoins_with_6000(
        cluster: Cluster) -> None:
    cluster.options = {"detect_broker": False}
    worker = cluster.worker(pool="solo", concurrency=1)
    worker.wait_ready()
    app = cluster.app()
    assert app.send_task("kt.noop", args=["x"]).get(timeout=60) == "x"
    assert "INVALID_SESSION_TIMEOUT" in worker.text()
    assert "rejoining with 6000" in worker.text()


def test_partitions_added_to_a_live_topic_are_published_to_and_consumed(
        cluster: Cluster, kafka: Service) -> None:
    # the metadata refresh (30 s by default) shortened so the test does not wait for it
    cluster.options = {"num_partitions": 2,
                       "kafka_config": {"topic.metadata.refresh.interval.ms": 1000}}
    worker = cluster.worker(pool="solo", concurrency=1)
    worker.wait_ready()
    app = cluster.app()
    assert app.send_task("kt.noop", args=["before"]).get(timeout=60) == "before"
    topic = cluster.names.queue
    admin = AdminClient({"bootstrap.servers": kafka.url})
    admin.create_partitions([NewPartitions(topic, 4)])[topic].result(30)
    worker.wait_for(f"{topic}[3]", 60)  # the group rebalanced onto the new partitions
    time.sleep(1.5)  # the client's partition count is read again after the refresh interval
    tags = [f"after-{i}" for i in range(8)]
    for tag in tags:
        app.send_task("kt.noop", args=[tag])
    cluster.wait_marks("done", set(tags), 60)
    consumer = Consumer({"bootstrap.servers": kafka.url, "group.id": "kt-watermarks"})
    try:
        ends = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in (2, 3)]
    finally:
        consumer.close()
    assert all(end >= 2 for end in ends), ends  # round-robin reached the new partitions


def test_a_configured_session_below_the_minimum_is_never_changed(cluster: Cluster) -> None:
    cluster.options = {"kafka_consumer_config": {"session.timeout.ms": 3000,
                                                 "heartbeat.interval.ms": 500}}
    worker = cluster.worker(pool="solo", concurrency=1)
    worker.wait_for("refuses session.timeout.ms=3000 from the transport options", 30)
    assert "rejoining with" not in worker.text()


def test_work_topics_get_num_partitions_not_the_broker_default(
        cluster: Cluster, kafka: Service) -> None:
    cluster.options = {"num_partitions": 3}
    app = cluster.app()
    app.send_task("kt.noop", args=["x"])  # declares and creates the queue's topic
    assert _partitions(kafka.url, cluster.names.queue) == 3


# Run in a child process: librdkafka (2.16.0 here) dereferences a NULL consumer group in the
# admin client when ListConsumerGroupOffsets answers NOT_COORDINATOR (a restarted broker, a
# moved coordinator), a SIGSEGV of the whole process (confluentinc/librdkafka#5040,
# confluent-kafka-python#1982). The transport asked for it in every queue_declare (the backlog);
# now only in passive ones (docs/transport.md, Known issues), so this may pass.
_BROKER_DOWN = """
import sys, time, uuid
from kombu.exceptions import OperationalError
from tests.integration.transport.app import make_app
from tools.apache_kafka import start_single

broker = start_single()
suffix = uuid.uuid4().hex[:8]
app = make_app(broker.url, sys.argv[1], f"kt-down-{suffix}", f"kt-g-{suffix}", f"kt:{suffix}",
               {"publish_timeout": 2})
try:
    app.send_task("kt.noop", args=["before"], retry=False)
    broker.kill()  # SIGKILL; its data dir and port stay for the restart
    started = time.monotonic()
    try:
        app.send_task("kt.noop", args=["during"], retry=False)
        sys.exit("published while the broker was down")
    except OperationalError:
        pass
    assert time.monotonic() - started < 30, "a hang, not an error (publish_timeout 2 s)"
    broker.start()  # same node, port and data
    deadline = time.monotonic() + 60
    while True:
        try:
            app.send_task("kt.noop", args=["after"], retry=False)
            break
        except OperationalError as exc:
            print("after:", exc, flush=True)
            assert time.monotonic() < deadline, "publish never recovered"
            time.sleep(0.2)
    print("recovered", flush=True)
finally:
    app.close()
    broker.stop()
"""


@pytest.mark.xfail(reason="librdkafka SIGSEGV on NOT_COORDINATOR in ListConsumerGroupOffsets "
                          "(confluentinc/librdkafka#5040); passed since only passive declares "
                          "ask for offsets (2026-12-02), kept non-strict until more runs agree",
                   strict=False)
def test_broker_down_raises_then_recovers_in_the_same_process(kt_redis_url: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", _BROKER_DOWN, kt_redis_url], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=180, check=False)
    lines = [line for line in (result.stdout + result.stderr).splitlines()
             if "Connect to ipv4" not in line]
    assert result.returncode == 0, (result.returncode, "\n".join(lines[-30:]))
    assert "recovered" in result.stdout
