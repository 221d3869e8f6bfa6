"""Dispatch: publish a captured request as the replay task, and return once the broker has it.

The 202 is a promise, so `Dispatcher.enqueue` returns only after the broker acknowledged the
message (our Kafka transport confirms every publish) and raises `EnqueueError` otherwise, with
nothing queued. The set of broker errors is built once, from the Celery app's connection, the
first time it is needed (that needs the broker transport loaded, not a connection). One retry
right away covers a connection the broker dropped while idle; anything longer is the client's
`Retry-After`. Each message goes to its lane's queue (`lanes.py`; the caller names the lane,
which the operation record keeps). A message the broker can never take (above its size
limit) is not a 503: it raises `TooLargeError` (413 when the body travels in the message,
else 431), as the middleware's own size check (`check_message_size`) does before anything is
stored.

From the web process' event loop (`enqueue`), the message is built here (`task_message.py`)
and produced by our Kafka transport's channel without leaving the loop: no executor thread,
no `send_task` machinery (together ~0.45 ms before the 202 and ~0.3 ms of CPU per request).
Elsewhere (`send`, the sweep), with another broker transport, or with task settings the
built message does not cover, it goes through Celery's `send_task` in a thread, as before.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from functools import cached_property
from typing import Any

from celery import Celery

from async_request.celery_config import TASK_NAME, get_celery_app
from async_request.envelope import RequestEnvelope
from async_request.exceptions import (
    BodyTooLargeError,
    EnqueueError,
    HeadersTooLargeError,
    TooLargeError,
)
from async_request.lanes import DEFAULT_LANE, queue_name
from async_request.settings import Settings, get_settings
from async_request.task_message import ReplayMessages
from async_request.transport.errors import KafkaConnectionError, MessageTooLarge, PublishTimeout

logger = logging.getLogger(__name__)

#: kombu's publish retry: one immediate retry, then give up (the client retries later).
RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def summary(envelope: RequestEnvelope) -> str:
    """A safe one-line description of a queued request: method, path, owner kind, task id."""
    kind = envelope.owner.partition(":")[0]
    return f"<{envelope.method} {envelope.path} for {kind} {envelope.task_id}>"


class Dispatcher:
    """Publishes envelopes through a Celery app (default: `celery_config.get_celery_app()`)
    to their lane's queue (named from `settings`, default: the process settings)."""

    def __init__(self, celery_app: Celery | None = None, settings: Settings | None = None
                 ) -> None:
        self._celery_app = celery_app
        self._settings = settings
        self._loop: tuple[int, Any | None] | None = None  # (pid, channel): _loop_channel
        self._loop_lock = threading.Lock()

    @property
    def settings(self) -> Settings:
        return self._settings or get_settings()

    @cached_property
    def celery_app(self) -> Celery:
        """The Celery app that carries the replay task."""
        return self._celery_app or get_celery_app()

    @cached_property
    def errors(self) -> tuple[type[BaseException], ...]:
        """Exceptions that mean "the broker did not take the message"."""
        from kombu.exceptions import KombuError

        conn = self.celery_app.connection_for_write()
        return (KombuError, OSError, TimeoutError, *conn.connection_errors,
                *conn.channel_errors)

    @cached_property
    def messages(self) -> ReplayMessages:
        """Builds the replay task's messages for publishing from the loop."""
        return ReplayMessages(self.celery_app)

    def _loop_channel(self) -> Any | None:
        """This process' kombu channel for publishing from the loop: our Kafka transport's,
        on a connection of its own (one per process: never shared through fork), or None
        when the loop cannot publish (another transport, other settings). Blocking the first
        time in a process (the transport checks that the broker answers): a thread's job."""
        with self._loop_lock:
            if self._loop is None or self._loop[0] != os.getpid():
                channel = None
                if self.messages.fits:
                    connection = self.celery_app.connection_for_write()
                    if getattr(connection.transport, "publishes_from_loop", False):
                        channel = connection.default_channel
                self._loop = (os.getpid(), channel)
            return self._loop[1]

    async def _channel(self) -> Any | None:
        """`_loop_channel()`, opened in a thread the first time."""
        opened = self._loop
        if opened is not None and opened[0] == os.getpid():
            return opened[1]
        return await asyncio.get_running_loop().run_in_executor(None, self._loop_channel)

    async def enqueue(self, envelope: RequestEnvelope, *, secret: str,
                      lane: str = DEFAULT_LANE, sealed: dict[str, Any] | None = None) -> None:
        """Publish `envelope` sealed with `secret` to `lane`; return once the broker
        acknowledged it. `sealed`: its `to_dict(secret)` when the caller has it already (the
        middleware stores the same), so it is not sealed twice.

        Raises EnqueueError when the broker did not take it.
        """
        _ = self.errors  # built here, not inside the thread: it loads the transport
        queue = queue_name(self.settings, lane)
        try:
            channel = await self._channel()
        except self.errors:  # no broker to open it: send_task's path says so as before
            channel = None
        if channel is None or self.messages.route(queue) is None:
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: self.send(envelope, secret=secret, lane=lane, sealed=sealed))
            return
        built = self.messages.build(
            channel, queue, envelope.task_id,
            [sealed if sealed is not None else envelope.to_dict(secret)],
            argsrepr=summary(envelope), kwargsrepr="{}", retry_policy=RETRY_POLICY)
        for attempt in range(2):  # RETRY_POLICY: one retry right away
            try:
                await channel.put_async(queue, built.message)
                break
            except MessageTooLarge as exc:
                raise too_large(envelope, exc.size, exc.limit,
                                "the broker's message.max.bytes") from exc
            except self.errors as exc:
                # A timeout has waited publish_timeout already: not retried (send_task's
                # retry doubles the client's wait). A connection refused at once is.
                if attempt or isinstance(exc, PublishTimeout) or \
                        not isinstance(exc, KafkaConnectionError):
                    raise self._unavailable(envelope, exc) from exc
        built.published()

    def send(self, envelope: RequestEnvelope, *, secret: str, lane: str = DEFAULT_LANE,
             sealed: dict[str, Any] | None = None) -> None:
        """`enqueue` from synchronous code (the sweep re-publishes with it), blocking."""
        errors = self.errors
        kwargs: dict[str, Any] = {
            "args": [sealed if sealed is not None else envelope.to_dict(secret)],
            "queue": queue_name(self.settings, lane),
            # What Celery logs, its task events and Flower show instead of the arguments.
            "argsrepr": summary(envelope),
            "kwargsrepr": "{}",
            "task_id": envelope.task_id,
            "retry": True,
            "retry_policy": RETRY_POLICY,
            # The outcome lives in the operation store; no result-backend subscription per task.
            "ignore_result": True,
        }
        try:
            self.celery_app.send_task(TASK_NAME, **kwargs)
        except MessageTooLarge as exc:
            raise too_large(envelope, exc.size, exc.limit,
                            "the broker's message.max.bytes") from exc
        except errors as exc:
            raise self._unavailable(envelope, exc) from exc

    def _unavailable(self, envelope: RequestEnvelope, exc: BaseException) -> EnqueueError:
        """Log why the broker did not take `envelope`'s message; the error the caller raises."""
        logger.error("could not queue task %s: broker %s (KAFKA_BOOTSTRAP_SERVERS / "
                     "ASYNC_REQUEST_BROKER_URL): %r", envelope.task_id,
                     self.celery_app.connection_for_write().as_uri(), exc)
        return EnqueueError("the message broker is unavailable; nothing was queued, retry later")


