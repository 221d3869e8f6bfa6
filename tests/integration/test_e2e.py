"""End to end on the real stack: header → 202 → Kafka → worker replay → Redis → WebSocket → result.

Every test talks to the real ASGI server (uvicorn), the real tansu broker, a real Celery worker
process, real Redis and a real WebSocket client. "The stored result equals the synchronous
response of the same request" is checked field by field.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.integration.stack import IntegrationStack, auth

pytestmark = pytest.mark.integration

RESULTS = "/api/v1/async_background_response/{}/"


@pytest.fixture(scope="module")
def alice(stack: IntegrationStack) -> str:
    return stack.create_user("alice_e2e")


@pytest.fixture(scope="module")
def bob(stack: IntegrationStack) -> str:
    return stack.create_user("bob_e2e")


def open_socket(stack: IntegrationStack, **query: str) -> ClientConnection:
    ws = connect(stack.ws_url(**query), open_timeout=10)
    first = json.loads(ws.recv(timeout=10))
    assert first == {"type": "subscribed"}, first
    return ws


def wait_notification(ws: ClientConnection, task_id: str, timeout: float = 60) -> dict[str, Any]:
    """The task's terminal frame (its pending and running frames come first)."""
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        assert frame["type"] == "data", frame
        data = json.loads(frame["data"])
        assert isinstance(data.get("seq"), int), data
        if data["task_id"] == task_id and data["status"] not in ("pending", "running"):
            return data


def accepted_id(response: httpx.Response) -> str:
    assert response.status_code == 202, response.text
    body = response.json()
    task_id = body["meta"]["async_request_id"]
    assert body == {"data": None, "meta": {"async_request_id": task_id}}
    assert uuid.UUID(task_id).version == 4
    return task_id


