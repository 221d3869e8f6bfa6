"""`progress.py`: validation, percent, the throttle, and the lease thread that writes progress."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from typing import Any

import pytest
from starlette.requests import Request

from async_request.execution import _lease
from async_request.notifications import client_payload, layer_message
from async_request.progress import (
    MAX_MESSAGE_CHARS,
    Progress,
    ProgressReporter,
    report_progress,
    reporter_of,
    validated,
)
from async_request.records import Operation
from async_request.replay import Cancel
from async_request.results.status import progress_body, status_body
from async_request.types import INTERNAL_SCOPE_KEY


def replay_scope(reporter: ProgressReporter) -> dict[str, Any]:
    return {"type": "http", INTERNAL_SCOPE_KEY: {"task_id": "t", "attempt": 1,
                                                 "progress": reporter}}


@pytest.mark.parametrize(("current", "total", "message"), [
    (0, None, None), (3, 10, "step 3"), (2.5, 5.0, ""), (7, 7, "x" * MAX_MESSAGE_CHARS),
    (0, 0, None), (10**12, None, None)])
def test_valid_reports_pass_unchanged(current: Any, total: Any, message: Any) -> None:
    assert validated(current, total, message) == (current, total, message)


@pytest.mark.parametrize(("args", "names"), [
    ((-1,), "current must be a finite number >= 0, got -1"),
    ((math.nan,), "current must be a finite number >= 0, got nan"),
    ((math.inf,), "current must be a finite number >= 0, got inf"),
    (("3",), "current must be a number, got '3'"),
    ((True,), "current must be a number, got True"),
    ((1, -5), "total must be a finite number >= 0, got -5"),
    ((1, "10"), "total must be a number, got '10'"),
    ((11, 10), "current 11 exceeds total 10"),
    ((1, 10, 42), "message must be a str, got 42"),
    ((1, 10, "y" * (MAX_MESSAGE_CHARS + 1)), f"{MAX_MESSAGE_CHARS + 1} characters")])
def test_bad_reports_raise_naming_the_value(args: tuple[Any, ...], names: str) -> None:
    with pytest.raises(ValueError, match="progress ") as info:
        validated(*args)
    assert names in str(info.value)


def test_outside_a_replay_it_validates_and_does_nothing() -> None:
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": []})
    report_progress(request, 1, 2, "fine")  # no marker: a no-op
    report_progress({"type": "http"}, 1)
    report_progress(object(), 1)  # neither request nor scope
    with pytest.raises(ValueError, match="exceeds total"):
        report_progress(request, 3, 2)


def test_it_finds_the_reporter_in_a_request_a_django_request_and_a_scope() -> None:
    reporter = ProgressReporter(0.5, threading.Event())
    scope = replay_scope(reporter)

    class DjangoLikeRequest:  # Django's ASGIRequest keeps the scope as `.scope`
        def __init__(self) -> None:
            self.scope = scope

    for carrier in (scope, Request(scope), DjangoLikeRequest()):
        assert reporter_of(carrier) is reporter
    report_progress(Request(scope), 4, 8, "half")
    taken = reporter.take(time.monotonic())
    assert taken is not None and (taken.current, taken.total, taken.message) == (4, 8, "half")
    assert abs(taken.updated_at - time.time()) < 5


@pytest.mark.parametrize(("current", "total", "percent"), [
    (1, 3, 33.3), (2, 3, 66.7), (0, 10, 0.0), (10, 10, 100.0), (5, None, None), (0, 0, None)])
def test_percent(current: float, total: float | None, percent: float | None) -> None:
    assert Progress(current, total, None, 0.0).percent == percent


def test_stored_form_round_trips_and_the_body_shows_percent_and_rfc3339() -> None:
    progress = Progress(3, 4, "three of four", 1_796_000_000.25)
    assert Progress.from_json(progress.to_json()) == progress
    assert progress_body(progress) == {"current": 3, "total": 4, "percent": 75.0,
                                       "message": "three of four",
                                       "updated_at": "2026-11-30T00:53:20.250Z"}
    assert progress_body(None) is None
    running = Operation("t", "user:1", "GET", "/x/", "running", 1.0, progress=progress)
    assert status_body(running)["progress"]["percent"] == 75.0
    assert status_body(Operation("t", "user:1", "GET", "/x/", "pending", 1.0))["progress"] is None


def test_frames_without_progress_keep_their_bytes_and_with_it_carry_it() -> None:
    assert client_payload("t-1", "completed") == {
        "type": "data",
        "data": '{"task_id": "t-1", "status": "completed", "action": "async_request"}'}
    assert layer_message("t-1", "completed") == {"type": "async_request.task",
                                                 "task_id": "t-1", "status": "completed"}
    body = {"current": 1, "total": 2, "percent": 50.0, "message": None, "updated_at": "z"}
    assert json.loads(client_payload("t-1", "running", body)["data"]) == {
        "task_id": "t-1", "status": "running", "action": "async_request", "progress": body}
    assert layer_message("t-1", "running", body)["progress"] == body


def test_the_throttle_writes_the_first_at_once_then_the_latest_once_per_interval() -> None:
    wake = threading.Event()
    reporter = ProgressReporter(10.0, wake)
    assert reporter.due(0.0) is None and reporter.take(0.0) is None
    reporter.report(1, 10, None)
    assert wake.is_set() and reporter.due(100.0) == 0  # the first report is due at once
    first = reporter.take(100.0)
    assert first is not None and (first.current, first.total, first.message) == (1, 10, None)
    wake.clear()
    for step in range(2, 6):
        reporter.report(step, 10, f"step {step}")
    assert wake.is_set()  # woken once, by the first report after the write
    wake.clear()
    reporter.report(6, 10, None)
    assert not wake.is_set()  # already waiting to be written: no second wake
    assert reporter.due(104.0) == pytest.approx(6.0)  # not before the interval ends
    assert reporter.take(110.0).current == 6  # type: ignore[union-attr]  # the latest wins
    assert reporter.due(110.0) is None  # nothing new


def test_close_hands_back_what_was_not_written_and_ignores_later_reports() -> None:
    reporter = ProgressReporter(10.0, threading.Event())
    reporter.report(1, None, None)
    reporter.take(0.0)
    assert ProgressReporter(1, threading.Event()).close() is None
    reporter.report(2, None, None)
    assert reporter.close() is not None and reporter.close() is None
    reporter.report(3, None, None)
    assert reporter.due(100.0) is None and reporter.take(100.0) is None


class FakeStore:
    """The Redis edge of `_lease`: counts renewals, never asks to cancel."""

    lease_sec = 0.3
    renewals = 0

    def renew(self, task_id: str, worker: str) -> bool:
        self.renewals += 1
        return False


def test_the_lease_thread_writes_throttled_and_the_last_value_before_the_outcome() -> None:
    reporter = ProgressReporter(0.05, threading.Event())
    writes: list[tuple[float, float, bool]] = []
    store = FakeStore()
    cancel = Cancel(asyncio.new_event_loop(), 1.0)
    calls = 0
    with _lease(store, "t", "w", cancel, reporter,  # type: ignore[arg-type]
                lambda p, tell: writes.append((time.monotonic(), p.current, tell))):
        started = time.monotonic()
        while time.monotonic() - started < 0.5:  # a report every ~0.1 ms
            calls += 1
            reporter.report(calls, None, None)
            time.sleep(0.0001)
        reporter.report(calls + 1, None, "last")
    told = [w for w in writes if w[2]]
    assert 2 <= len(told) <= 0.5 / 0.05 + 2, writes
    # Takes are >= one interval apart; the writes after them may lag a little under load.
    assert all(b[0] - a[0] >= 0.05 * 0.5 for a, b in zip(told, told[1:], strict=False))
    assert writes[-1][1:] == (calls + 1, False)  # stored at the end, not sent
    assert store.renewals >= 1  # the lease was still renewed


def test_a_quiet_route_gets_its_last_value_written_within_the_interval() -> None:
    reporter = ProgressReporter(0.1, threading.Event())
    writes: list[float] = []
    cancel = Cancel(asyncio.new_event_loop(), 1.0)
    with _lease(FakeStore(), "t", "w", cancel, reporter,  # type: ignore[arg-type]
                lambda p, tell: writes.append(p.current)):
        reporter.report(1, 3, None)
        time.sleep(0.02)
        reporter.report(2, 3, None)  # inside the interval: held back ...
        deadline = time.monotonic() + 2  # ... and written when it ends, the route quiet
        while len(writes) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert writes == [1, 2]
    assert writes == [1, 2]  # nothing left for the end


def test_a_django_asgi_request_carries_the_reporter() -> None:
    import io

    from django.core.handlers.asgi import ASGIRequest

    reporter = ProgressReporter(0.5, threading.Event())
    scope = {**replay_scope(reporter), "method": "GET", "path": "/django/x/", "headers": [],
             "query_string": b""}
    report_progress(ASGIRequest(scope, io.BytesIO()), 1, message="from a view")
    taken = reporter.take(time.monotonic())
    assert taken is not None and taken.message == "from a view" and taken.percent is None
