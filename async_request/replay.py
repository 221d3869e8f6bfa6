"""Replay a captured request in-process through an ASGI app and capture the whole response.

Why not httpx.ASGITransport or Starlette's TestClient: both build the scope themselves, so neither
can carry our internal marker in the scope, keep `raw_path` byte-exact, or pass the original
client address; and both buffer differently on streaming. This is the same shape in ~60 lines:
a `receive` that feeds the body once, a `send` that collects every body chunk.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import logging
import threading
from dataclasses import dataclass
from typing import Any

from async_request.exceptions import ReplayCancelledError, ReplayTimeoutError
from async_request.types import ASGIApp, Message

logger = logging.getLogger(__name__)


class Cancel:
    """A running replay's cancel switch: the worker flips it (any thread), the app reads it.

    Once flipped, the app's `receive()` answers `http.disconnect` (what a server says when the
    client leaves) and `dependencies.is_cancelled()` is true; a route that has not ended
    `grace` seconds later is stopped (its task cancelled).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, grace: float) -> None:
        self.loop = loop
        self.grace = grace
        self.flag = threading.Event()
        self.event = asyncio.Event()

    def request(self) -> None:
        """Ask the replay to stop (thread-safe)."""
        self.flag.set()
        self.loop.call_soon_threadsafe(self.event.set)

    def is_set(self) -> bool:
        return self.flag.is_set()


@dataclass(frozen=True)
class ReplayResult:
    """What the route answered: status, headers and the body bytes, exactly."""

    task_id: str
    status: int
    endpoint: str
    headers: list[tuple[str, str]]
    body: bytes

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe record (body as base64) stored in the result backend."""
        return {
            "task_id": self.task_id,
            "status": self.status,
            "endpoint": self.endpoint,
            "headers": [list(pair) for pair in self.headers],
            "body": base64.b64encode(self.body).decode("ascii"),
        }


async def replay(app: ASGIApp, scope: dict[str, Any], body: bytes, *, task_id: str,
                 endpoint: str, timeout: float, cancel: Cancel | None = None,
                 limit: str = "ASYNC_REQUEST_REPLAY_TIMEOUT_SEC") -> ReplayResult:
    """Call `app` with `scope` and `body`; a route that never answers within `timeout` gets
    ReplayTimeoutError naming `limit` (the setting it came from), one whose `cancel` is flipped
    ends with ReplayCancelledError.

    On timeout the app's task is cancelled and we return at once, without waiting for it: a
    sync route running in a thread cannot be interrupted, and its thread must not hold the
    worker (it finishes in the background; what it sends then goes nowhere).

    An exception raised by the app after the response started is ignored (the response stands,
    as a server would send it); one raised before it becomes a 500 answer, as a server would.
    """
    status: int | None = None
    headers: list[tuple[str, str]] = []
    chunks: list[bytes] = []
    finished = asyncio.Event()
    body_sent = False

    async def receive() -> Message:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        waits = [asyncio.ensure_future(finished.wait())]
        if cancel is not None:
            waits.append(asyncio.ensure_future(cancel.event.wait()))
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for waiting in pending:
            waiting.cancel()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
            headers.extend((bytes(n).decode("latin-1"), bytes(v).decode("latin-1"))
                           for n, v in message.get("headers", ()))
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                finished.set()

    async def run() -> None:
        try:
            await app(scope, receive, send)
        finally:
            finished.set()

    # A fresh context: nothing of the worker's contextvars leaks into the app, and back.
    task = asyncio.get_running_loop().create_task(run(), context=contextvars.Context())
    try:
        if cancel is None:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        else:
            await _until_done_or_cancelled(task, cancel, timeout)
    except TimeoutError as exc:
        task.cancel()
        raise ReplayTimeoutError(
            f"the request did not finish within {timeout:g}s ({limit})") from exc
    except ReplayCancelledError:
        raise
    except Exception:
        logger.exception("task %s: the application raised while replaying %s", task_id, endpoint)
        if status is None:
            status, headers[:], chunks[:] = 500, [("content-type", "text/plain")], [
                b"Internal Server Error"]
    if status is None:
        status, headers[:], chunks[:] = 500, [("content-type", "text/plain")], [
            b"the application returned without sending a response"]
    return ReplayResult(task_id, status, endpoint, headers, b"".join(chunks))


async def _until_done_or_cancelled(task: asyncio.Task[None], cancel: Cancel,
                                   timeout: float) -> None:
    """Wait for the app's task; on cancel give it `grace` seconds, then stop it."""
    switch = asyncio.ensure_future(cancel.event.wait())
    try:
        done, _ = await asyncio.wait({task, switch}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        switch.cancel()
    if task in done:
        task.result()  # re-raise what the app raised
        if not cancel.is_set():
            return
    if not done:
        raise TimeoutError
    if not task.done():
        try:
            await asyncio.wait_for(asyncio.shield(task), cancel.grace)
        except TimeoutError:
            task.cancel()
    raise ReplayCancelledError("cancelled by its owner while it ran")
