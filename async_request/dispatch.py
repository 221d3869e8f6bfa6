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
"""

from __future__ import annotations

import asyncio
import logging
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
from async_request.transport.errors import MessageTooLarge

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

    async def enqueue(self, envelope: RequestEnvelope, *, secret: str,
                      lane: str = DEFAULT_LANE, sealed: dict[str, Any] | None = None) -> None:
        """Publish `envelope` sealed with `secret` to `lane`; return once the broker
        acknowledged it. `sealed`: its `to_dict(secret)` when the caller has it already (the
        middleware stores the same), so it is not sealed twice.

        Raises EnqueueError when the broker did not take it.
        """
        _ = self.errors  # built here, not inside the thread: it loads the transport
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.send(envelope, secret=secret, lane=lane, sealed=sealed))

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
            logger.error("could not queue task %s: broker %s (KAFKA_BOOTSTRAP_SERVERS / "
                         "ASYNC_REQUEST_BROKER_URL): %r", envelope.task_id,
                         self.celery_app.connection_for_write().as_uri(), exc)
            raise EnqueueError(
                "the message broker is unavailable; nothing was queued, retry later") from exc


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
