"""FastAPI adapter of the results endpoint: `router`, include it with `prefix="/api/v1"`.

Routes (under the prefix): `GET /async_background_response/` (my operations),
`GET /async_background_response/{id}/` (status and result), `DELETE .../{id}/` (cancel),
`POST .../{id}/rerun/` (queue a failed or cancelled one again, `rerun.py`),
`POST /async_background_response/channels/` (a fresh anonymous channel name),
`POST /async_background_response/tickets/` (a subscription ticket for the WebSocket),
`GET /async_background_response/events/` (the owner's events as Server-Sent Events).
Each answers the same without its trailing slash (the `{task_id:path}` catch-alls).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from async_request.auth import Owner, new_channel, resolve_owner
from async_request.exceptions import AsyncRequestError
from async_request.headers import headers_from_scope
from async_request.notifications import apublish
from async_request.problems import problem_for, starlette_response
from async_request.results.operations import cancel, list_operations, subscription_ticket
from async_request.results.rerun import rerun
from async_request.results.schemas import (
    Accepted,
    CancelBody,
    ChannelBody,
    OperationsPage,
    StatusBody,
    TicketBody,
    problem_responses,
)
from async_request.results.status import status_answer
from async_request.results.stream import STREAM_HEADERS, events, stream_after, stream_owner
from async_request.settings import RESULTS_ROUTE, get_settings

router = APIRouter(tags=["async-request"])
# The models document the answers; the routes send the dicts of status.py / operations.py as
# they are (a Response returned as is skips response_model), so the bytes never change.
_ERRORS = problem_responses(401, 404, 410, 503)


async def _owner_call(request: Request, call: Callable[[Owner], Any]) -> tuple[Owner, Any]:
    """The caller, and what `call(caller)` returns (run in a thread: it talks to Redis)."""
    owner = resolve_owner(headers_from_scope(request.scope), get_settings())
    return owner, await run_in_threadpool(call, owner)


@router.post(f"/{RESULTS_ROUTE}/channels/", name="async_request_new_channel",
             summary="A fresh anonymous channel name", response_model=ChannelBody)
async def new_anonymous_channel() -> dict[str, str]:
    """A random channel name (128 bits) for `X-Async-Request: <channel>` and `/ws/?channel=`."""
    return {"channel": new_channel()}


@router.post(f"/{RESULTS_ROUTE}/tickets/", name="async_request_ticket",
             summary="A short-lived ticket to subscribe with (WebSocket ?ticket=)",
             status_code=201, response_model=TicketBody, responses=problem_responses(401))
async def subscription_ticket_view(request: Request) -> Response:
    """A ticket good only for subscribing to the caller's events, for a few minutes."""
    try:
        _, (code, body) = await _owner_call(request, subscription_ticket)
    except AsyncRequestError as exc:
        return starlette_response(problem_for(exc))
    return JSONResponse(body, code, headers={"Cache-Control": "no-store"})


# Before the `{task_id}` routes, which would take "events" for an id.
@router.get(f"/{RESULTS_ROUTE}/events/", name="async_request_events",
            summary="The caller's events as Server-Sent Events (resume with Last-Event-ID)",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "`id: <seq>` + `data: <event JSON>`, heartbeats"},
                       **problem_responses(401)})
@router.get(f"/{RESULTS_ROUTE}/events", include_in_schema=False)
async def event_stream(
    request: Request,
    ticket: str | None = Query(None, description="a subscription ticket (POST .../tickets/)"),
    after: str | None = Query(None, description="the last seq you have (or Last-Event-ID)"),
) -> Response:
    """The owner's events: catch-up after `Last-Event-ID` / `?after=`, then live ones."""
    headers = headers_from_scope(request.scope)
    try:
        owner = stream_owner(headers, request.query_params)
    except AsyncRequestError as exc:
        return starlette_response(problem_for(exc))
    return StreamingResponse(events(owner, stream_after(headers, request.query_params)),
                             media_type="text/event-stream", headers=STREAM_HEADERS)


@router.get(f"/{RESULTS_ROUTE}/", name="async_request_operations",
            summary="My operations, newest first", response_model=OperationsPage,
            responses=problem_responses(400, 401, 503))
