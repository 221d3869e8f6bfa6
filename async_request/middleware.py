"""`AsyncRequestMiddleware`: pure ASGI; answers 202 for `X-Async-Request` requests and queues them.

Order of work for a deferred request, and why:
1. owner from the token or channel (401/400 first: nothing is read or stored for a stranger);
2. the whole body, with a size limit (413 before anything is queued);
3. the registry entry in Redis (owner known before the task exists; Redis down → 503);
4. the Celery task, published to Kafka and acknowledged by the broker (broker down → 503 and the
   registry entry is removed, so nothing is left half-done);
5. only then the 202 with the task id (and a Location header naming the results URL).

Put it inside CORS and other edge middleware, so its answers get the same headers as the app's.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from celery import Celery

from async_request.auth import async_mode, headers_from_scope, resolve_owner
from async_request.celery_config import TASK_NAME, get_celery_app
from async_request.envelope import RequestEnvelope
from async_request.exceptions import (
    AuthenticationError,
    InvalidChannelError,
    RegistryUnavailableError,
)
from async_request.problems import send_json, send_problem
from async_request.registry import Registry, get_registry
from async_request.settings import Settings, get_settings
from async_request.types import INTERNAL_SCOPE_KEY, ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)

#: Methods that may be deferred; anything else (CONNECT, TRACE, made-up verbs) gets 405.
DEFERRABLE_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class BodyTooLargeError(Exception):
    """The request body is above ASYNC_REQUEST_MAX_BODY_BYTES."""


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
            raise BodyTooLargeError
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class AsyncRequestMiddleware:
    """Defer requests that carry `X-Async-Request` to a Celery worker; pass the rest through."""

    def __init__(self, app: ASGIApp, *, settings: Settings | None = None,
                 celery_app: Celery | None = None, registry: Registry | None = None) -> None:
        self.app = app
        self._settings = settings
        self._celery_app = celery_app
        self._registry = registry
        self._publish_errors: tuple[type[BaseException], ...] | None = None

    @property
    def settings(self) -> Settings:
        return self._settings or get_settings()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or INTERNAL_SCOPE_KEY in scope:
            await self.app(scope, receive, send)
            return
        headers = headers_from_scope(scope)
        if async_mode(headers.get("x-async-request")) == "sync" or scope["path"].startswith(
            self.settings.results_path
        ):
            await self.app(scope, receive, send)
            return
        await self._defer(scope, receive, send, headers)

    async def _defer(self, scope: Scope, receive: Receive, send: Send,
                     headers: dict[str, str]) -> None:
        settings = self.settings
        method = scope["method"].upper()
        if method not in DEFERRABLE_METHODS:
            await send_problem(send, 405, f"method {method} cannot be run in the background")
            return
        try:
            owner = resolve_owner(headers, settings)
        except InvalidChannelError as exc:
            await send_problem(send, 400, str(exc))
            return
        except AuthenticationError as exc:
            await send_problem(send, 401, str(exc),
                               headers=[(b"www-authenticate", b"Bearer")])
            return
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await send_problem(send, 400, f"Content-Length {declared!r} is not a number")
                return
            if int(declared) > settings.max_body_bytes:
                await send_problem(send, 413, self._too_large(settings))
                return
        try:
            body = await read_body(receive, settings.max_body_bytes)
        except BodyTooLargeError:
            await send_problem(send, 413, self._too_large(settings))
            return
        if body is None:
            return  # the client left before sending its body: nothing to queue
        task_id = str(uuid.uuid4())
        aside = len(body) > settings.inline_body_bytes
        envelope = RequestEnvelope.from_scope(
            scope, body, task_id=task_id, owner=str(owner), secret=settings.secret_key,
            body_ref=task_id if aside else None,
        )
        registry = self._registry or get_registry()
        try:
            await registry.accept(task_id, str(owner), scope["path"], method,
                                  body if aside else None)
        except RegistryUnavailableError:
            logger.error("task store unavailable; refusing async request %s %s", method,
                         scope["path"])
            await send_problem(send, 503, "the task store (Redis) is unavailable; "
                                          "nothing was queued, retry later",
                               headers=[(b"retry-after", b"5")])
            return
        try:
            await self._publish(envelope)
        except self._errors() as exc:
            logger.error("could not queue task %s: %r", task_id, exc)
            await registry.forget(task_id)
            await send_problem(send, 503, "the message broker is unavailable; nothing was "
                                          "queued, retry later",
                               headers=[(b"retry-after", b"5")])
            return
        location = f"{settings.results_path}{task_id}/"
        await send_json(send, 202, {"data": None, "meta": {"async_request_id": task_id}},
                        headers=[(b"location", location.encode())])

    @staticmethod
    def _too_large(settings: Settings) -> str:
        return (f"the request body is larger than {settings.max_body_bytes} bytes "
                "(ASYNC_REQUEST_MAX_BODY_BYTES)")

    def _app(self) -> Celery:
        return self._celery_app or get_celery_app()

    def _errors(self) -> tuple[type[BaseException], ...]:
        if self._publish_errors is None:
            from kombu.exceptions import KombuError

            conn = self._app().connection_for_write()
            self._publish_errors = (
                KombuError, OSError, TimeoutError,
                *conn.connection_errors, *conn.channel_errors,
            )
        return self._publish_errors

    async def _publish(self, envelope: RequestEnvelope) -> None:
        """Send the task and return once the broker acknowledged it (runs in a thread)."""
        app = self._app()
        self._errors()
        kwargs: dict[str, Any] = {
            "args": [envelope.to_dict()],
            "task_id": envelope.task_id,
            "retry": True,
            "retry_policy": {"max_retries": 1, "interval_start": 0, "interval_step": 0.2,
                             "interval_max": 0.2},
        }
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: app.send_task(TASK_NAME, **kwargs)
        )
