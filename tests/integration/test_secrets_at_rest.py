"""Nothing a request or its response carries is readable at rest: Kafka, Redis and the logs.

Requests carry a unique marker in each header, the query string and the body (a login's
password), an anonymous client's channel name is a marker too, and one response is an issued
access token. After they completed, every message of every topic of the broker and every key
of every database of the stack's Redis and every log of the stack (web app, workers: uvicorn's
access log, Celery's task lines) is read raw and searched for each marker, in plain text
and inside any base64 in them (decoded two levels deep, as Celery's events nest a message).
"""

from __future__ import annotations

import base64
import re
import secrets
import time

import httpx
import pytest
import redis
from confluent_kafka import Consumer, TopicPartition

from tests.integration.stack import IntegrationStack
from tools.services import Service

pytestmark = pytest.mark.integration
RESULTS = "/api/v1/async_background_response/{}/"


def marker(kind: str) -> str:
    return f"MARK{kind}{secrets.token_hex(8)}"


_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/_-]{12,}={0,2}")


def readable(dump: bytes, depth: int = 2) -> bytes:
    """The dump plus every base64 run in it decoded (and runs inside those, `depth` levels)."""
    views = [dump]
    layer = dump
    for _ in range(depth):
        decoded = []
        for run in _BASE64_RUN.findall(layer):
            for decode in (base64.b64decode, base64.urlsafe_b64decode):
                try:
                    decoded.append(decode(run + b"=" * (-len(run) % 4)))
                except ValueError:
                    continue
        layer = b"\n".join(decoded)
        views.append(layer)
    return b"\n".join(views)


def kafka_dump(bootstrap: str) -> bytes:
    """Every message (keys, values, headers) of every topic, from offset 0."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"scan-{time.time()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        metadata = consumer.list_topics(timeout=10)
        wanted: dict[tuple[str, int], int] = {}
        for topic in metadata.topics.values():
            for partition in topic.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic.topic, partition),
                                                           timeout=10)
                if high > low:
                    wanted[(topic.topic, partition)] = high
        consumer.assign([TopicPartition(t, p, 0) for t, p in wanted])
        chunks: list[bytes] = []
        deadline = time.monotonic() + 60
        while wanted and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            chunks += [message.key() or b"", message.value() or b""]
            chunks += [bytes(v or b"") for _, v in (message.headers() or [])]
            key = (message.topic(), message.partition())
            if key in wanted and message.offset() + 1 >= wanted[key]:
                del wanted[key]
        assert not wanted, f"could not read to the end of {sorted(wanted)}"
        return b"\n".join(chunks)
    finally:
        consumer.close()


def redis_dump(url: str) -> bytes:
    """Every key and value of every database of the Redis server behind `url`."""
    chunks: list[bytes] = []
    first = redis.Redis.from_url(url)
    databases = [int(name[2:]) for name in first.info("keyspace")]
    first.close()
    for db in databases:
        client = redis.Redis.from_url(url, db=db)
        for key in client.scan_iter(count=1000):
            chunks.append(key)
            kind = client.type(key).decode()
            if kind == "string":
                chunks.append(client.get(key) or b"")
            elif kind == "hash":
                chunks += [b"%s=%s" % item for item in client.hgetall(key).items()]
            elif kind == "list":
                chunks += client.lrange(key, 0, -1)
            elif kind == "set":
                chunks += list(client.smembers(key))
            elif kind == "zset":
                chunks += [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
            elif kind == "stream":
                chunks += [repr(entry).encode() for entry in client.xrange(key)]
        client.close()
    return b"\n".join(chunks)


def completed(http: httpx.Client, task_id: str, headers: dict[str, str]) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while True:
        response = http.get(RESULTS.format(task_id), headers=headers)
        if response.status_code == 200 or time.monotonic() > deadline:
            assert response.status_code == 200, response.text
            return response.json()  # type: ignore[no-any-return]
        time.sleep(0.2)


def test_no_header_query_body_channel_or_response_is_readable_at_rest(
        stack: IntegrationStack, kafka: Service, http: httpx.Client) -> None:
    password = marker("pw")
    username = f"scan_{secrets.token_hex(4)}"
    token = stack.create_user(username, password)
    markers = {name: marker(name) for name in ("auth", "csrf", "cookie", "apikey", "query",
                                                "body", "custom")}
    headers = {
        "Authorization": f"Bearer {token}", "X-Async-Request": "true",
        "X-Auth-Token": markers["auth"], "X-CSRFToken": markers["csrf"],
        "Cookie": f"sessionid={markers['cookie']}", "X-Api-Key": markers["apikey"],
        "X-Custom-Secret": markers["custom"], "Content-Type": "application/json",
    }
    echo = http.post(f"/django/echo/?access_token={markers['query']}", headers=headers,
                     content=f'{{"note": "{markers["body"]}"}}'.encode())
    assert echo.status_code == 202, echo.text
    channel = "scanchannel_" + secrets.token_urlsafe(16)
    login = http.post("/api/v1/auth/token/", headers={"X-Async-Request": channel},
                      json={"username": username, "password": password})
    assert login.status_code == 202, login.text
    completed(http, echo.json()["meta"]["async_request_id"], {"Authorization": f"Bearer {token}"})
    issued = completed(http, login.json()["meta"]["async_request_id"],
                       {"X-Async-Request": channel})
    assert issued["status"] == 200
    access_token = issued["response"]["access_token"]  # type: ignore[index]
    secrets_to_find = {**markers, "password": password, "channel": channel,
                       "issued token": access_token, "bearer": token}

    logs = b"\n".join(path.read_bytes() for path in stack.logs.glob("*.log"))
    at_rest = {"Kafka": readable(kafka_dump(kafka.url)),
               "Redis": readable(redis_dump(stack.redis_url)), "the logs": logs}
    found = [f"{what} in {where}" for where, dump in at_rest.items()
             for what, value in secrets_to_find.items() if value.encode() in dump]
    assert not found, f"readable at rest: {found}"
    assert b"replay_request" in at_rest["Kafka"]  # the scan did read the task topic
