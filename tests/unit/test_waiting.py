"""`Prefer: wait=N`: which waits are honoured, and what an ended operation answers."""

from __future__ import annotations

import base64
import json

import pytest

from async_request.records import Operation
from async_request.waiting import applied_value, outcome_answer, wait_seconds


@pytest.mark.parametrize(("value", "cap", "expected"), [
    ("5", 30, 5), ("99", 30, 30), ("0", 30, None), ("5", 0, None), ("abc", 30, None),
    ("-1", 30, None), ("1.5", 30, None), ("", 30, None), ("\u0663", 30, None), (None, 30, None),
])
def test_wait_seconds_ignores_malformed_and_caps(value: str | None, cap: int,
                                                 expected: int | None) -> None:
    prefs = {} if value is None else {"wait": value}
    assert wait_seconds(prefs, cap) == expected


def test_applied_value_names_respond_async_only_on_a_202() -> None:
    prefs = {"respond-async": "", "wait": "9"}
    assert applied_value(prefs, 5, deferred=True) == b"respond-async, wait=5"
    assert applied_value(prefs, 5, deferred=False) == b"wait=5"
    assert applied_value({"wait": "5"}, 5, deferred=True) == b"wait=5"


def _operation(state: str, **extra: object) -> Operation:
    return Operation(task_id="t-1", owner="user:1", method="POST", endpoint="/x/", state=state,
                     created_at=1.0, finished_at=2.0, **extra)  # type: ignore[arg-type]


def test_a_completed_operation_answers_the_route_s_own_response() -> None:
    record = {"task_id": "t-1", "status": 201, "endpoint": "/x/",
              "headers": [["content-type", "text/plain"], ["x-route", "yes"],
                          ["transfer-encoding", "chunked"],
                          ["access-control-expose-headers", "X-Route"]],
              "body": base64.b64encode(b"\x00made").decode()}
    status, headers, body = outcome_answer(_operation("completed", result=record), b"wait=5",
                                           "/r/t-1/")
    assert (status, body) == (201, b"\x00made")
    assert (b"x-route", b"yes") in headers and (b"preference-applied", b"wait=5") in headers
    assert (b"x-async-request-id", b"t-1") in headers
    assert all(name != b"transfer-encoding" for name, _ in headers)
    exposed = [v for n, v in headers if n == b"access-control-expose-headers"]
    assert exposed == [b"X-Route, Preference-Applied, X-Async-Request-Id"]


@pytest.mark.parametrize("state", ["failed", "cancelled"])
def test_a_failed_or_cancelled_operation_answers_its_status_body(state: str) -> None:
    status, headers, body = outcome_answer(_operation(state, error="boom"), b"wait=5", "/r/t-1/")
    document = json.loads(body)
    assert status == 200 and document["state"] == state and document["error"] == "boom"
    assert document["status"] is None
    assert (b"content-location", b"/r/t-1/") in headers
    assert (b"content-type", b"application/json") in headers
