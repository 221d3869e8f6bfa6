"""Who hears what, on every push transport: WebSocket, SSE, long-poll, webhook × the owner,
another user, an anonymous channel, expired credentials (issue 11, "Bad input").

The owner hears its events; another user and an anonymous channel never hear the owner's (on
each transport, a client that is not the owner runs an operation of its own after the
owner's has ended and reads everything it is sent until its own operation's end: no frame,
event, status or callback names the owner's operation); expired credentials are refused
(WebSocket: an error frame then close 4401; SSE and long-poll: 401 problem+json; an accept
with a callback: 401 and nothing queued).

A stack of its own (Redis database 15): the webhook receiver's host must be allowed.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import pytest
from websockets.sync.client import connect

from async_request.auth import Owner
from async_request.settings import Settings
from async_request.tickets import issue
from tests.integration.stack import IntegrationStack, auth, module_stack
from tests.integration.test_events_live import frames_until, sse_events, ticket
from tests.integration.test_webhooks_live import Receiver, signature_ok, wait_calls
from tools.services import Service

pytestmark = [pytest.mark.integration, pytest.mark.long]
RESULTS = "/api/v1/async_background_response/"
SECRET = "whsec_" + base64.b64encode(b"push-matrix-webhook-key-0123456").decode()
TRANSPORTS = ("ws", "sse", "longpoll", "webhook")
CREDENTIALS = ("owner", "other", "anonymous", "expired")
TERMINAL = ("completed", "failed", "cancelled")


@dataclass
class World:
    """The module's stack, its webhook receiver, two users and an anonymous channel."""

    stack: IntegrationStack
    receiver: Receiver
    owner: str  # a JWT
    other: str
    channel: str

    def callback(self, path: str) -> dict[str, str]:
        return {"x-async-request-callback": f"http://127.0.0.1:{self.receiver.port}{path}"}

    def headers(self, who: str, **extra: str) -> dict[str, str]:
        """The credential headers of `who` (owner, other, anonymous)."""
        if who == "anonymous":
            return {"x-async-request": self.channel, **extra}
        return auth(getattr(self, who), **extra)

    def defer(self, http: httpx.Client, who: str, **extra: str) -> str:
        """Send an operation as `who`; its id."""
        marker = {} if who == "anonymous" else {"x-async-request": "true"}
        path = "/api/v1/health/" if who == "anonymous" else "/api/v1/orders/"
        accepted = http.get(path, headers=self.headers(who, **marker, **extra))
        assert accepted.status_code == 202, accepted.text
        return str(accepted.json()["meta"]["async_request_id"])

    def ended(self, http: httpx.Client, who: str, task_id: str) -> dict[str, Any]:
        """The operation's status body once it ended (a long-poll loop)."""
        deadline = time.monotonic() + 60
        while True:
            answer = http.get(f"{RESULTS}{task_id}/?wait=10", headers=self.headers(who))
            assert answer.status_code in (200, 202), answer.text
            if answer.status_code == 200:
                return dict(answer.json())
            assert time.monotonic() < deadline, f"{task_id} did not end"

    def expired_token(self) -> str:
        sub = jwt.decode(self.owner, options={"verify_signature": False})["sub"]
        return jwt.encode({"sub": sub, "exp": int(time.time()) - 60},
                          self.stack.env["DJANGO_SECRET_KEY"], algorithm="HS256")

    def expired_ticket(self) -> str:
        sub = jwt.decode(self.owner, options={"verify_signature": False})["sub"]
        settings = Settings(secret_key=self.stack.env["DJANGO_SECRET_KEY"])
        return issue(Owner("user", str(sub)), settings, now=time.time() - 3600).value


@pytest.fixture(scope="module")
def world(kafka: Service, redis_url: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    receiver = Receiver()
    try:
        with module_stack(kafka.url, redis_url, tmp_path_factory.mktemp("matrix"), 15,
                          {"BS_ASYNC_REQUEST_CALLBACK_HOSTS": f"127.0.0.1:{receiver.port}",
                           "BS_ASYNC_REQUEST_WEBHOOK_SECRET": SECRET}) as stack:
            yield World(stack, receiver, stack.create_user("olga_matrix"),
                        stack.create_user("oscar_matrix"), "matrix_" + uuid.uuid4().hex)
    finally:
        receiver.server.shutdown()


@pytest.fixture
def http(world: World) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=world.stack.base_url, timeout=30) as client:
        yield client


def ws_query(world: World, http: httpx.Client, who: str) -> str:
    if who == "anonymous":
        return f"channel={world.channel}"
    return f"ticket={quote(ticket(http, getattr(world, who)))}"


def data_until_end(frames: Iterator[dict[str, Any]], task_id: str) -> list[dict[str, Any]]:
    """The events of data frames up to `task_id`'s terminal one."""
    seen = []
    for data in frames:
        seen.append(data)
        if data["task_id"] == task_id and data["status"] in TERMINAL:
            return seen
    raise AssertionError(f"the stream ended before {task_id}'s end")


# -- WebSocket -------------------------------------------------------------------------------

