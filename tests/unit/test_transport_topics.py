"""TopicAdmin: broker trouble surfaces as the transport's connection error."""

from __future__ import annotations

import time
from concurrent.futures import Future
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from async_request.transport._topics import TopicAdmin, replication_for
from async_request.transport.errors import KafkaChannelError, KafkaConnectionError


class _SlowAdmin:
    """An AdminClient whose offset lookups never answer (a restarted Apache Kafka whose group
    coordinator is not loaded yet)."""

    def list_offsets(self, request: dict[Any, Any], **_: Any) -> dict[Any, Future[Any]]:
        answers: dict[Any, Future[Any]] = {}
        for tp in request:
            done: Future[Any] = Future()
            done.set_result(type("Info", (), {"offset": 5})())
            answers[tp] = done
        return answers

    def list_consumer_group_offsets(self, request: list[Any], **_: Any) -> dict[str, Future[Any]]:
        return {request[0].group_id: Future()}  # never resolved


def test_backlog_timing_out_is_a_connection_error() -> None:
    admin = TopicAdmin({"bootstrap.servers": "127.0.0.1:1"}, timeout=0.05)
    admin._admin = _SlowAdmin()  # type: ignore[assignment]
    admin._known["t"], admin._read_at["t"] = 1, time.monotonic()
    with pytest.raises(KafkaConnectionError, match="timed out"):
        admin.backlog("g", "t")


@pytest.mark.parametrize(("brokers", "replicas", "min_isr"), [
    (1, 1, None), (2, 2, None), (3, 3, "2"), (5, 3, "2")])
def test_new_topics_are_replicated_to_suit_the_cluster(brokers: int, replicas: int,
                                                       min_isr: str | None) -> None:
    replication, config = replication_for(brokers, 0, 0, {"retention.ms": "1"})
    assert replication == replicas
    assert config.get("min.insync.replicas") == min_isr
    assert config["retention.ms"] == "1"


def test_configured_replication_and_min_isr_are_kept() -> None:
    assert replication_for(3, 2, 0, {}) == (2, {})
    assert replication_for(3, -1, 0, {}) == (-1, {})
    assert replication_for(1, 3, 3, {}) == (3, {"min.insync.replicas": "3"})
    assert replication_for(3, 0, 0, {"min.insync.replicas": "1"}) == (
        3, {"min.insync.replicas": "1"})


def test_a_min_isr_above_the_replication_factor_names_both() -> None:
    with pytest.raises(KafkaChannelError, match="'min_insync_replicas' is 3.*factor 2"):
        replication_for(3, 2, 3, {})


class _FlakyAdmin:
    """Metadata whose first `failures` requests hit a broker whose connection breaks."""

    def __init__(self, failures: int) -> None:
        self.failures, self.calls = failures, 0

    def list_topics(self, topic: str | None = None, timeout: float = 0) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Broker transport failure"))
        return type("Metadata", (), {"topics": {}, "brokers": {1: None, 2: None}})()


def test_a_metadata_request_to_a_dying_broker_is_asked_again() -> None:
    admin = TopicAdmin({"bootstrap.servers": "127.0.0.1:1"}, timeout=5,
                       unreachable_timeout=0.5)
    flaky = _FlakyAdmin(failures=2)
    admin._admin = flaky  # type: ignore[assignment]
    admin.ping()
    assert flaky.calls == 3
    assert not admin.health.down


def test_a_cluster_that_stays_away_still_fails_within_unreachable_timeout() -> None:
    admin = TopicAdmin({"bootstrap.servers": "127.0.0.1:1"}, timeout=5,
                       unreachable_timeout=0.2)
    admin._admin = _FlakyAdmin(failures=10**6)  # type: ignore[assignment]
    with pytest.raises(KafkaConnectionError, match="unreachable"):
        admin.ping()
    assert admin.health.down


class _Metadata:
    """An AdminClient whose metadata says `count` partitions, counting the requests."""

    def __init__(self, count: int) -> None:
        self.count, self.requests = count, 0

    def list_topics(self, topic: str, **_: Any) -> Any:
        self.requests += 1
        found = type("T", (), {"error": None, "partitions": dict.fromkeys(range(self.count))})
        return type("M", (), {"topics": {topic: found}})()


def test_partition_counts_are_read_again_after_the_metadata_refresh_interval() -> None:
    # partitions added to a live topic: publishing must spread over them too
    admin = TopicAdmin({"topic.metadata.refresh.interval.ms": 60000}, timeout=0.05)
    metadata = _Metadata(4)
    admin._admin = metadata  # type: ignore[assignment]
    assert admin.partitions("t") == 4
    metadata.count = 8
    assert admin.partitions("t") == 4 and metadata.requests == 1  # cached
    admin._read_at["t"] -= 61
    assert admin.partitions("t") == 8 and metadata.requests == 2
    assert admin.ensure("t", 4, 1, {}) == 8  # no creation for a known topic
