"""Schemathesis on the results endpoints with operations that exist, in every state.

The generated ids of test_schemathesis_inprocess.py are nobody's operation, so they only ever
meet the 404 problem. Here every results operation of the OpenAPI document (found by its path:
an endpoint added to the router later is covered without touching this file) is called
in-process for an operation of the caller in each state, an unknown id and a malformed one, and
its answer must conform to the document: status code declared, content type declared, body
valid against the response model, no 5xx.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fuzz._openapi import load_schema

RESULTS = "/api/v1/async_background_response/"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]

schema = load_schema(max_examples=1, coverage=False)
schema.app = importlib.import_module("sample_project.asgi").application
OPERATIONS = {operation.label: operation for operation in
              (result.ok() for result in schema.get_all_operations())
              if operation.path.startswith(RESULTS)}
WITH_ID = sorted(label for label, op in OPERATIONS.items() if "{task_id}" in op.path)
WITHOUT_ID = sorted(label for label, op in OPERATIONS.items() if "{task_id}" not in op.path)
STATES = ["pending", "running", "completed-json", "completed-binary", "failed", "cancelled",
          "unknown", "malformed"]
QUERIES = [{}, {"state": "completed,failed"}, {"limit": "2"}, {"limit": "0"},
           {"state": "exploded"}, {"cursor": "not-a-cursor"}]


@pytest.fixture(autouse=True)
def live_store(settings: Any, local_redis_url: str) -> None:
    settings.ASYNC_REQUEST_REDIS_URL = local_redis_url


@pytest.fixture
def caller(transactional_db: None) -> tuple[str, str]:
    """A user's token, and its owner string in the store."""
    from demo.auth import issue_token
    from django.contrib.auth import get_user_model

    from async_request.auth import resolve_owner
    from async_request.settings import get_settings

    user = get_user_model().objects.create_user(username=f"u{uuid.uuid4().hex[:10]}")
    token = issue_token(user)
    owner = resolve_owner({"authorization": f"Bearer {token}"}, get_settings())
    return token, str(owner)


def _result(task_id: str, content_type: str, body: bytes) -> dict[str, Any]:
    return {"task_id": task_id, "status": 201, "endpoint": "/api/v1/orders/",
            "headers": [["content-type", content_type]], "body": base64.b64encode(body).decode()}


#: state -> how to bring a fresh pending operation (store, id, owner) there.
_SEEDS: dict[str, Callable[[Any, str, str], object]] = {
    "pending": lambda store, task_id, owner: None,
    "running": lambda store, task_id, owner: store.claim(task_id, "worker-1"),
    "completed-json": lambda store, task_id, owner: store.finish(task_id, _result(
        task_id, "application/json", json.dumps({"id": 7, "items": [1, None]}).encode())),
    "completed-binary": lambda store, task_id, owner: store.finish(task_id, _result(
        task_id, "application/octet-stream", b"\x00\xff\xfe")),
    "failed": lambda store, task_id, owner: store.fail(task_id, "the replay timed out"),
    "cancelled": lambda store, task_id, owner: store.cancel(task_id, owner),
}


def seed(owner: str, state: str) -> str:
    """The id of an operation of `owner` in `state` (or an id that is nobody's)."""
    from async_request.store import get_store

    if state == "unknown":
        return str(uuid.uuid4())
    if state == "malformed":
        return "not-a-uuid"
    store = get_store()
    task_id = str(uuid.uuid4())
    asyncio.run(store.accept(task_id, owner, "/api/v1/orders/", "POST"))
    _SEEDS[state](store, task_id, owner)
    return task_id


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("label", WITH_ID)
def test_an_operation_in_any_state_answers_as_documented(
        label: str, state: str, caller: tuple[str, str]) -> None:
    token, owner = caller
    task_id = seed(owner, state)
    case = OPERATIONS[label].Case(path_parameters={"task_id": task_id})
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("query", QUERIES, ids=lambda q: json.dumps(q))
@pytest.mark.parametrize("label", WITHOUT_ID)
def test_the_other_results_routes_answer_as_documented(
        label: str, query: dict[str, str], caller: tuple[str, str]) -> None:
    token, owner = caller
    for state in ("pending", "completed-json", "failed"):
        seed(owner, state)
    operation = OPERATIONS[label]
    case = operation.Case(query=query if operation.method.upper() == "GET" else None)
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_no_credential_is_a_documented_401(label: str) -> None:
    operation = OPERATIONS[label]
    if operation.label.startswith("POST") and "channels" in operation.path:
        pytest.skip("a fresh channel name needs no credential")
    params = {"task_id": str(uuid.uuid4())} if "{task_id}" in operation.path else None
    response = operation.Case(path_parameters=params).call_and_validate(checks=CHECKS)
    assert response.status_code == 401


def test_every_results_route_is_covered() -> None:
    # The router's documented routes, all found above (a new one would be, by its path).
    assert {"GET " + RESULTS, "POST " + RESULTS + "channels/", "POST " + RESULTS + "tickets/",
            "GET " + RESULTS + "{task_id}/", "DELETE " + RESULTS + "{task_id}/"} <= set(OPERATIONS)