def ws_case(world: World, http: httpx.Client, who: str) -> None:
    if who == "expired":
        for query in (f"token={world.expired_token()}", f"ticket={world.expired_ticket()}"):
            with connect(world.stack.ws_url() + "?" + query, open_timeout=10) as ws:
                frame = json.loads(ws.recv(timeout=10))
                assert frame["type"] == "error" and frame["code"] == 4401
                assert "expired" in frame["detail"], frame
                with pytest.raises(Exception):  # noqa: B017, PT011 - the server closes it
                    ws.recv(timeout=10)
                assert ws.close_code == 4401
        return
    url = world.stack.ws_url() + "?" + ws_query(world, http, who)
    with connect(url, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10)) == {"type": "subscribed"}

        def data() -> Iterator[dict[str, Any]]:
            while True:
                frame = json.loads(ws.recv(timeout=60))
                if frame["type"] == "data":
                    yield json.loads(frame["data"])

        owners = world.defer(http, "owner")
        if who == "owner":
            seen = data_until_end(data(), owners)
            assert [d["status"] for d in seen if d["task_id"] == owners][-1] == "completed"
            return
        world.ended(http, "owner", owners)
        own = world.defer(http, who)
        seen = data_until_end(data(), own)
        assert {d["task_id"] for d in seen} == {own}
        # Nor in the log a resume reads.
        ws.send(json.dumps({"action": "resume", "after": 0}))
        frames = frames_until(ws, lambda f: f.get("type") == "resumed")
        assert owners not in json.dumps(frames) and frames[-1]["last"] >= 1


# -- Server-Sent Events ----------------------------------------------------------------------

def sse_case(world: World, http: httpx.Client, who: str) -> None:
    events = f"{RESULTS}events/"
    if who == "expired":
        for url, headers in ((f"{events}?ticket={quote(world.expired_ticket())}", {}),
                             (events, auth(world.expired_token()))):
            refused = http.get(url, headers=headers)
            assert refused.status_code == 401, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
            assert "expired" in refused.json()["detail"]
        return
    # The owner with a ticket (an EventSource), another user with its Bearer header (a
    # server client), the anonymous channel with ?channel= and with its header.
    ways = {"owner": [(f"{events}?ticket={quote(ticket(http, world.owner))}", {})],
            "other": [(events, auth(world.other))],
            "anonymous": [(f"{events}?channel={world.channel}", {}),
                          (events, {"x-async-request": world.channel})]}[who]
    for url, headers in ways:
        with http.stream("GET", url, headers=headers) as stream:
            assert stream.status_code == 200
            data = (json.loads(event["data"]) for event in sse_events(stream.iter_lines())
                    if "event" not in event)
            owners = world.defer(http, "owner")
            if who == "owner":
                assert data_until_end(data, owners)[-1]["status"] == "completed"
                continue
            world.ended(http, "owner", owners)
            own = world.defer(http, who)
            assert {d["task_id"] for d in data_until_end(data, own)} == {own}
        if who != "owner":  # and a catch-up from the start of its log names none of them
            with http.stream("GET", url + ("&" if "?" in url else "?") + "after=0",
                             headers=headers) as stream:
                seen = data_until_end(
                    (json.loads(e["data"]) for e in sse_events(stream.iter_lines())), own)
                assert owners not in {d["task_id"] for d in seen}


# -- long-poll -------------------------------------------------------------------------------

def longpoll_case(world: World, http: httpx.Client, who: str) -> None:
    owners = world.defer(http, "owner")
    if who == "expired":
        refused = http.get(f"{RESULTS}{owners}/?wait=5", headers=auth(world.expired_token()))
        assert refused.status_code == 401, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert "expired" in refused.json()["detail"]
        return
    if who == "owner":
        assert world.ended(http, "owner", owners)["task_id"] == owners
        return
    started = time.monotonic()
    refused = http.get(f"{RESULTS}{owners}/?wait=20", headers=world.headers(who))
    assert refused.status_code == 404, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert time.monotonic() - started < 15  # refused at once, not after the wait
    own = world.defer(http, who)
    assert world.ended(http, who, own)["task_id"] == own


# -- webhooks --------------------------------------------------------------------------------

def webhook_case(world: World, http: httpx.Client, who: str) -> None:
    path = f"/{who}-{uuid.uuid4().hex[:8]}"
    if who == "expired":
        before = len(world.receiver.calls)
        refused = http.get("/api/v1/orders/", headers=auth(world.expired_token(), **{
            "x-async-request": "true", **world.callback(path)}))
        assert refused.status_code == 401, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        # Something the owner runs next is delivered; the refused accept never is.
        later = world.defer(http, "owner", **world.callback(path + "-ok"))
        wait_calls(world.receiver, path + "-ok", 1)
        assert world.receiver.of(path) == []
        assert all(json.loads(c["body"])["task_id"] == later
                   for c in world.receiver.calls[before:])
        return
    owners = world.defer(http, "owner", **world.callback(f"{path}-owner"))
    theirs = None if who == "owner" else world.defer(http, who, **world.callback(path))
    (call,) = wait_calls(world.receiver, f"{path}-owner", 1)
    body = json.loads(call["body"])
    assert signature_ok(call, SECRET) and body["task_id"] == owners
    assert body["response"] == world.ended(http, "owner", owners)["response"]
    if theirs is None:
        return
    calls = wait_calls(world.receiver, path, 1)
    assert {json.loads(c["body"])["task_id"] for c in calls} == {theirs}
    assert {c["headers"]["webhook-id"] for c in calls} == {f"msg_{theirs}"}
    # Each callback carries its own operation's body: never the owner's orders.
    assert json.loads(calls[0]["body"])["response"] == world.ended(http, who, theirs)["response"]
    assert owners not in b"".join(c["body"] for c in calls).decode()


CASES = {"ws": ws_case, "sse": sse_case, "longpoll": longpoll_case, "webhook": webhook_case}


@pytest.mark.parametrize("who", CREDENTIALS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_each_transport_gives_each_client_its_own_events_only(
        world: World, http: httpx.Client, transport: str, who: str) -> None:
    CASES[transport](world, http, who)