async def my_operations(
    request: Request,
    # Declared for the schema; read from the query as text, so a bad one is a 400 problem.
    state: str | None = Query(None, description="comma separated states to keep"),
    limit: str | None = Query(None, description="page size, 1 to 200 (default 50)"),
    cursor: str | None = Query(None, description="`meta.next_cursor` of the previous page"),
) -> Response:
    """The caller's operations: `?state=pending,running&limit=50&cursor=...`."""
    try:
        query = dict(request.query_params)
        _, (code, body) = await _owner_call(request, lambda owner: list_operations(owner, query))
    except AsyncRequestError as exc:
        return starlette_response(problem_for(exc))
    return JSONResponse(body, code)


@router.get(
    f"/{RESULTS_ROUTE}/{{task_id}}/",
    name="async_background_response",
    summary="Status and result of a background request",
    response_model=StatusBody,
    responses={202: {"model": StatusBody,
                     "description": "pending or running (Location, Retry-After)"}, **_ERRORS},
)
# Anything else under the prefix too (no trailing slash, `//`, ...): answered here, it never
# meets Starlette's slash redirect, which builds an absolute Location from the Host header.
@router.get(f"/{RESULTS_ROUTE}/{{task_id:path}}", include_in_schema=False)
async def async_background_response(task_id: str, request: Request) -> Response:
    """Return the state, and once it ended the stored response, of a background request."""
    task_id = task_id.removesuffix("/")  # the catch-all route hands it on with its slash
    try:
        _, (code, body, headers) = await _owner_call(
            request, lambda owner: status_answer(task_id, owner))
    except AsyncRequestError as exc:
        return starlette_response(problem_for(exc))
    return JSONResponse(body, code, headers=headers)


@router.delete(f"/{RESULTS_ROUTE}/{{task_id}}/", name="async_request_cancel",
               summary="Cancel a background request",
               response_model=CancelBody,
               responses={202: {"model": CancelBody,
                                "description": "running: its worker is told to stop"},
                          **problem_responses(409), **_ERRORS})
@router.delete(f"/{RESULTS_ROUTE}/{{task_id:path}}", include_in_schema=False)
async def cancel_operation(task_id: str, request: Request) -> Response:
    """Cancel a pending (never replayed) or running (told to stop) background request."""
    task_id = task_id.removesuffix("/")
    try:
        owner, (code, body) = await _owner_call(request, lambda owner: cancel(task_id, owner))
    except AsyncRequestError as exc:
        return starlette_response(problem_for(exc))
    if body["state"] == "cancelled":
        await apublish(owner, body["task_id"], "cancelled", error=body.get("error"))
    return JSONResponse(body, code)


_RERUN_ERRORS = problem_responses(409, 429)
_RERUN_ERRORS[409] = {**_RERUN_ERRORS[409], "description": "it is pending, running or completed"}


@router.post(f"/{RESULTS_ROUTE}/{{task_id}}/rerun/", name="async_request_rerun",
             summary="Queue a failed or cancelled background request again", status_code=202,
             response_model=Accepted,
             responses={202: {"description": "queued under a new id (Location, Retry-After)"},
                        **_RERUN_ERRORS, **_ERRORS})
# `{id}/rerun` without its slash, and any other POST under the prefix, lands here too.
@router.post(f"/{RESULTS_ROUTE}/{{task_id:path}}", include_in_schema=False)
async def rerun_operation(task_id: str, request: Request) -> Response:
    """Queue the captured request of a failed or cancelled operation again, under a new id."""
    if not request.url.path.rstrip("/").endswith("/rerun"):
        # What POST met here before the catch-all existed: 405, through the app's handlers.
        listing = request.url.path.rstrip("/").endswith(f"/{RESULTS_ROUTE}")
        raise HTTPException(405, headers={"Allow": "GET, HEAD" if listing
                                          else "GET, HEAD, DELETE"})
    task_id = task_id.removesuffix("/").removesuffix("/rerun")
    try:
        owner = resolve_owner(headers_from_scope(request.scope), get_settings())
        code, body, headers = await rerun(task_id, owner)
    except AsyncRequestError as exc:
        return starlette_response(problem_for(exc))
    return JSONResponse(body, code, headers={n.decode(): v.decode() for n, v in headers})
