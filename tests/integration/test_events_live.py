"""Events that survive a reconnect, on the real stack: SSE with Last-Event-ID, WebSocket resume.

The web app, broker, Redis and worker are the session's (tests/live_fixtures.py).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.integration.stack import IntegrationStack, auth
from tests.integration.test_e2e import accepted_id

pytestmark = pytest.mark.integration
BASE = "/api/v1/async_background_response/"


@pytest.fixture(scope="module")
def fay(stack: IntegrationStack) -> str:
    return stack.create_user("fay_events")


def ticket(http: httpx.Client, token: str) -> str:
    minted = http.post(f"{BASE}tickets/", headers=auth(token))
    assert minted.status_code == 201, minted.text
    return str(minted.json()["ticket"])


def defer(http: httpx.Client, token: str) -> str:
    return accepted_id(http.get("/api/v1/orders/",
                                headers=auth(token, **{"x-async-request": "true"})))


def sse_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Parse an event stream into {"id", "event", "data"} dicts (comments dropped)."""
    event: dict[str, Any] = {}
    for line in lines:
        if line == "":
            if "data" in event:
                yield event
            event = {}
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            event[name] = value.removeprefix(" ")


def until_terminal(events: Iterator[dict[str, Any]], *task_ids: str) -> list[dict[str, Any]]:
    """The events up to the last of `task_ids`' completions, in whatever order they end."""
    seen, waiting = [], set(task_ids)
    for event in events:
        data = json.loads(event["data"])
        seen.append(event)
        if data.get("status") == "completed":
            waiting.discard(data.get("task_id"))
            if not waiting:
                return seen
    raise AssertionError("the stream ended before the operation's terminal event")


def test_sse_streams_events_and_a_reconnect_gets_what_it_missed(
        stack: IntegrationStack, http: httpx.Client, fay: str) -> None:
    url = f"{BASE}events/?ticket={quote(ticket(http, fay))}"
    # Sent with X-Async-Request too: the stream is never itself deferred.
    with http.stream("GET", url, headers={"x-async-request": "true"}) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        first = defer(http, fay)
        seen = until_terminal(sse_events(lines), first)
    last_id = int(seen[-1]["id"])
    assert json.loads(seen[-1]["data"])["seq"] == last_id
    # While nobody listens: two more operations end.
    missed = [defer(http, fay), defer(http, fay)]
    deadline = time.monotonic() + 60
    for task_id in missed:
        while http.get(f"{BASE}{task_id}/", headers=auth(fay)).json()["state"] != "completed":
            assert time.monotonic() < deadline
            time.sleep(0.1)
    with http.stream("GET", url, headers={"last-event-id": str(last_id)}) as stream:
        events = sse_events(stream.iter_lines())
        got = until_terminal(events, *missed)  # they ran side by side: either may end last
    ids = [int(e["id"]) for e in got]
    assert ids == sorted(ids) and ids[0] > last_id and len(set(ids)) == len(ids)
    ended = {json.loads(e["data"])["task_id"] for e in got
             if json.loads(e["data"])["status"] == "completed"}
    assert set(missed) <= ended


@pytest.mark.parametrize("query", ["ticket=art1.forged", ""])
def test_sse_refuses_a_bad_or_missing_credential_with_401_problem(
        http: httpx.Client, query: str) -> None:
    refused = http.get(f"{BASE}events/?{query}")
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    assert "ticket" in refused.json()["detail"]


def frames_until(ws: ClientConnection, done: Any) -> list[dict[str, Any]]:
    frames = []
    while True:
        frame = json.loads(ws.recv(timeout=60))
        frames.append(frame)
        if done(frame):
            return frames


def is_completed(task_id: str) -> Any:
    def check(frame: dict[str, Any]) -> bool:
        if frame.get("type") != "data":
            return False
        data = json.loads(frame["data"])
        return bool(data["task_id"] == task_id and data["status"] == "completed")
    return check


