"""TopicAdmin: broker trouble surfaces as the transport's connection error."""

from __future__ import annotations

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
    admin._known["t"] = 1
    with pytest.raises(KafkaConnectionError, match="timed out"):
        admin.backlog("g", "t")
