"""`TaskStatusConsumer` on channels' WebsocketCommunicator and a real InMemoryChannelLayer."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import jsonschema_rs
import jwt
import pytest
from channels.layers import channel_layers
from django.conf import settings
from django.test import override_settings

from async_request.auth import Owner, channel_owner
from async_request.consumers import MAX_FRAME_BYTES, TaskStatusConsumer
from async_request.notifications import client_payload, group_for, layer_message
from async_request.settings import get_settings, reset_settings
from tests.unit._websocket import WebSocket

# channels closes stale database connections around each handler: give it a test database.
pytestmark = [pytest.mark.anyio, pytest.mark.django_db(transaction=True)]
MEMORY_LAYER = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
CHANNEL = "abcdefghij_KLMNOP-12345"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def memory_layer() -> Any:
    # The store on a closed port: a status query then meets "Redis is down", for real.
    with override_settings(CHANNEL_LAYERS=MEMORY_LAYER,
                           ASYNC_REQUEST_REDIS_URL="redis://127.0.0.1:1/0"):
        channel_layers.backends.clear()
        reset_settings()
        yield channel_layers["default"]
    channel_layers.backends.clear()
    reset_settings()


FRAMES = json.loads((Path(__file__).resolve().parents[2] / "docs" /
                     "websocket-frames.schema.json").read_text())


def frame_validator(definition: str) -> Any:
    """A validator of one `$defs` entry of docs/websocket-frames.schema.json."""
    return jsonschema_rs.Draft202012Validator({**FRAMES, "oneOf": [
        {"$ref": f"#/$defs/{definition}"}]})


SERVER_FRAME, CLIENT_FRAME, NOTIFICATION = (frame_validator(name) for name in
                                            ("server", "client", "notification"))


def check_server_frame(frame: Any) -> None:
    """Every frame the consumer sends matches the documented schema (inner JSON included)."""
    SERVER_FRAME.validate(frame)
    if frame["type"] == "data":
        NOTIFICATION.validate(json.loads(frame["data"]))


@pytest.fixture(autouse=True)
def frames_match_the_schema(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Validate each frame any test here receives against docs/websocket-frames.schema.json."""
    received: list[Any] = []
    original = WebSocket.receive_json_from

    async def receive_json_from(self: WebSocket, timeout: float = 1) -> Any:
        frame = await original(self, timeout)
        check_server_frame(frame)
        received.append(frame)
        return frame

    monkeypatch.setattr(WebSocket, "receive_json_from", receive_json_from)
    return received


@pytest.mark.parametrize("state", ["pending", "running", "completed", "failed", "cancelled"])
def test_notification_frames_match_the_schema(state: str) -> None:
    check_server_frame(client_payload(str(uuid.uuid4()), state))
    check_server_frame({"type": "status", "task_id": "x", "state": state})
    with pytest.raises(jsonschema_rs.ValidationError):
        check_server_frame(client_payload("t", "exploded"))


@pytest.mark.parametrize(("frame", "valid"), [
    ({"type": "auth", "token": "a.b.c"}, True), ({"type": "auth", "channel": CHANNEL}, True),
    ({"type": "auth", "ticket": "t"}, True),
    ({"type": "ping"}, True), ({"action": "status", "task_id": "t"}, True),
    ({"type": "auth"}, False), ({"action": "status"}, False), ({"type": "hello"}, False),
])
def test_client_frames_are_described(frame: Any, valid: bool) -> None:
    assert CLIENT_FRAME.is_valid(frame) is valid


def token(sub: Any = "42", exp_in: int = 600) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + exp_in}, settings.SECRET_KEY,
                      algorithm="HS256")


async def connected(query: str) -> WebSocket:
    socket = WebSocket(TaskStatusConsumer.as_asgi(), f"/ws/?{query}")
    assert await socket.connect()
    return socket


async def test_user_subscribes_and_hears_its_group_only(memory_layer: Any) -> None:
    socket = await connected(f"token={token()}")
    assert await socket.receive_json_from() == {"type": "subscribed"}
    await memory_layer.group_send(group_for(Owner("user", "43")), layer_message("x", "completed"))
    await memory_layer.group_send(group_for(Owner("user", "42")),
                                  layer_message("t-1", "completed"))
    frame = await socket.receive_json_from()
    assert frame["type"] == "data"
    assert json.loads(frame["data"]) == {"task_id": "t-1", "status": "completed",
                                         "action": "async_request"}
    assert await socket.receive_nothing()
    await socket.disconnect()


