"""`AsyncRequestMiddleware`: accept. Pure ASGI; answers 202 for `X-Async-Request` requests.

The accept step, in the order it decides, and why:
1. pass through what is not ours: other scope types, worker replays, requests with neither
   `X-Async-Request` nor `Prefer: respond-async` (RFC 7240), the results endpoint;
2. refuse what cannot be deferred: a method that cannot run in the background (405), no or a
   bad owner (401/400/403), headers over ASYNC_REQUEST_MAX_HEADER_BYTES (431), a declared
   or actual body over the limit (413): nothing is read or stored for a stranger, nothing is
   queued for a request that cannot run;
3. capture the request (`envelope.py`): a body above ASYNC_REQUEST_INLINE_BODY_BYTES, or one
   that would make the task message larger than the broker takes (KAFKA_MAX_MESSAGE_BYTES),
   travels in Redis beside it; headers and query string that alone make it too large get 431
   (a retry can never succeed, so not a 503); then record the operation in the store, so
   its owner is known before the task exists (Redis down → 503), unless the owner already has
   ASYNC_REQUEST_MAX_INFLIGHT_PER_OWNER operations not finished (429, nothing kept);
4. dispatch it (`dispatch.py`) to its route's lane (`lanes.py`, kept in the record),
   acknowledged by the broker (broker down → 503, and the record is withdrawn, so nothing is
   left half-done);
5. with `Prefer: wait=N`, wait up to N seconds for the outcome and answer the route's own
   response if it came (`waiting.py`);
6. else the 202 with the id, a `Location` naming the results URL, `Retry-After`,
   `Preference-Applied: respond-async` (and `wait=N`) when the client asked with `Prefer`,
   and `Access-Control-Expose-Headers` so a browser script can read them.

Every refusal is an `AsyncRequestError` answered by `problems.problem_for`, as problem+json.
Put this middleware inside CORS and other edge middleware, so its answers get their headers.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine
from typing import Any

from async_request.auth import Owner, resolve_owner
from async_request.checks import installed_error
from async_request.dispatch import Dispatcher, message_size, too_large
from async_request.envelope import RequestEnvelope
from async_request.exceptions import (
    AsyncRequestError,
    BadContentLengthError,
    BodyTooLargeError,
    EnqueueError,
    HeadersTooLargeError,
    MethodNotDeferrableError,
    TooLargeError,
)
from async_request.headers import ASYNC_HEADER, async_mode, headers_from_scope, preferences
from async_request.lanes import lane_for
from async_request.notifications import apublish
from async_request.problems import problem_for, send_json, send_problem
from async_request.settings import Settings, get_settings
from async_request.store import OperationStore, get_store
from async_request.types import INTERNAL_SCOPE_KEY, ASGIApp, Receive, Scope, Send
from async_request.waiting import applied_value, outcome_answer, wait_outcome, wait_seconds
from async_request.webhooks import CALLBACK_HEADER, callback_url

logger = logging.getLogger(__name__)

#: What a browser's `fetch` may read of the 202 (CORS hides other headers from scripts).
EXPOSED_HEADERS = b"Location, Retry-After, Preference-Applied"

#: Methods that may be deferred; anything else (CONNECT, TRACE, made-up verbs) gets 405.
DEFERRABLE_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """Read the whole request body; None if the client went away; BodyTooLargeError past limit."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(_too_large(limit))
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _too_large(limit: int) -> str:
    return f"the request body is larger than {limit} bytes (ASYNC_REQUEST_MAX_BODY_BYTES)"


def check_method(method: str) -> str:
    """The upper-cased method if it can be deferred, else MethodNotDeferrableError."""
    method = method.upper()
    if method not in DEFERRABLE_METHODS:
        raise MethodNotDeferrableError(f"method {method} cannot be run in the background")
    return method


def accepted(task_id: str, settings: Settings, *, applied: bytes | None = None
             ) -> tuple[dict[str, Any], list[tuple[bytes, bytes]]]:
    """The 202's body and headers for a queued task: the middleware's, and a re-run's;
    `applied` is the `Preference-Applied` value, when the client's `Prefer` was honoured."""
    location = f"{settings.results_path}{task_id}/"
    headers = [(b"location", location.encode()), (b"retry-after", b"1"),
               (b"access-control-expose-headers", EXPOSED_HEADERS)]
    if applied is not None:
        headers.append((b"preference-applied", applied))
    return {"data": None, "meta": {"async_request_id": task_id}}, headers


async def queue(envelope: RequestEnvelope, *, store: OperationStore, dispatcher: Dispatcher,
                settings: Settings, body_aside: bytes | None,
                rerun_of: str | None = None, lane: str | None = None) -> None:
    """Record `envelope` (within its owner's in-flight cap), then publish it to `lane`
    (default: its route's); when the broker does not take it the record is withdrawn and
    EnqueueError (TooLargeError for a message above its size limit) raised: nothing
    half-done."""
    # Checked here, before anything is stored: a callback to a host not allowed is a 400.
    callback = callback_url(dict(envelope.headers).get(CALLBACK_HEADER), settings)
    lane = lane or lane_for(settings, envelope.method, envelope.path)
    sealed = envelope.to_dict(settings.secret_key)  # stored and published alike
    await store.accept(envelope.task_id, envelope.owner, envelope.path,
                       envelope.method.upper(), body_aside, envelope=sealed, rerun_of=rerun_of,
                       max_inflight=settings.max_inflight_per_owner, callback=callback,
                       lane=lane)
    try:
        await dispatcher.enqueue(envelope, secret=settings.secret_key, lane=lane, sealed=sealed)
    except (EnqueueError, TooLargeError):
        await store.forget(envelope.task_id)
        raise
    # The owner hears `pending` (and the event log numbers it) right after, not before the
    # 202: a notification is not worth a slower answer. Its seq may come after the worker's
    # `running` one; clients order states, not arrival (see events.py).
    _in_background(apublish(Owner.parse(envelope.owner), envelope.task_id, "pending"))


