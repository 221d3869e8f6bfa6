"""FastAPI adapter of the results endpoint: `router`, include it with `prefix="/api/v1"`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from async_request.auth import resolve_owner
from async_request.exceptions import AsyncRequestError
from async_request.headers import headers_from_scope
from async_request.problems import problem_for, starlette_response
from async_request.results.status import task_status
from async_request.settings import RESULTS_ROUTE, get_settings

router = APIRouter(tags=["async-request"])


@router.get(
    f"/{RESULTS_ROUTE}/{{task_id}}/",
    name="async_background_response",
    summary="Result of a background request",
    responses={202: {"description": "queued or running"}, 401: {"description": "no credentials"},
               404: {"description": "unknown task, or not yours"}},
)
async def async_background_response(task_id: str, request: Request) -> Response:
    """Return the stored response of a background request to its owner."""
    try:
        owner = resolve_owner(headers_from_scope(request.scope), get_settings())
        code, body = await run_in_threadpool(task_status, task_id, owner)
    except AsyncRequestError as exc:
        return starlette_response(problem_for(exc))
    return JSONResponse(body, code)
