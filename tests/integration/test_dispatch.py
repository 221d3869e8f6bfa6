"""Publishing the replay task from the event loop (dispatch.py, task_message.py), on the
session's real broker: the message is the one Celery's `send_task` writes, read back from the
topic; Celery's publish signals fire around it; the first publish to a topic and a refused
one take the thread path and still answer as before."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from typing import Any

import pytest
from celery.signals import after_task_publish, before_task_publish
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from async_request.celery_config import create_celery_app
from async_request.dispatch import Dispatcher
from async_request.envelope import RequestEnvelope
from async_request.exceptions import EnqueueError
from async_request.settings import load_settings
from tools.services import Service, free_port

pytestmark = pytest.mark.integration

SECRET = "s" * 32


def dispatcher_for(bootstrap: str, topic: str, **extra: str) -> Dispatcher:
    settings = load_settings({"BS_ENV_FILE": "/nonexistent", "BS_SECRET_KEY": SECRET,
                              "BS_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                              "BS_KAFKA_TOPIC_ASYNC_BG": topic, **extra})
    return Dispatcher(create_celery_app(settings=settings), settings)


def envelope(path: str = "/api/v1/orders/") -> RequestEnvelope:
    return RequestEnvelope(task_id=str(uuid.uuid4()), owner="user:7", method="GET", path=path,
                           raw_path=path.encode(), query_string=b"",
                           headers=(("authorization", "Bearer t"),), body=b"")


def records(bootstrap: str, topic: str, count: int, timeout: float = 30.0
            ) -> list[dict[str, Any]]:
    """`count` records of `topic` (any order: it has several partitions), as the kombu
    messages they hold."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4()}",
                         "enable.auto.commit": False})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, number, OFFSET_BEGINNING) for number in partitions])
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < count and time.monotonic() < deadline:
            record = consumer.poll(0.5)
            if record is not None and record.error() is None:
                found.append(json.loads(record.value()))
    finally:
        consumer.close()
    assert len(found) == count, f"read {len(found)} of {count} records from {topic}"
    return found


def shape(message: dict[str, Any]) -> dict[str, Any]:
    """`message` with what differs between two tasks (ids, the summary, the sealed
    envelope's contents, the publishing thread's reply queue) replaced by placeholders."""
    headers = dict(message["headers"])
    task_id = headers["id"]
    for key in ("id", "root_id"):
        assert headers[key] == task_id
        headers[key] = "<id>"
    headers["argsrepr"] = headers["argsrepr"].replace(task_id, "<id>")
    properties = dict(message["properties"])
    assert properties["correlation_id"] == task_id
    properties["correlation_id"] = "<id>"
    properties["argsrepr"] = properties["argsrepr"].replace(task_id, "<id>")
    assert uuid.UUID(properties.pop("delivery_tag")) and properties.pop("reply_to")
    args, kwargs, embed = json.loads(base64.b64decode(message["body"]))
    assert args[0]["task_id"] == task_id
    body = [[sorted(args[0])], kwargs, embed]
    return {**message, "headers": headers, "properties": properties, "body": body}


def publish_from_loop(dispatcher: Dispatcher, count: int, topic: str) -> list[str]:
    """Publish `count` envelopes with `enqueue` on one event loop; their task ids. After the
    first, which looks the topic up in a thread, the loop's channel knows the topic, so the
    others are produced from the loop's own thread."""
    sent = [envelope() for _ in range(count)]

    async def publish() -> None:
        for number, one in enumerate(sent):
            await dispatcher.enqueue(one, secret=SECRET)
            if number == 0:
                channel = await dispatcher._channel()
                assert channel is not None and channel.io.admin.cached(topic) is not None

    asyncio.run(publish())
    return [one.task_id for one in sent]


def test_the_loop_publishes_the_message_send_task_writes(kafka: Service) -> None:
    topic = f"ar-dispatch-{uuid.uuid4().hex[:8]}"
    dispatcher = dispatcher_for(kafka.url, topic)
    by_celery = envelope()
    dispatcher.send(by_celery, secret=SECRET)  # Celery's send_task, in this thread
    ids = publish_from_loop(dispatcher, 3, topic)
    written = {one["headers"]["id"]: one for one in records(kafka.url, topic, 4)}
    assert set(written) == {by_celery.task_id, *ids}
    expected = shape(written[by_celery.task_id])
    for task_id in ids:
        assert shape(written[task_id]) == expected


def test_publish_signals_fire_and_their_headers_travel(kafka: Service) -> None:
    topic = f"ar-dispatch-{uuid.uuid4().hex[:8]}"
    dispatcher = dispatcher_for(kafka.url, topic)
    published: list[str] = []

    def add_header(headers: dict[str, Any], **_: Any) -> None:
        headers["x-trace"] = "trace-1"  # what a tracing library's receiver does

    def after(headers: dict[str, Any], routing_key: str, **_: Any) -> None:
        published.append(f"{headers['id']} {routing_key}")

    before_task_publish.connect(add_header, weak=False)
    after_task_publish.connect(after, weak=False)
    try:
        ids = publish_from_loop(dispatcher, 2, topic)
    finally:
        before_task_publish.disconnect(add_header)
        after_task_publish.disconnect(after)
    assert published == [f"{task_id} {topic}" for task_id in ids]
    assert [one["headers"]["x-trace"] for one in records(kafka.url, topic, 2)] == \
        ["trace-1", "trace-1"]


def test_no_broker_is_a_quick_enqueue_error() -> None:
    dispatcher = dispatcher_for(f"127.0.0.1:{free_port()}", "ar-dispatch-nobroker",
                                BS_KAFKA_PUBLISH_TIMEOUT_SEC="2")
    started = time.monotonic()
    with pytest.raises(EnqueueError, match="unavailable"):
        asyncio.run(dispatcher.enqueue(envelope(), secret=SECRET))
    assert time.monotonic() - started < 30  # an answer, not a hang