def result_of(http: httpx.Client, task_id: str, headers: dict[str, str],
              timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = http.get(RESULTS.format(task_id), headers=headers)
        if response.status_code != 202 or time.monotonic() > deadline:
            assert response.status_code == 200, response.text
            return response.json()  # type: ignore[no-any-return]
        time.sleep(0.2)


def test_fastapi_route_async_equals_sync(stack: IntegrationStack, http: httpx.Client,
                                         alice: str) -> None:
    http.post("/api/v1/orders/", json={"title": "book", "amount": "12.50"}, headers=auth(alice))
    sync = http.get("/api/v1/analytics/slow/?seconds=0.1", headers=auth(alice))
    assert sync.status_code == 200
    with open_socket(stack, token=alice) as ws:
        task_id = accepted_id(http.get("/api/v1/analytics/slow/?seconds=0.1",
                                       headers=auth(alice, **{"X-Async-Request": "true"})))
        note = wait_notification(ws, task_id)
    # The original's frame, plus the event's seq (events.py).
    assert note == {"task_id": task_id, "status": "completed", "action": "async_request",
                    "seq": note["seq"]}
    result = result_of(http, task_id, auth(alice))
    assert result["task_id"] == task_id
    assert result["status"] == sync.status_code
    assert result["endpoint"] == "/api/v1/analytics/slow/"
    assert result["response"] == sync.json()
    assert result["encoding"] == "json"
    assert ["content-type", "application/json"] in result["headers"]


def test_django_view_with_binary_body(stack: IntegrationStack, http: httpx.Client,
                                      alice: str) -> None:
    body = bytes(range(256)) * 40
    headers = {"content-type": "application/octet-stream"}
    sync = http.post("/django/echo/", content=body, headers=headers)
    assert sync.status_code == 200
    task_id = accepted_id(http.post("/django/echo/", content=body,
                                    headers=auth(alice, **headers, **{"X-Async-Request": "true"})))
    result = result_of(http, task_id, auth(alice))
    assert result["status"] == 200
    assert result["response"] == sync.json()
    assert result["response"]["sha256"] == hashlib.sha256(body).hexdigest()


def test_multipart_upload_is_byte_exact(http: httpx.Client, alice: str) -> None:
    payload = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 10
    files = {"file": ("pic.png", payload, "image/png")}
    sync = http.post("/api/v1/uploads/", files=files, headers=auth(alice))
    task_id = accepted_id(http.post("/api/v1/uploads/", files=files,
                                    headers=auth(alice, **{"X-Async-Request": "true"})))
    result = result_of(http, task_id, auth(alice))
    assert result["response"] == sync.json()
    assert result["response"]["sha256"] == hashlib.sha256(payload).hexdigest()


def test_binary_and_streamed_responses(http: httpx.Client, alice: str) -> None:
    for path in ("/api/v1/binary/?n=3000", "/api/v1/stream/?chunks=5"):
        sync = http.get(path, headers=auth(alice))
        task_id = accepted_id(http.get(path, headers=auth(alice, **{"X-Async-Request": "true"})))
        result = result_of(http, task_id, auth(alice))
        assert result["status"] == sync.status_code
        if result["encoding"] == "base64":
            assert base64.b64decode(result["response"]) == sync.content
        else:
            assert result["response"] == sync.text


def test_route_error_is_a_completed_task(http: httpx.Client, alice: str) -> None:
    sync = http.get("/api/v1/orders/999999/", headers=auth(alice))
    assert sync.status_code == 404
    task_id = accepted_id(http.get("/api/v1/orders/999999/",
                                   headers=auth(alice, **{"X-Async-Request": "true"})))
    result = result_of(http, task_id, auth(alice))
    assert result["state"] == "completed" and result["status"] == 404
    assert result["response"] == sync.json()


def test_anonymous_channel(stack: IntegrationStack, http: httpx.Client) -> None:
    channel = "anon_" + uuid.uuid4().hex
    with open_socket(stack, channel=channel) as ws:
        task_id = accepted_id(http.get("/api/v1/health/", headers={"X-Async-Request": channel}))
        assert wait_notification(ws, task_id)["status"] == "completed"
    result = result_of(http, task_id, {"X-Async-Request": channel})
    assert result["response"] == {"status": "ok"}
    other = http.get(RESULTS.format(task_id), headers={"X-Async-Request": "another_" + channel})
    assert other.status_code == 404


def test_owners_are_isolated(stack: IntegrationStack, http: httpx.Client, alice: str,
                             bob: str) -> None:
    with open_socket(stack, token=bob) as bob_ws, open_socket(stack, token=alice) as alice_ws:
        task_id = accepted_id(http.get("/api/v1/orders/",
                                       headers=auth(alice, **{"X-Async-Request": "true"})))
        wait_notification(alice_ws, task_id)
        with pytest.raises(TimeoutError):
            bob_ws.recv(timeout=1.5)
    assert http.get(RESULTS.format(task_id), headers=auth(bob)).status_code == 404
    assert http.get(RESULTS.format(task_id), headers=auth(alice)).status_code == 200


def test_results_endpoint_refusals(http: httpx.Client, alice: str) -> None:
    unknown = http.get(RESULTS.format(uuid.uuid4()), headers=auth(alice))
    malformed = http.get(RESULTS.format("not-a-uuid"), headers=auth(alice))
    anonymous = http.get(RESULTS.format(uuid.uuid4()))
    assert unknown.status_code == 404
    assert malformed.status_code == 400 and "task_id" in malformed.json()["detail"]
    assert unknown.headers["content-type"] == malformed.headers["content-type"] == \
        "application/problem+json"
    assert anonymous.status_code == 401


def test_pending_then_completed(http: httpx.Client, alice: str) -> None:
    task_id = accepted_id(http.post("/api/v1/reports/", json={"kind": "sales", "seconds": 2},
                                    headers=auth(alice, **{"X-Async-Request": "true"})))
    early = http.get(RESULTS.format(task_id), headers=auth(alice))
    assert early.status_code == 202
    assert early.json()["state"] in ("pending", "running")
    result = result_of(http, task_id, auth(alice))
    assert result["status"] == 201 and result["response"]["status"] == "ready"


def test_require_async_fastapi_and_django(http: httpx.Client, alice: str) -> None:
    forged = {"X-Async-Request-Internal": "true"}
    direct = http.post("/api/v1/reports/export/", headers=auth(alice, **forged))
    assert direct.status_code == 409
    assert direct.headers["content-type"] == "application/problem+json"
    assert http.get("/django/guarded/", headers=auth(alice, **forged)).status_code == 409
    task_id = accepted_id(http.post("/api/v1/reports/export/",
                                    headers=auth(alice, **{"X-Async-Request": "true"})))
    result = result_of(http, task_id, auth(alice))
    assert result["status"] == 200 and result["encoding"] == "text"
    task_id = accepted_id(http.get("/django/guarded/",
                                   headers=auth(alice, **{"X-Async-Request": "true"})))
    assert result_of(http, task_id, auth(alice))["status"] == 200


def test_a_route_that_needs_the_lifespan_works_deferred_too(http: httpx.Client,
                                                            alice: str) -> None:
    assert http.get("/api/v1/lifespan/").json() == {"lifespan": True}
    task_id = accepted_id(http.get("/api/v1/lifespan/", headers={"X-Async-Request": "true",
                                                                  **auth(alice)}))
    result = result_of(http, task_id, auth(alice))
    assert result["status"] == 200 and result["response"] == {"lifespan": True}


def test_websocket_refuses_bad_credentials(stack: IntegrationStack) -> None:
    for query, code in (({"token": "not.a.jwt"}, 4401), ({"channel": "short"}, 4400),
                        ({"channel": "a" * 22}, 4400), ({}, 4401)):
        with connect(stack.ws_url(**query), open_timeout=10) as ws:
            if not query:  # no credential in the URL: the first message must bring one
                ws.send(json.dumps({"type": "ping"}))
            frame = json.loads(ws.recv(timeout=10))
            assert frame["type"] == "error" and frame["code"] == code
            with pytest.raises(Exception):  # noqa: B017 - the server closes with `code`
                ws.recv(timeout=10)
            assert ws.close_code == code


def test_body_above_the_kafka_limit_travels_beside_the_message(http: httpx.Client,
                                                              alice: str) -> None:
    body = bytes(range(256)) * 8192  # 2 MiB: above Kafka's default 1 MB message limit
    headers = {"content-type": "application/octet-stream"}
    task_id = accepted_id(http.post("/django/echo/", content=body,
                                    headers=auth(alice, **headers, **{"X-Async-Request": "true"})))
    result = result_of(http, task_id, auth(alice))
    assert result["response"]["length"] == len(body)
    assert result["response"]["sha256"] == hashlib.sha256(body).hexdigest()


def test_a_body_that_seals_above_the_message_limit_travels_aside(http: httpx.Client,
                                                                 alice: str) -> None:
    # 450 KiB: under ASYNC_REQUEST_INLINE_BODY_BYTES (512 KiB), but sealed and base64-encoded
    # by kombu about 1.07 MB, above the broker's 1 MB: it travels in Redis, not as a 503.
    body = bytes(range(256)) * 1800
    headers = {"content-type": "application/octet-stream"}
    task_id = accepted_id(http.post("/django/echo/", content=body,
                                    headers=auth(alice, **headers, **{"X-Async-Request": "true"})))
    result = result_of(http, task_id, auth(alice))
    assert result["response"]["sha256"] == hashlib.sha256(body).hexdigest()


def test_a_megabyte_of_headers_is_431_and_nothing_is_kept(stack: IntegrationStack,
                                                          http: httpx.Client) -> None:
    """A request the broker can never take is a 431 naming the limit, not a 503 to retry."""
    token = stack.create_user("big_headers_e2e")
    response = http.get("/api/v1/orders/", headers=auth(
        token, **{"X-Async-Request": "true", "x-padding": "h" * 1_000_000}))
    assert response.status_code == 431, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "retry-after" not in response.headers
    problem = response.json()
    assert problem["setting"] == "ASYNC_REQUEST_MAX_HEADER_BYTES"
    assert problem["size"] > 1_000_000 > problem["limit"]
    listed = http.get(RESULTS.removesuffix("{}/"), headers=auth(token))
    assert listed.status_code == 200 and listed.json()["data"] == []  # nothing recorded


def decoded_body(value: bytes) -> bytes:
    """The task body of a kombu message, base64-decoded when kombu encoded it."""
    try:
        message = json.loads(value)
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            return base64.b64decode(body)
        return body.encode() if isinstance(body, str) else b""
    except (ValueError, KeyError, TypeError, AttributeError):
        return b""


def test_credentials_never_sit_in_plain_text_in_kafka(stack: IntegrationStack,
                                                      http: httpx.Client) -> None:
    from confluent_kafka import Consumer, TopicPartition

    token = stack.create_user("carol_e2e")
    cookie = "sessionid=" + uuid.uuid4().hex
    task_id = accepted_id(http.post("/django/echo/", content=b"x",
                                    headers=auth(token, cookie=cookie,
                                                 **{"X-Async-Request": "true"})))
    result_of(http, task_id, auth(token))
    topic = stack.env["BS_KAFKA_TOPIC_ASYNC_BG"]
    consumer = Consumer({"bootstrap.servers": stack.kafka, "group.id": "inspector",
                         "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = [TopicPartition(topic, p, 0) for p in metadata.topics[topic].partitions]
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1]
                for tp in partitions}
        consumer.assign(partitions)
        seen: list[bytes] = []
        read = 0
        deadline = time.monotonic() + 60
        while sum(ends.values()) > read and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                read += 1
                seen.append(message.value() or b"")
                seen.extend(v for _, v in (message.headers() or []) if isinstance(v, bytes))
                seen.append(decoded_body(message.value() or b""))
    finally:
        consumer.close()
    wire = b"".join(seen)
    assert b'"sealed"' in wire and task_id.encode() in wire  # we read the envelope
    assert token.encode() not in wire
    assert cookie.encode() not in wire


def test_websocket_refuses_an_expired_token(stack: IntegrationStack) -> None:
    import jwt

    expired = jwt.encode({"sub": "1", "exp": int(time.time()) - 60},
                         stack.env["DJANGO_SECRET_KEY"], algorithm="HS256")
    with connect(stack.ws_url(token=expired), open_timeout=10) as ws:
        frame = json.loads(ws.recv(timeout=10))
        assert frame == {"type": "error", "code": 4401, "detail": "the token has expired"}
