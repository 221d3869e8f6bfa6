"""TopicAdmin: broker trouble surfaces as the transport's connection error."""

from __future__ import annotations

import time
from concurrent.futures import Future
from typing import Any

import pytest

from async_request.transport._topics import TopicAdmin
from async_request.transport.errors import KafkaConnectionError


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