#: Notifications sent after the answer; kept referenced until they are done.
_background: set[asyncio.Task[Any]] = set()


def _in_background(work: Coroutine[Any, Any, Any]) -> None:
    task = asyncio.get_running_loop().create_task(work)
    _background.add(task)
    task.add_done_callback(_background.discard)


def check_declared_length(headers: dict[str, str], limit: int) -> None:
    """Refuse a Content-Length that is not a number or is over the limit, before reading."""
    declared = headers.get("content-length")
    if declared is None:
        return
    if not declared.strip().isdigit():
        raise BadContentLengthError(f"Content-Length {declared!r} is not a number")
    if int(declared) > limit:
        raise BodyTooLargeError(_too_large(limit))


def check_header_size(scope: Scope, limit: int) -> None:
    """Refuse headers (names and values) over `limit` bytes, before the body is read."""
    size = sum(len(name) + len(value) for name, value in scope.get("headers", ()))
    if size > limit:
        raise HeadersTooLargeError(
            f"the request headers are {size} bytes, above ASYNC_REQUEST_MAX_HEADER_BYTES "
            f"({limit})", size=size, limit=limit, setting="ASYNC_REQUEST_MAX_HEADER_BYTES")


def capture(scope: Scope, body: bytes, *, task_id: str, owner: str,
            settings: Settings) -> RequestEnvelope:
    """The envelope of the request: its body inline when small enough for the message, else
    stored aside (`body_ref`); TooLargeError when the message would still be too large."""
    limit = settings.kafka_max_message_bytes
    envelope = None
    if len(body) <= settings.inline_body_bytes:
        envelope = RequestEnvelope.from_scope(scope, body, task_id=task_id, owner=owner)
        if body and message_size(envelope) > limit:
            envelope = None  # the body would not fit in the message: it goes aside
    if envelope is None:
        envelope = RequestEnvelope.from_scope(scope, body, task_id=task_id, owner=owner,
                                              body_ref=task_id)
    size = message_size(envelope)
    if size > limit:
        raise too_large(envelope, size, limit, "KAFKA_MAX_MESSAGE_BYTES")
    return envelope


class AsyncRequestMiddleware:
    """Defer requests that carry `X-Async-Request` to a worker; pass the rest through."""

    def __init__(self, app: ASGIApp, *, settings: Settings | None = None,
                 store: OperationStore | None = None,
                 dispatcher: Dispatcher | None = None) -> None:
        self.app = app
        self._settings = settings
        self._store = store
        self.dispatcher = dispatcher or Dispatcher(settings=settings)
        problem = installed_error()
        if problem:
            logger.error("async_request.E003: %s", problem)

    @property
    def settings(self) -> Settings:
        return self._settings or get_settings()

    @property
    def store(self) -> OperationStore:
        return self._store or get_store()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._defers(scope):
            await self.app(scope, receive, send)
            return
        try:
            task_id = await self._accept(scope, receive)
        except AsyncRequestError as exc:
            await send_problem(send, problem_for(exc))
            return
        if task_id is None:
            return  # the client left before sending its body: nothing was queued
        location = f"{self.settings.results_path}{task_id}/"
        prefs = preferences(scope)
        wait = wait_seconds(prefs, self.settings.max_wait_sec)
        if wait is not None:
            present, ended = await wait_outcome(self.store, task_id, wait, receive)
            if not present:
                return  # the client left: the operation goes on, nobody to answer
            if ended is not None:
                status, own, body = outcome_answer(
                    ended, applied_value(prefs, wait, deferred=False), location)
                await send({"type": "http.response.start", "status": status, "headers": own})
                await send({"type": "http.response.body", "body": body})
                return
        applied = None
        if wait is not None or "respond-async" in prefs:
            applied = b"respond-async" if wait is None else applied_value(prefs, wait,
                                                                           deferred=True)
        answer, headers = accepted(task_id, self.settings, applied=applied)
        await send_json(send, 202, answer, headers=headers)

    def _defers(self, scope: Scope) -> bool:
        if scope["type"] != "http" or INTERNAL_SCOPE_KEY in scope:
            return False
        value = headers_from_scope(scope).get(ASYNC_HEADER)
        wanted = async_mode(value) != "sync" or "respond-async" in preferences(scope)
        return wanted and not scope["path"].startswith(self.settings.results_path)

    async def _accept(self, scope: Scope, receive: Receive) -> str | None:
        """Capture, record and dispatch the request; its task id, or None if the client left."""
        settings = self.settings
        headers = headers_from_scope(scope)
        check_method(scope["method"])
        owner = resolve_owner(headers, settings)
        check_header_size(scope, settings.max_header_bytes)
        check_declared_length(headers, settings.max_body_bytes)
        body = await read_body(receive, settings.max_body_bytes)
        if body is None:
            return None
        task_id = str(uuid.uuid4())
        envelope = capture(scope, body, task_id=task_id, owner=str(owner), settings=settings)
        await queue(envelope, store=self.store, dispatcher=self.dispatcher, settings=settings,
                    body_aside=body if envelope.body_ref else None)
        return task_id
