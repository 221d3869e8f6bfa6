"""RFC 9457 `application/problem+json` errors: the one format of every error this layer answers.

The replayed route's own responses are never touched; only the layer's errors (401, 404, 409,
413, 503, ...) use this shape, so a client can tell "the queue refused" from "the route said".
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from async_request.types import Send

PROBLEM_CONTENT_TYPE = "application/problem+json"


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


def problem_bytes(status: int, detail: str, **extra: Any) -> bytes:
    """The problem document encoded as UTF-8 JSON."""
    return json.dumps(problem(status, detail, **extra)).encode()


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


async def send_problem(send: Send, status: int, detail: str, *,
                       headers: list[tuple[bytes, bytes]] | None = None, **extra: Any) -> None:
    """Send a problem+json response on a raw ASGI `send`."""
    await send_json(send, status, problem(status, detail, **extra),
                    content_type=PROBLEM_CONTENT_TYPE, headers=headers)
