"""Django adapter of the results endpoint: `task_result_view`; see `results/urls.py`."""

from __future__ import annotations

import json

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse

from async_request.auth import new_channel, resolve_owner
from async_request.exceptions import AsyncRequestError
from async_request.problems import django_response, problem_for
from async_request.results.status import task_status
from async_request.settings import get_settings


async def task_result_view(request: HttpRequest, task_id: str) -> HttpResponse:
    """Return the stored response of a background request to its owner."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        owner = resolve_owner(headers, get_settings())
        code, body = await sync_to_async(task_status, thread_sensitive=False)(task_id, owner)
    except AsyncRequestError as exc:
        return django_response(problem_for(exc))
    return HttpResponse(json.dumps(body), status=code, content_type="application/json")


def new_channel_view(request: HttpRequest) -> HttpResponse:
    """A random channel name (128 bits) for `X-Async-Request: <channel>` and `/ws/?channel=`."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    return JsonResponse({"channel": new_channel()})


# It reads nothing and changes nothing: a random name for whoever asks, no CSRF token needed.
new_channel_view.csrf_exempt = True  # type: ignore[attr-defined]
