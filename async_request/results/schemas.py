"""The shapes of the results endpoints' answers, as pydantic models for the OpenAPI document.

They describe what `status.py` and `operations.py` build; the routes still send those dicts as
they are (a model never rewrites the bytes on the wire), so every model allows extra members
and every field a state may leave out has a default. Errors are RFC 9457 problem documents,
sent as `application/problem+json` (`problem_responses`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from async_request.problems import PROBLEM_CONTENT_TYPE

State = Literal["pending", "running", "completed", "failed", "cancelled"]


class _Open(BaseModel):
    # Extra members allowed: a model documents the answer, it does not filter it.
    model_config = ConfigDict(extra="allow")


class Lifecycle(_Open):
    """The fields every status body and list item carries, whatever the state."""

    task_id: str = Field(description="the operation's id (a UUID)")
    state: State
    method: str = Field(description="the HTTP method of the deferred request")
    endpoint: str = Field(description="the path of the deferred request")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: datetime | None = None
    attempts: int = Field(0, description="runs started (more than 1 after a redelivery)")
    progress: dict[str, Any] | None = Field(None, description="the route's last progress report")
    rerun_of: str | None = Field(None, description="the operation this one re-runs")


class StatusBody(Lifecycle):
    """One operation: its lifecycle, and once it ended its outcome."""

    status: int | None = Field(None, description="the route's HTTP status; null if it failed")
    headers: list[list[str]] | None = Field(
        None, description="the route's response headers, [name, value] pairs")
    response: Any = Field(None, description="the route's body: JSON, text or base64")
    encoding: Literal["json", "text", "base64"] | None = Field(
        None, description="how `response` holds the body")
    error: str | None = Field(None, description="why it failed or was cancelled (one line)")


class CancelBody(StatusBody):
    """The status body after a cancel; `cancel_requested` when its worker is told to stop."""

    cancel_requested: bool = False


class PageMeta(_Open):
    """Where the next page starts."""

    next_cursor: str | None = Field(description="pass as `?cursor=` for the next page")


class OperationsPage(_Open):
    """A page of the caller's operations, newest first."""

    data: list[Lifecycle]
    meta: PageMeta


class ChannelBody(_Open):
    """A fresh anonymous channel name."""

    channel: str = Field(description="for `X-Async-Request: <channel>` and `/ws/?channel=`")


class TicketBody(_Open):
    """A short-lived ticket, good only for subscribing to the caller's events."""

    ticket: str = Field(description="for `/ws/?ticket=` or `{\"type\": \"auth\", \"ticket\"}`")
    expires_at: datetime
    expires_in: int = Field(description="seconds it stays good (ASYNC_REQUEST_TICKET_TTL_SEC)")


class AcceptedMeta(_Open):
    """The id of the deferred request's operation."""

    async_request_id: str


class Accepted(_Open):
    """The 202 body of a deferred request (sent by the middleware, and by a re-run)."""

    data: None = None
    meta: AcceptedMeta


class Problem(_Open):
    """An RFC 9457 problem document; extra members may follow."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str


#: The errors each route may answer, with what they mean.
ERRORS = {
    400: "a malformed query parameter (problem+json names it)",
    401: "no or a bad credential",
    404: "unknown operation, or not yours",
    409: "it has already ended",
    410: "your operation expired",
    429: "too many of your operations are not finished (ASYNC_REQUEST_MAX_INFLIGHT_PER_OWNER); "
         "nothing was queued, retry after Retry-After",
    503: "the operation store (Redis) is unavailable; retry after Retry-After",
}


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries of problem+json errors (only that media type is declared)."""
    schema = Problem.model_json_schema()
    return {code: {"description": ERRORS[code],
                   "content": {PROBLEM_CONTENT_TYPE: {"schema": schema}}} for code in codes}