#: What Celery and kombu add around the sealed envelope: the task message's headers (with
#: `argsrepr`, which holds the path) and properties, and the body's JSON frame; measured
#: 830-930 bytes beside an envelope path of a few characters.
_MESSAGE_OVERHEAD = 2048


def message_size(envelope: RequestEnvelope) -> int:
    """About how many bytes the task message of `envelope` takes in the broker (at least).

    kombu base64-encodes the message body, which holds the envelope's JSON."""
    return 4 * (envelope.encoded_size() + 2) // 3 + _MESSAGE_OVERHEAD + 2 * len(envelope.path)


def too_large(envelope: RequestEnvelope, size: int, limit: int, setting: str) -> TooLargeError:
    """The refusal of a request whose task message (`size` bytes) is above `limit`: 413 when
    the body travels in it, else 431 (the headers and query string are what is too large)."""
    if envelope.body:
        return BodyTooLargeError(
            f"the request body of {envelope.body_size} bytes makes a sealed message of about "
            f"{size} bytes, above the {limit} the broker takes ({setting})",
            size=size, limit=limit, setting=setting)
    return HeadersTooLargeError(
        f"the request's headers and query string make a sealed message of about {size} "
        f"bytes, above the {limit} the broker takes ({setting})",
        size=size, limit=limit, setting=setting)
