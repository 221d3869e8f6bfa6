"""Django adapter of the results endpoint: `task_result_view`; see `results/urls.py`."""

from __future__ import annotations

import json

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse

from async_request.auth import resolve_owner
from async_request.exceptions import AuthenticationError, InvalidChannelError
from async_request.problems import PROBLEM_CONTENT_TYPE, problem
from async_request.results.status import task_status
from async_request.settings import get_settings


def _json(code: int, body: object) -> HttpResponse:
    media = PROBLEM_CONTENT_TYPE if code >= 400 else "application/json"
    return HttpResponse(json.dumps(body), status=code, content_type=media)


async def task_result_view(request: HttpRequest, task_id: str) -> HttpResponse:
    """Return the stored response of a background request to its owner."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        owner = resolve_owner(headers, get_settings())
    except InvalidChannelError as exc:
        return _json(400, problem(400, str(exc)))
    except AuthenticationError as exc:
        response = _json(401, problem(401, str(exc)))
        response["WWW-Authenticate"] = "Bearer"
        return response
    code, body = await sync_to_async(task_status, thread_sensitive=False)(task_id, owner)
    return _json(code, body)