def test_a_websocket_resumes_after_the_last_seq_it_has(
        stack: IntegrationStack, http: httpx.Client, fay: str) -> None:
    with connect(stack.ws_url() + "?ticket=" + quote(ticket(http, fay)), open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10)) == {"type": "subscribed"}
        first = defer(http, fay)
        frames = frames_until(ws, is_completed(first))
    last = json.loads(frames[-1]["data"])["seq"]
    missed = defer(http, fay)
    while http.get(f"{BASE}{missed}/", headers=auth(fay)).json()["state"] != "completed":
        time.sleep(0.1)
    url = stack.ws_url() + f"?ticket={quote(ticket(http, fay))}&after={last}"
    with connect(url, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10)) == {"type": "subscribed"}
        frames = frames_until(ws, lambda f: f.get("type") == "resumed")
        data = [json.loads(f["data"]) for f in frames if f["type"] == "data"]
        assert [d["seq"] for d in data] == sorted(d["seq"] for d in data)
        assert all(d["seq"] > last for d in data)
        assert any(d["task_id"] == missed and d["status"] == "completed" for d in data)
        assert frames[-1]["count"] == len(data)
        # Asked again once subscribed: nothing is sent twice.
        ws.send(json.dumps({"action": "resume", "after": last}))
        again = frames_until(ws, lambda f: f.get("type") == "resumed")
        assert again == [{"type": "resumed", "last": frames[-1]["last"], "count": 0}]


def test_a_long_poll_answers_when_the_state_changes_or_after_n_seconds(
        http: httpx.Client, fay: str) -> None:
    task_id = accepted_id(http.get("/api/v1/analytics/slow/?seconds=2",
                                   headers=auth(fay, **{"x-async-request": "true"})))
    states = []
    deadline = time.monotonic() + 60
    while not states or states[-1] not in ("completed", "failed"):
        assert time.monotonic() < deadline
        t0 = time.monotonic()
        answer = http.get(f"{BASE}{task_id}/?wait=20", headers=auth(fay))
        states.append(answer.json()["state"])
        assert time.monotonic() - t0 < 15  # answered at the change, not after 20 s
    assert states[-1] == "completed" and len(states) <= 4, states
    # Ended: at once. Nothing changes: after N seconds, with the same state.
    assert http.get(f"{BASE}{task_id}/?wait=20", headers=auth(fay)).status_code == 200
    slow = accepted_id(http.get("/api/v1/analytics/slow/?seconds=8",
                                headers=auth(fay, **{"x-async-request": "true"})))
    while http.get(f"{BASE}{slow}/", headers=auth(fay)).json()["state"] != "running":
        time.sleep(0.05)
    t0 = time.monotonic()
    still = http.get(f"{BASE}{slow}/?wait=1", headers=auth(fay))
    assert still.status_code == 202 and still.json()["state"] == "running"
    assert 0.9 <= time.monotonic() - t0 < 5
    bad = http.get(f"{BASE}{slow}/?wait=soon", headers=auth(fay))
    assert bad.status_code == 400 and "wait" in bad.json()["detail"]


def owner_events_key(token: str) -> str:
    """The Redis key of a user's event log (the JWT's `sub` names the owner)."""
    import jwt

    from async_request.records import events_key

    return events_key(f"user:{jwt.decode(token, options={'verify_signature': False})['sub']}")


def wait_state(http: httpx.Client, token: str, task_id: str, state: str) -> None:
    deadline = time.monotonic() + 60
    while http.get(f"{BASE}{task_id}/", headers=auth(token)).json()["state"] != state:
        assert time.monotonic() < deadline, f"{task_id} never {state}"
        time.sleep(0.05)


