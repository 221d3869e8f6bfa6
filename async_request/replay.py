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

#: Apps still running after they answered (the rest of a middleware, background tasks), kept
#: referenced until they end or their replay's time limit stops them (`wait_for_tails`).
_tails: set[asyncio.Task[None]] = set()


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

    The result is returned once the response's last body chunk is sent, as a client would have
    it, not when the app returns: what runs after that (the rest of a middleware such as the
    sample's `close_old_connections`, Starlette's background tasks) goes on as a tail of the
    replay (`_tails`) while the outcome is stored and told: a thread hop less on every
    operation's way to its owner.
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

    loop = asyncio.get_running_loop()
    answered: asyncio.Future[None] = loop.create_future()  # last body chunk sent, or ended

    def answer(_: object = None) -> None:
        finished.set()
        if not answered.done():
            answered.set_result(None)

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
            headers.extend((bytes(n).decode("latin-1"), bytes(v).decode("latin-1"))
                           for n, v in message.get("headers", ()))
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                answer()

    async def run() -> None:
        await app(scope, receive, send)

    # A fresh context: nothing of the worker's contextvars leaks into the app, and back.
    task = loop.create_task(run(), context=contextvars.Context())
    task.add_done_callback(answer)
    try:
        if cancel is None:
            await asyncio.wait_for(answered, timeout)
        else:
            await _until_done_or_cancelled(task, answered, cancel, timeout)
        if task.done():
            task.result()  # re-raise what the app raised
        else:
            _keep_tail(task, task_id, endpoint, timeout)
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


async def _until_done_or_cancelled(task: asyncio.Task[None], answered: asyncio.Future[None],
                                   cancel: Cancel, timeout: float) -> None:
    """Wait for the app's answer; on cancel give it `grace` seconds, then stop it."""
    switch: asyncio.Future[Any] = asyncio.ensure_future(cancel.event.wait())
    waits: set[asyncio.Future[Any]] = {answered, switch}
    try:
        done, _ = await asyncio.wait(waits, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        switch.cancel()
    if answered in done and not cancel.is_set():
        return
    if not done:
        raise TimeoutError
    if not answered.done():
        try:
            await asyncio.wait_for(asyncio.shield(answered), cancel.grace)
        except TimeoutError:
            task.cancel()
    raise ReplayCancelledError("cancelled by its owner while it ran")


def _keep_tail(task: asyncio.Task[None], task_id: str, endpoint: str, timeout: float) -> None:
    """Let an app that answered run on, for its replay's time limit at most; log what it
    raises."""
    stop = asyncio.get_running_loop().call_later(timeout, task.cancel)
    _tails.add(task)

    def ended(tail: asyncio.Task[None]) -> None:
        stop.cancel()
        _tails.discard(tail)
        if not tail.cancelled() and tail.exception() is not None:
            logger.error("task %s: the application raised after answering %s", task_id,
                         endpoint, exc_info=tail.exception())

    task.add_done_callback(ended)


async def wait_for_tails(timeout: float) -> None:
    """Give the apps still running after their answer up to `timeout` seconds to end (a
    stopping worker); those still running then are cancelled."""
    if _tails:
        _, running = await asyncio.wait(set(_tails), timeout=timeout)
        for tail in running:
            tail.cancel()
