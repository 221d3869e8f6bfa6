"""Django adapter of the results endpoints (status, cancel, re-run, list, channels, tickets);
see `urls.py`.

The same routes as the FastAPI router (`results/fastapi.py`), with the same bodies; the OpenAPI
document of both is served at `<results path>openapi.json` (it needs the `fastapi` extra).
"""

from __future__ import annotations

import json

from asgiref.sync import sync_to_async
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    JsonResponse,
    StreamingHttpResponse,
)

from async_request.auth import Owner, new_channel, resolve_owner
from async_request.exceptions import AsyncRequestError
from async_request.notifications import apublish
from async_request.problems import django_response, problem_for
from async_request.results.operations import cancel, list_operations, subscription_ticket
from async_request.results.rerun import rerun
from async_request.results.status import status_answer
from async_request.results.stream import STREAM_HEADERS, events, stream_after, stream_owner
from async_request.settings import RESULTS_ROUTE, get_settings


def _json(code: int, body: object, headers: dict[str, str] | None = None) -> HttpResponse:
    response = HttpResponse(json.dumps(body), status=code, content_type="application/json")
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _owner(request: HttpRequest) -> Owner:
    return resolve_owner({k.lower(): v for k, v in request.headers.items()}, get_settings())


async def task_result_view(request: HttpRequest, task_id: str) -> HttpResponse:
    """GET: state and result of a background request; DELETE: cancel it (owner only)."""
    try:
        owner = _owner(request)
        if request.method == "DELETE":
            code, body = await sync_to_async(cancel, thread_sensitive=False)(task_id, owner)
            if body["state"] == "cancelled":
                await apublish(owner, body["task_id"], "cancelled", error=body.get("error"))
            return _json(code, body)
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD", "DELETE"])
        code, body, headers = await sync_to_async(status_answer, thread_sensitive=False)(
            task_id, owner)
    except AsyncRequestError as exc:
        return django_response(problem_for(exc))
    return _json(code, body, headers)


async def rerun_view(request: HttpRequest, task_id: str) -> HttpResponse:
    """POST: queue a failed or cancelled background request again (owner only); 202."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        code, body, headers = await rerun(task_id, _owner(request))
    except AsyncRequestError as exc:
        return django_response(problem_for(exc))
    return _json(code, body, {n.decode(): v.decode() for n, v in headers})


async def operations_view(request: HttpRequest) -> HttpResponse:
    """GET: the caller's operations, newest first (`?state=&limit=&cursor=`)."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    try:
        owner = _owner(request)
        code, body = await sync_to_async(list_operations, thread_sensitive=False)(
            owner, {k: v for k, v in request.GET.items()})
    except AsyncRequestError as exc:
        return django_response(problem_for(exc))
    return _json(code, body)


# DELETE and POST from API clients: bearer tokens or channel names, never a session cookie to
# protect.
task_result_view.csrf_exempt = True  # type: ignore[attr-defined]
rerun_view.csrf_exempt = True  # type: ignore[attr-defined]


def new_channel_view(request: HttpRequest) -> HttpResponse:
    """A random channel name (128 bits) for `X-Async-Request: <channel>` and `/ws/?channel=`."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    return JsonResponse({"channel": new_channel()})


# It reads nothing and changes nothing: a random name for whoever asks, no CSRF token needed.
new_channel_view.csrf_exempt = True  # type: ignore[attr-defined]


def openapi_view(request: HttpRequest) -> HttpResponse:
    """The OpenAPI document of the results endpoints, as the FastAPI router describes them."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    from fastapi import FastAPI

    from async_request.results.fastapi import router

    # Mounted where ASYNC_REQUEST_RESULTS_PATH says, as the middleware and `Location` assume.
    prefix = get_settings().results_path.removesuffix(f"{RESULTS_ROUTE}/").rstrip("/")
    app = FastAPI(title="async-request results", openapi_url=None, docs_url=None,
                  redoc_url=None)
    app.include_router(router, prefix=prefix)
    return JsonResponse(app.openapi())


async def ticket_view(request: HttpRequest) -> HttpResponse:
    """POST with a Bearer token: a short-lived ticket to subscribe with (`tickets.py`)."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        code, body = subscription_ticket(_owner(request))
    except AsyncRequestError as exc:
        return django_response(problem_for(exc))
    return _json(code, body, {"Cache-Control": "no-store"})


# A bearer token authenticates it, never a cookie: nothing for CSRF to forge.
ticket_view.csrf_exempt = True  # type: ignore[attr-defined]


async def events_view(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """GET: the owner's events as Server-Sent Events (see `results/stream.py`)."""
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    headers = {k.lower(): v for k, v in request.headers.items()}
    query = {k: v for k, v in request.GET.items()}
    try:
        owner = stream_owner(headers, query)
    except AsyncRequestError as exc:
        return django_response(problem_for(exc))
    response = StreamingHttpResponse(events(owner, stream_after(headers, query)),
                                     content_type="text/event-stream")
    for name, value in STREAM_HEADERS.items():
        response[name] = value
    return response