async def test_anonymous_channel_subscribes(memory_layer: Any) -> None:
    socket = await connected(f"channel={CHANNEL}")
    assert await socket.receive_json_from() == {"type": "subscribed"}
    owner = channel_owner(CHANNEL, get_settings())
    await memory_layer.group_send(group_for(owner), layer_message("t-2", "failed"))
    assert json.loads((await socket.receive_json_from())["data"])["status"] == "failed"
    await socket.disconnect()


async def test_the_credential_can_come_in_the_first_message(memory_layer: Any) -> None:
    socket = await connected("")
    await socket.send_json_to({"type": "auth", "token": token()})
    assert await socket.receive_json_from() == {"type": "subscribed"}
    await memory_layer.group_send(group_for(Owner("user", "42")), layer_message("t", "failed"))
    assert json.loads((await socket.receive_json_from())["data"])["task_id"] == "t"
    await socket.disconnect()
    anonymous = await connected("")
    await anonymous.send_json_to({"type": "auth", "channel": CHANNEL})
    assert await anonymous.receive_json_from() == {"type": "subscribed"}
    await anonymous.disconnect()


@pytest.mark.parametrize("first", [{"type": "ping"}, {"type": "auth"},
                                   {"type": "auth", "token": "bad"},
                                   {"action": "status", "task_id": "x"}])
async def test_a_first_message_without_a_good_credential_closes_4401(first: Any) -> None:
    socket = await connected("")
    await socket.send_json_to(first)
    frame = await socket.receive_json_from()
    assert frame["type"] == "error" and frame["code"] == 4401
    assert await socket.receive_output() == {"type": "websocket.close", "code": 4401}


