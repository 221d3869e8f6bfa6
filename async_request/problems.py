"""RFC 9457 `application/problem+json` errors: the one format of every error this layer answers.

The replayed route's own responses are never touched; only the layer's errors (400, 401, 404,
409, 413, 429, 431, 503, ...) use this shape, so a client can tell "the queue refused" from "the
route said".

One table (`_ANSWERS`) decides which HTTP status and headers each refusal gets; `problem_for`
reads it, and every surface renders its result: `send_problem` on a raw ASGI `send` (the
middleware), `starlette_response` (the FastAPI router, `require_async`), `django_response` (the
Django view and decorator), and `close_code` for the WebSocket (4000 + the HTTP status, because
browsers cannot read the status of a refused handshake).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from async_request.exceptions import (
    AnonymousDisabledError,
    AsyncRequestError,
    AuthenticationError,
    BadContentLengthError,
    BadQueryError,
    BodyTooLargeError,
    CallbackRefusedError,
    EnqueueError,
    HeadersTooLargeError,
    InvalidChannelError,
    MethodNotDeferrableError,
    OperationGoneError,
    OperationStateError,
    StoreUnavailableError,
    TooLargeError,
    TooManyInFlightError,
    UnknownOperationError,
)
from async_request.types import Send

if TYPE_CHECKING:
    from django.http import HttpResponse
    from starlette.responses import Response

PROBLEM_CONTENT_TYPE = "application/problem+json"
#: How long a client should wait before retrying after a 503 (or a 429) of this layer.
RETRY_AFTER_SEC = 5

_BEARER = (("www-authenticate", "Bearer"),)
_RETRY = (("retry-after", str(RETRY_AFTER_SEC)),)

#: refusal -> (HTTP status, extra headers). The most specific class listed wins.
_ANSWERS: dict[type[AsyncRequestError], tuple[int, tuple[tuple[str, str], ...]]] = {
    InvalidChannelError: (400, ()),
    AnonymousDisabledError: (403, ()),
    AuthenticationError: (401, _BEARER),
    BadContentLengthError: (400, ()),
    CallbackRefusedError: (400, ()),
    MethodNotDeferrableError: (405, ()),
    BodyTooLargeError: (413, ()),
    HeadersTooLargeError: (431, ()),
    TooManyInFlightError: (429, _RETRY),
    UnknownOperationError: (404, ()),
    OperationGoneError: (410, ()),
    OperationStateError: (409, ()),
    BadQueryError: (400, ()),
    StoreUnavailableError: (503, _RETRY),
    EnqueueError: (503, _RETRY),
}


@dataclass(frozen=True)
class Problem:
    """One error answer: HTTP status, a human-readable detail, headers, extra members."""

    status: int
    detail: str
    headers: tuple[tuple[str, str], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """The problem document."""
        return problem(self.status, self.detail, **self.extra)

    def encoded(self) -> bytes:
        """The problem document as UTF-8 JSON."""
        return json.dumps(self.body()).encode()


def problem_for(exc: AsyncRequestError) -> Problem:
    """The answer to a refusal; raises the error again if no answer is defined for it."""
    for cls in type(exc).__mro__:
        if cls in _ANSWERS:
            status, headers = _ANSWERS[cls]
            extra = exc.members() if isinstance(exc, TooLargeError) else {}
            return Problem(status, str(exc), headers, dict(extra))
    raise exc


def close_code(exc: AsyncRequestError) -> int:
    """The WebSocket close code of a refusal: 4000 + its HTTP status (4400, 4401, 4403)."""
    return 4000 + problem_for(exc).status


def problem(status: int, detail: str, *, title: str | None = None, **extra: Any) -> dict[str, Any]:
    """Return the problem document for `status` with a human-readable `detail`."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    body.update(extra)
    return body


async def send_json(
    send: Send, status: int, payload: Any, *, content_type: str = "application/json",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Send a complete JSON response on a raw ASGI `send`."""
    body = json.dumps(payload).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
            *(headers or []),
        ],
    })
    await send({"type": "http.response.body", "body": body})


async def send_problem(send: Send, answer: Problem) -> None:
    """Send a problem+json response on a raw ASGI `send`."""
    await send_json(send, answer.status, answer.body(), content_type=PROBLEM_CONTENT_TYPE,
                    headers=[(n.encode("latin-1"), v.encode("latin-1"))
                             for n, v in answer.headers])


def starlette_response(answer: Problem) -> Response:
    """The problem as a Starlette/FastAPI response."""
    from starlette.responses import JSONResponse

    return JSONResponse(answer.body(), status_code=answer.status, headers=dict(answer.headers),
                        media_type=PROBLEM_CONTENT_TYPE)


def django_response(answer: Problem) -> HttpResponse:
    """The problem as a Django response."""
    from django.http import HttpResponse

    response = HttpResponse(answer.encoded(), status=answer.status,
                            content_type=PROBLEM_CONTENT_TYPE)
    for name, value in answer.headers:
        response[name] = value
    return response
