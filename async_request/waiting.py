"""`Prefer: wait=N` (RFC 7240 §4.3): after the 202's promise is kept, wait up to N seconds.

With either trigger (`X-Async-Request` or `Prefer: respond-async`), a request that also says
`Prefer: wait=N` is queued and recorded as usual; then the middleware waits for its end, at most
N seconds, capped by ASYNC_REQUEST_MAX_WAIT_SEC (0 turns waiting off):

| the operation within N seconds | answer |
|---|---|
| completed | the route's own status, headers and body, as the synchronous call would |
| failed or cancelled | 200 with its status body (`state`, `error`), as `GET` of its URL gives |
| still pending or running | the usual 202 |
| Redis unreachable while waiting | the usual 202 (it is queued; the client polls later) |

Every answer carries `Preference-Applied: wait=<N applied>`; the 202 adds `respond-async` when
it was asked (the route's response does not: it is not asynchronous) and names the operation as
always (body, `Location`); the others name it in `X-Async-Request-Id`. The route's
`Content-Location` is left to the route (the status URL is another resource); the status body
of a failed one has `Content-Location` naming its URL. A `wait` that is not a delta-seconds
(`wait=abc`, `wait=-1`, `wait=1.5`) is ignored, as RFC 7240 says of malformed preferences. A
client that disconnects stops the wait, not the operation.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any

from async_request.exceptions import StoreUnavailableError
from async_request.records import Operation
from async_request.results.status import status_body
from async_request.store import OperationStore
from async_request.types import Receive

logger = logging.getLogger(__name__)

#: Headers a stored response must not repeat: they describe the original connection.
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"upgrade",
                         b"proxy-connection", b"te", b"trailer"})
#: What a browser's `fetch` may read of the waited answer (added to the route's own list).
EXPOSED = b"Preference-Applied, X-Async-Request-Id"


def wait_seconds(prefs: Mapping[str, str], cap: int) -> int | None:
    """The seconds to wait: `wait=N` capped by `cap`; None when absent, malformed, 0 or off."""
    value = prefs.get("wait")
    if value is None or not value.isascii() or not value.isdigit() or cap <= 0:
        return None
    seconds = min(int(value), cap)
    return seconds or None


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def wait_outcome(store: OperationStore, task_id: str, seconds: float,
                       receive: Receive) -> tuple[bool, Operation | None]:
    """(client still there, the ended operation or None) after up to `seconds` seconds."""
    waiting = asyncio.ensure_future(store.wait_terminal(task_id, seconds))
    leaving = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({waiting, leaving}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiting, leaving):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    if not waiting.done() or waiting.cancelled():
        return False, None
    try:
        return True, waiting.result()
    except StoreUnavailableError:
        logger.warning("cannot wait for task %s (Redis down?): answering 202", task_id)
        return True, None


def _expose(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    name = b"access-control-expose-headers"
    own = [value for key, value in headers if key == name]
    kept = [(key, value) for key, value in headers if key != name]
    return [*kept, (name, b", ".join([*own, EXPOSED]))]


def outcome_answer(operation: Operation, applied: bytes, location: str
                   ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """(status, headers, body) of an operation that ended within the wait."""
    ours = [(b"preference-applied", applied),
            (b"x-async-request-id", operation.task_id.encode())]
    record = operation.result
    if operation.state == "completed" and record is not None:
        headers = [(str(n).lower().encode("latin-1"), str(v).encode("latin-1"))
                   for n, v in record.get("headers", [])]
        headers = [(n, v) for n, v in headers if n not in _HOP_BY_HOP]
        return int(record["status"]), _expose([*headers, *ours]), base64.b64decode(
            record.get("body", ""))
    body = json.dumps(status_body(operation)).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()),
               (b"content-location", location.encode()), *ours]
    return 200, _expose(headers), body


def applied_value(prefs: Mapping[str, Any], seconds: int, *, deferred: bool) -> bytes:
    """The `Preference-Applied` value: `wait=N`, with `respond-async` first on a 202 if asked."""
    parts = ["respond-async"] if deferred and "respond-async" in prefs else []
    return ", ".join([*parts, f"wait={seconds}"]).encode()
