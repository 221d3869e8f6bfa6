"""FastAPI adapter of the results endpoint: `router`, include it with `prefix="/api/v1"`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from async_request.auth import headers_from_scope, resolve_owner
from async_request.exceptions import AuthenticationError, InvalidChannelError
from async_request.problems import PROBLEM_CONTENT_TYPE, problem
from async_request.results.status import task_status
from async_request.settings import get_settings

router = APIRouter(tags=["async-request"])


@router.get(
    "/async_background_response/{task_id}/",
    name="async_background_response",
    summary="Result of a background request",
    responses={202: {"description": "queued or running"}, 401: {"description": "no credentials"},
               404: {"description": "unknown task, or not yours"}},
)
async def async_background_response(task_id: str, request: Request) -> JSONResponse:
    """Return the stored response of a background request to its owner."""
    try:
        owner = resolve_owner(headers_from_scope(request.scope), get_settings())
    except InvalidChannelError as exc:
        return JSONResponse(problem(400, str(exc)), 400, media_type=PROBLEM_CONTENT_TYPE)
    except AuthenticationError as exc:
        return JSONResponse(problem(401, str(exc)), 401, media_type=PROBLEM_CONTENT_TYPE,
                            headers={"www-authenticate": "Bearer"})
    code, body = await run_in_threadpool(task_status, task_id, owner)
    media = PROBLEM_CONTENT_TYPE if code in (404, 503) else "application/json"
    return JSONResponse(body, code, media_type=media)
