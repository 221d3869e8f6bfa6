"""The Django adapter of the results endpoint (`async_request.results.django`), on real Redis."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from django.conf import settings
from django.test import RequestFactory, override_settings

from async_request.results.django import task_result_view
from async_request.settings import reset_settings
from async_request.store import OperationStore

pytestmark = pytest.mark.integration


@pytest.fixture
def results_redis(local_redis_url: str) -> Iterator[str]:
    with override_settings(ASYNC_REQUEST_REDIS_URL=local_redis_url):
        reset_settings()
        yield local_redis_url
    reset_settings()


def call(path_id: str, **headers: str) -> tuple[int, dict[str, object], str]:
    request = RequestFactory().get(f"/api/v1/async_background_response/{path_id}/",
                                   **{f"HTTP_{k.upper()}": v for k, v in headers.items()})
    response = asyncio.run(task_result_view(request, path_id))
    return response.status_code, json.loads(response.content), response["Content-Type"]


def test_django_view_owner_rules(results_redis: str) -> None:
    token = jwt.encode({"sub": "django-5", "exp": int(time.time()) + 600}, settings.SECRET_KEY,
                       algorithm="HS256")
    other = jwt.encode({"sub": "django-6", "exp": int(time.time()) + 600}, settings.SECRET_KEY,
                       algorithm="HS256")
    task_id = str(uuid.uuid4())
    store = OperationStore(results_redis, 60, secret=settings.SECRET_KEY)
    asyncio.run(store.accept(task_id, "user:django-5", "/x/", "GET"))
    code, body, media = call(task_id, authorization=f"Bearer {token}")
    assert code == 202 and body["state"] == "pending" and body["endpoint"] == "/x/"
    assert call(task_id, authorization=f"Bearer {other}")[0] == 404
    assert call("not-a-uuid", authorization=f"Bearer {token}")[0] == 400
    code, body, media = call(task_id)
    assert code == 401 and media == "application/problem+json" and body["status"] == 401


def test_django_rerun_view_queues_a_failed_operation_again(
        results_redis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.urls import resolve

    from async_request.envelope import RequestEnvelope
    from async_request.results import rerun as rerun_module
    from async_request.settings import get_settings
    from tests.asgi_apps import CapturingDispatcher

    captured = CapturingDispatcher()
    monkeypatch.setattr(rerun_module, "default_dispatcher", lambda: captured)
    secret = get_settings().secret_key
    store = OperationStore(results_redis, 60, secret=secret)
    task_id = str(uuid.uuid4())
    envelope = RequestEnvelope(task_id=task_id, owner="user:django-7", method="POST",
                               path="/x/", raw_path=b"/x/", query_string=b"a=1",
                               headers=(("authorization", "Bearer old"),), body=b"hi")
    asyncio.run(store.accept(task_id, "user:django-7", "/x/", "POST",
                             envelope=envelope.to_dict(secret)))
    token = jwt.encode({"sub": "django-7", "exp": int(time.time()) + 600}, settings.SECRET_KEY,
                       algorithm="HS256")
    other = jwt.encode({"sub": "django-8", "exp": int(time.time()) + 600}, settings.SECRET_KEY,
                       algorithm="HS256")

    def post(suffix: str, bearer: str, method: str = "post") -> tuple[int, dict[str, object],
                                                                      Any]:
        path = f"/async_background_response/{task_id}/{suffix}"
        match = resolve(path, urlconf="async_request.results.urls")
        request = getattr(RequestFactory(), method)(path, HTTP_AUTHORIZATION=f"Bearer {bearer}")
        response = asyncio.run(match.func(request, **match.kwargs))
        body = json.loads(response.content) if response.content else {}
        return response.status_code, body, response.headers  # case-insensitive

    code, body, _ = post("rerun/", token)
    assert code == 409 and "pending" in str(body["detail"])
    store.fail(task_id, "boom")
    assert post("rerun/", other)[0] == 404
    assert post("rerun/", token, "get")[0] == 405
    new_ids = []
    for suffix in ("rerun/", "rerun"):
        code, body, headers = post(suffix, token)
        assert code == 202, body
        new_id = body["meta"]["async_request_id"]  # type: ignore[index]
        assert body == {"data": None, "meta": {"async_request_id": new_id}}
        assert headers["Location"] == f"{get_settings().results_path}{new_id}/"
        assert headers["Retry-After"] == "1"
        new_ids.append(new_id)
    assert [queued.task_id for queued in captured.published] == new_ids
    assert all((queued.body, queued.query_string, queued.headers) == (
        b"hi", b"a=1", (("authorization", "Bearer old"),)) for queued in captured.published)
    rerun = store.get(new_ids[0])
    assert rerun is not None and rerun.rerun_of == task_id and rerun.state == "pending"


def test_django_ticket_view(results_redis: str) -> None:
    from async_request.results.django import ticket_view
    from async_request.settings import get_settings
    from async_request.tickets import ticket_owner

    token = jwt.encode({"sub": "django-7", "exp": int(time.time()) + 600}, settings.SECRET_KEY,
                       algorithm="HS256")
    factory = RequestFactory()
    response = asyncio.run(ticket_view(factory.post(
        "/api/v1/async_background_response/tickets/", HTTP_AUTHORIZATION=f"Bearer {token}")))
    assert response.status_code == 201 and response["Cache-Control"] == "no-store"
    assert str(ticket_owner(json.loads(response.content)["ticket"], get_settings())) == \
        "user:django-7"
    refused = asyncio.run(ticket_view(factory.post("/api/v1/async_background_response/tickets/")))
    assert refused.status_code == 401 and refused["Content-Type"] == "application/problem+json"
    assert asyncio.run(ticket_view(factory.get("/x/"))).status_code == 405