@pytest.fixture
def lost_log(stack: IntegrationStack, http: httpx.Client, redis_url: str,
             request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """A user whose log lost what followed `after`: `seen` ended before `after`, `ended`
    after it, `live` still runs. request.param: "expired" (the log is gone) or "trimmed"."""
    import redis

    token = stack.create_user(f"gus_gap_{uuid.uuid4().hex[:8]}")
    seen = defer(http, token)
    wait_state(http, token, seen, "completed")
    with connect(stack.ws_url() + "?ticket=" + quote(ticket(http, token)),
                 open_timeout=10) as ws:
        frames = frames_until(ws, lambda f: f.get("type") == "subscribed")
        ws.send(json.dumps({"action": "resume", "after": 0}))
        frames = frames_until(ws, lambda f: f.get("type") == "resumed")
    after = frames[-1]["last"]
    ended = defer(http, token)
    wait_state(http, token, ended, "completed")
    live = accepted_id(http.get("/api/v1/analytics/slow/?seconds=8",
                                headers=auth(token, **{"x-async-request": "true"})))
    wait_state(http, token, live, "running")
    client = redis.Redis.from_url(redis_url)
    try:
        if request.param == "expired":
            client.delete(owner_events_key(token))
        else:
            client.xtrim(owner_events_key(token), maxlen=1, approximate=False)
        yield {"token": token, "after": after, "seen": seen, "ended": ended, "live": live}
    finally:
        client.close()


@pytest.mark.parametrize("lost_log", ["expired", "trimmed"], indirect=True)
def test_a_websocket_resume_past_the_log_gets_a_gap_and_the_current_states(
        stack: IntegrationStack, http: httpx.Client, lost_log: dict[str, Any]) -> None:
    after = lost_log["after"]
    url = stack.ws_url() + f"?ticket={quote(ticket(http, lost_log['token']))}&after={after}"
    with connect(url, open_timeout=10) as ws:
        frames = frames_until(ws, lambda f: f.get("type") == "resumed")
        assert frames[0] == {"type": "subscribed"}
        gap = frames[1]
        assert gap["type"] == "gap" and gap["after"] == after and gap["last"] > after
        # All of them when the log expired; all but the newest one when it was trimmed to 1.
        assert gap["dropped"] in (gap["last"] - after, gap["last"] - after - 1)
        assert all(f["type"] == "data" for f in frames[2:-1])
        # Only this test's operations: in-process tests (tests/sample, the Django surfaces)
        # write records on the session's Redis for their own users, whose owner names
        # (user:<pk>) may be this user's too.
        mine = {lost_log["seen"], lost_log["ended"], lost_log["live"]}
        snapshots = [s for s in (json.loads(f["data"]) for f in frames[2:-1])
                     if s["task_id"] in mine]
        assert {(s["task_id"], s["status"]) for s in snapshots} == {
            (lost_log["ended"], "completed"), (lost_log["live"], "running")}
        assert all(s["snapshot"] is True and s["seq"] == gap["last"] for s in snapshots)
        assert frames[-1] == {"type": "resumed", "last": gap["last"], "count": len(frames) - 3}
        # Then the live stream: the running one's end comes with a seq above the gap's last.
        end = json.loads(frames_until(ws, is_completed(lost_log["live"]))[-1]["data"])
        assert end["seq"] > gap["last"] and "snapshot" not in end


@pytest.mark.parametrize("lost_log", ["expired"], indirect=True)
def test_an_event_stream_past_the_log_gets_a_gap_and_the_current_states(
        http: httpx.Client, lost_log: dict[str, Any]) -> None:
    url = f"{BASE}events/?ticket={quote(ticket(http, lost_log['token']))}"
    with http.stream("GET", url, headers={"last-event-id": str(lost_log["after"])}) as stream:
        events = sse_events(stream.iter_lines())
        gap = next(events)
        assert gap["event"] == "gap" and "id" not in gap
        body = json.loads(gap["data"])
        assert body["after"] == lost_log["after"] and body["dropped"] == body["last"] - \
            lost_log["after"]
        mine = {lost_log["ended"], lost_log["live"]}
        snapshots = []
        while len(snapshots) < 2:  # this test's two (see the WebSocket test on other owners)
            event = next(events)
            if json.loads(event["data"])["task_id"] in mine:
                snapshots.append(event)
        data = [json.loads(s["data"]) for s in snapshots]
        assert {(d["task_id"], d["status"]) for d in data} == {
            (lost_log["ended"], "completed"), (lost_log["live"], "running")}
        assert all(s["id"] == str(body["last"]) and d["snapshot"] for s, d in
                   zip(snapshots, data, strict=True))
        live = until_terminal(events, lost_log["live"])
        assert int(live[-1]["id"]) > body["last"]


@pytest.mark.parametrize("lost_log", ["trimmed"], indirect=True)
def test_a_seq_from_an_older_counter_gets_every_operation_the_log_or_index_knows(
        stack: IntegrationStack, http: httpx.Client, lost_log: dict[str, Any]) -> None:
    # A number above the counter: the client's counter expired and restarted since.
    url = stack.ws_url() + f"?ticket={quote(ticket(http, lost_log['token']))}&after=1000000"
    with connect(url, open_timeout=10) as ws:
        frames = frames_until(ws, lambda f: f.get("type") == "resumed")
        gap = frames[1]
        assert gap == {"type": "gap", "after": 1000000, "last": gap["last"]}  # dropped unknown
        snapshots = {json.loads(f["data"])["task_id"] for f in frames[2:-1]}
        # At least this test's three (see the WebSocket test above on other owners' records).
        assert snapshots >= {lost_log["seen"], lost_log["ended"], lost_log["live"]}
        # Live frames go on with today's numbers, far below the client's old one.
        end = json.loads(frames_until(ws, is_completed(lost_log["live"]))[-1]["data"])
        assert gap["last"] < end["seq"] < 1000000