async def test_silence_after_connecting_closes_4401(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("async_request.consumers.AUTH_TIMEOUT_SEC", 0.1)
    socket = await connected("")
    frame = await socket.receive_json_from(timeout=2)
    assert frame["type"] == "error" and frame["code"] == 4401
    assert await socket.receive_output() == {"type": "websocket.close", "code": 4401}


async def test_binary_and_oversized_frames_never_raise() -> None:
    socket = await connected(f"token={token()}")
    await socket.receive_json_from()
    await socket.send_to(bytes_data=b"\x00\x01binary")
    frame = await socket.receive_json_from()
    assert frame["type"] == "error" and "binary" in frame["detail"]
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from() == {"type": "pong"}
    await socket.send_to(text_data="x" * (MAX_FRAME_BYTES + 1))
    assert await socket.receive_output() == {"type": "websocket.close", "code": 1009}


@pytest.mark.parametrize(("query", "code"), [
    ("token=not-a-jwt", 4401),
    (f"token={token(exp_in=-10)}", 4401),
    (f"token={token(sub=42)}", 4401),
    (f"token=bad&channel={CHANNEL}", 4401),  # a bad token never falls back to the channel
    ("channel=short", 4400),
    ("channel=aaaaaaaaaaaaaaaaaaaaaaaa", 4400),
])
async def test_refusals_send_an_error_frame_then_close_with_the_mapped_code(
        query: str, code: int) -> None:
    socket = await connected(query)
    frame = await socket.receive_json_from()
    assert frame["type"] == "error" and frame["code"] == code and frame["detail"]
    assert await socket.receive_output() == {"type": "websocket.close", "code": code}


async def test_anonymous_disabled_closes_4403() -> None:
    with override_settings(ASYNC_REQUEST_ALLOW_ANONYMOUS=False):
        reset_settings()
        socket = await connected(f"channel={CHANNEL}")
        assert (await socket.receive_json_from())["code"] == 4403
    reset_settings()


async def test_ping_malformed_frames_and_a_store_outage_keep_the_socket() -> None:
    socket = await connected(f"token={token()}")
    await socket.receive_json_from()
    await socket.send_to(text_data="{not json")
    await socket.send_json_to(["a", "list"])
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from() == {"type": "pong"}
    await socket.send_json_to({"action": "status", "task_id": "not-an-id"})
    assert await socket.receive_json_from() == {"type": "status", "task_id": "not-an-id",
                                                "state": "unknown"}
    await socket.send_json_to({"action": "status", "task_id": str(uuid.uuid4())})
    frame = await socket.receive_json_from(timeout=10)
    assert frame["type"] == "error" and frame["code"] == 503
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from() == {"type": "pong"}
    await socket.disconnect()


async def test_no_channel_layer_closes_1011_with_a_message() -> None:
    with override_settings(CHANNEL_LAYERS={}):
        channel_layers.backends.clear()
        socket = await connected(f"token={token()}")
        frame = await socket.receive_json_from()
        assert frame["type"] == "error" and frame["code"] == 1011
        assert "CHANNEL_LAYERS" in frame["detail"]
        assert await socket.receive_output() == {"type": "websocket.close", "code": 1011}
    channel_layers.backends.clear()


async def test_a_ticket_subscribes_in_the_url_or_the_first_message(memory_layer: Any) -> None:
    from async_request.tickets import issue

    ticket = issue(Owner("user", "42"), get_settings()).value
    socket = await connected(f"ticket={ticket}")
    assert await socket.receive_json_from() == {"type": "subscribed"}
    await memory_layer.group_send(group_for(Owner("user", "42")), layer_message("t", "failed"))
    assert json.loads((await socket.receive_json_from())["data"])["task_id"] == "t"
    await socket.disconnect()
    first = await connected("")
    await first.send_json_to({"type": "auth", "ticket": ticket})
    assert await first.receive_json_from() == {"type": "subscribed"}
    await first.disconnect()


@pytest.mark.parametrize("kind", ["expired", "forged", "a token"])
async def test_an_expired_forged_or_misused_ticket_closes_4401(kind: str) -> None:
    from async_request.tickets import issue

    settings_now = get_settings()
    value = {"expired": issue(Owner("user", "42"), settings_now, now=time.time() - 3600).value,
             "forged": "art1.gAAAAABforged",
             "a token": token()}[kind]  # a JWT is not a ticket
    socket = await connected(f"ticket={value}")
    frame = await socket.receive_json_from()
    assert frame["type"] == "error" and frame["code"] == 4401 and frame["detail"]
    assert await socket.receive_output() == {"type": "websocket.close", "code": 4401}


@pytest.mark.parametrize(("frame", "named"), [
    ({"action": "subscribe", "task_id": "t"}, {"action": "subscribe"}),
    ({"action": 7}, {"action": "7"}),
    ({"action": "resume"}, {"action": "resume"}),  # without "after"
    ({"action": "resume", "after": -1}, {"action": "resume"}),
    ({"action": "status"}, {"action": "status"}),  # without "task_id"
    ({"type": "hello"}, {}),
    ({"type": "auth", "token": "a.b.c"}, {}),  # already subscribed
])
async def test_an_unknown_or_incomplete_action_is_an_error_frame_and_the_socket_stays(
        frame: dict[str, Any], named: dict[str, str]) -> None:
    socket = await connected(f"token={token()}")
    await socket.receive_json_from()
    await socket.send_json_to(frame)
    error = await socket.receive_json_from()
    assert error["type"] == "error" and error["code"] == 400 and error["detail"]
    assert {k: error[k] for k in ("action",) if k in error} == named
    if named.get("action") == "subscribe":
        assert "'subscribe'" in error["detail"] and "resume, status" in error["detail"]
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from() == {"type": "pong"}
    await socket.disconnect()


async def test_an_oversized_frame_closes_1009_even_before_the_credential() -> None:
    socket = await connected("")
    await socket.send_to(text_data=json.dumps({"type": "auth", "token": "x" * MAX_FRAME_BYTES}))
    assert await socket.receive_output() == {"type": "websocket.close", "code": 1009}


@pytest.mark.parametrize("frame", [
    {"type": "gap", "after": 3, "last": 9, "dropped": 5}, {"type": "gap", "after": 3, "last": 1},
    {"type": "resumed", "last": 9, "count": 2},
    {"type": "data", "data": json.dumps({"task_id": "t", "status": "running", "seq": 9,
                                         "action": "async_request", "snapshot": True,
                                         "progress": {"current": 1}})},
    {"type": "error", "code": 400, "detail": "unknown action", "action": "x"},
])
def test_resume_frames_are_described(frame: dict[str, Any]) -> None:
    check_server_frame(frame)


@pytest.mark.parametrize("frame", [{"action": "resume", "after": 0}])
def test_a_resume_is_a_client_frame(frame: dict[str, Any]) -> None:
    assert CLIENT_FRAME.is_valid(frame)
