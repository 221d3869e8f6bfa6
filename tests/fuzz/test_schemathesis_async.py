"""Schemathesis WITH `X-Async-Request: true` against the live stack: no 5xx, no worker crash.

Every generated request (positive and negative data) goes to uvicorn. The
middleware must answer 202 with exactly `{"data": null, "meta": {"async_request_id": <uuid4>}}`,
or a problem+json 4xx (405 for methods it cannot defer); never 5xx. The results endpoint is
never deferred (it answers 404 for ids that are not the caller's). Then the accepted tasks must
all finish as `completed` (a route's 4xx is a completed task; `failed` means the worker broke),
with a replayed status below 500, and the worker must still be alive.

The `stack` fixture is the shared one of tests/live_fixtures.py (via tests/conftest.py).
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.fuzz._openapi import PROBLEM_CONTENT_TYPE, RESULTS_OPERATION, bound_case, load_schema
from tests.integration.stack import IntegrationStack

pytestmark = pytest.mark.integration

RESULTS = "/api/v1/async_background_response/"
CHANNELS_OPERATION = f"POST {RESULTS}channels/"
POLL_BUDGET_SEC = 60.0
SAMPLE_SIZE = 60

# Each accepted request is a real task, and the stack replays about 5-6 a second: ~10 examples
# per operation (positive and negative) keep the queue at ~100 tasks. The coverage phase
# (~30 more cases per operation) runs in-process, in test_schemathesis_inprocess.py.
schema = load_schema(max_examples=10, coverage=False)


@dataclass
class Live:
    """The stack, one fuzzing user, a keep-alive HTTP session, and what was accepted."""

    stack: IntegrationStack
    token: str
    session: requests.Session
    worker_pid: int
    accepted: list[tuple[str, str]] = field(default_factory=list)  # (operation, task id)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="module")
def live(stack: IntegrationStack) -> Any:
    assert stack.worker is not None and stack.worker.process is not None
    token = stack.create_user(f"fuzz_{uuid.uuid4().hex[:8]}")
    with requests.Session() as session:
        yield Live(stack, token, session, stack.worker.process.pid)


def _header(response: Any, name: str) -> str:
    """One header of a requests or schemathesis response (the latter keeps lists of values)."""
    value = response.headers.get(name) or response.headers.get(name.title()) or ""
    return str(value[0] if isinstance(value, list) else value)


def _assert_problem(response: Any, *statuses: int) -> dict[str, Any]:
    assert response.status_code in statuses, (response.status_code, response.text[:500])
    assert _header(response, "content-type").startswith(PROBLEM_CONTENT_TYPE), response.headers
    body = response.json()
    assert body["status"] == response.status_code and body["title"], body
    return dict(body)


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_async_header_answers_202_or_problem(case: Any, live: Live) -> None:
    bound_case(case)
    response = case.call(base_url=live.stack.base_url, session=live.session,
                         headers={**live.auth, "X-Async-Request": "true"}, timeout=30)
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if case.operation.path.startswith(RESULTS):
        # The results routes answer themselves: their bodies match the router's models.
        case.validate_response(response, checks=[response_schema_conformance])
    if case.operation.label == RESULTS_OPERATION:
        # Never deferred; a generated id is nobody's task (404), or not a uuid at all, or a
        # bad ?wait= (400 naming it).
        _assert_problem(response, 400, 404, 405)
        return
    if case.operation.label == CHANNELS_OPERATION:
        # Never deferred either: it hands out a fresh anonymous channel name.
        assert response.status_code == 200 and len(response.json()["channel"]) >= 22
        return
    if case.operation.path.startswith(RESULTS):
        # The other results routes (my operations, cancel) are never deferred either: they
        # answer for the caller's own operations, or a problem naming what is wrong.
        if response.status_code >= 400:
            _assert_problem(response, 400, 404, 405, 409, 422)
        else:
            assert response.status_code in (200, 201, 202), response.status_code  # 201: tickets
        return
    if response.status_code != 202:
        # Methods the middleware cannot defer (TRACE, CONNECT, made-up verbs), or the fuzz
        # user past its in-flight cap (ASYNC_REQUEST_MAX_INFLIGHT_PER_OWNER: 429).
        _assert_problem(response, 405, 429)
        return
    body = response.json()
    task_id = body["meta"]["async_request_id"]
    assert body == {"data": None, "meta": {"async_request_id": task_id}}
    assert uuid.UUID(task_id).version == 4 and str(uuid.UUID(task_id)) == task_id
    assert _header(response, "location") == f"{RESULTS}{task_id}/"
    live.accepted.append((case.operation.label, task_id))


def _sample(accepted: list[tuple[str, str]], size: int) -> list[tuple[str, str]]:
    """Up to `size` ids: two of every operation first, then random others."""
    rng = random.Random(0)
    by_operation: dict[str, list[tuple[str, str]]] = {}
    for item in accepted:
        by_operation.setdefault(item[0], []).append(item)
    chosen = [item for items in by_operation.values() for item in items[-2:]]
    rest = [item for item in accepted if item not in chosen]
    rng.shuffle(rest)
    return (chosen + rest)[:max(size, len(chosen))]


def test_accepted_tasks_complete_and_worker_survives(live: Live) -> None:
    if not live.accepted:
        pytest.skip("no task accepted: run it together with the test above")
    pending = dict((task_id, label) for label, task_id in _sample(live.accepted, SAMPLE_SIZE))
    finished: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + POLL_BUDGET_SEC
    with httpx.Client(base_url=live.stack.base_url, headers=live.auth, timeout=10) as http:
        while pending and time.monotonic() < deadline:
            for task_id in list(pending):
                response = http.get(f"{RESULTS}{task_id}/")
                assert response.status_code in (200, 202), (response.status_code, response.text)
                if response.status_code == 200:
                    finished[task_id] = response.json()
                    del pending[task_id]
            if pending:
                time.sleep(0.5)
    assert not pending, (
        f"{len(pending)} of {len(pending) + len(finished)} tasks not done after "
        f"{POLL_BUDGET_SEC:g}s: {sorted(set(pending.values()))}\n{live.stack.log_tails()}")
    labels = dict((task_id, label) for label, task_id in live.accepted)
    failed = {labels[t]: r for t, r in finished.items() if r["state"] != "completed"}
    assert not failed, f"tasks failed in the worker: {failed}"
    server_errors = {labels[t]: (r["status"], r["response"]) for t, r in finished.items()
                     if r["status"] >= 500}
    assert not server_errors, f"replayed requests answered 5xx: {server_errors}"
    worker = live.stack.worker
    assert worker is not None and worker.process is not None
    assert worker.process.pid == live.worker_pid and worker.process.poll() is None, (
        "the worker process died\n" + live.stack.log_tails())
    log = worker.log.read_text(errors="replace") if worker.log else ""
    for sign in ("WorkerLostError", "exited with 'signal", "Traceback"):
        assert sign not in log, f"{sign!r} in the worker log\n{live.stack.log_tails()}"


# -- the results endpoint's task_id, arbitrary ---------------------------------------------------

@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
# "." and ".." are dot segments: the client removes them from the URL (RFC 3986 5.2.4), so the
# server would see another path (the list of operations, or /api/v1/), not this task id.
@given(task_id=st.one_of(st.text(max_size=60).filter(lambda text: text not in (".", "..")),
                         st.uuids().map(str),
                         st.uuids().map(lambda u: str(u).upper())),
       authorised=st.booleans())
def test_results_task_id_is_404_400_or_401(live: Live, task_id: str, authorised: bool) -> None:
    headers = live.auth if authorised else {}
    url = f"{live.stack.base_url}{RESULTS}{quote(task_id, safe='')}/"
    response = live.session.get(url, headers=headers, timeout=10, allow_redirects=False)
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if "/" in task_id and "\n" in task_id and response.status_code == 307:
        # Starlette matches the decoded path, and its route patterns end in `$`, which also
        # matches before a final newline: "<a>/\n" without the trailing slash fits the
        # `{task_id}/` route, so the app's redirect_slashes sends there (FastAPI's default).
        return
    # Nobody's uuid: 404; not a uuid at all: 400 naming task_id; no credential: 401 first.
    problem = _assert_problem(response, *((404, 400) if authorised else (401, 404)))
    if response.status_code == 404:
        assert "belongs to you" in problem["detail"] or "Not Found" in problem["detail"]
    if response.status_code == 400:
        assert "task_id" in problem["detail"]
