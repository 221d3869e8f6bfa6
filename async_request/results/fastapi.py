"""FastAPI adapter of the results endpoint: `router`, include it with `prefix="/api/v1"`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from async_request.auth import new_channel, resolve_owner
from async_request.exceptions import AsyncRequestError
from async_request.headers import headers_from_scope
from async_request.problems import problem_for, starlette_response
from async_request.results.status import task_status
from async_request.settings import RESULTS_ROUTE, get_settings

router = APIRouter(tags=["async-request"])


@router.post(f"/{RESULTS_ROUTE}/channels/", name="async_request_new_channel",
             summary="A fresh anonymous channel name",
             responses={200: {"description": "{\"channel\": <name>}"}})
async def new_anonymous_channel() -> dict[str, str]:
    """A random channel name (128 bits) for `X-Async-Request: <channel>` and `/ws/?channel=`."""
    return {"channel": new_channel()}


@router.get(
    f"/{RESULTS_ROUTE}/{{task_id}}/",
    name="async_background_response",
    summary="Result of a background request",
    responses={202: {"description": "queued or running"}, 401: {"description": "no credentials"},
               404: {"description": "unknown task, or not yours"}},
)
# Without the slash too: Starlette's slash redirect would build an absolute Location from the
# request's Host header, which a client controls.
@router.get(f"/{RESULTS_ROUTE}/{{task_id}}", include_in_schema=False)
async def async_background_response(task_id: str, request: Request) -> Response:
    """Return the stored response of a background request to its owner."""
    try:
        owner = resolve_owner(headers_from_scope(request.scope), get_settings())
        code, body = await run_in_threadpool(task_status, task_id, owner)
    except AsyncRequestError as exc:
        return starlette_response(problem_for(exc))
    return JSONResponse(body, code)
