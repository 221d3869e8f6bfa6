"""Dispatch: publish a captured request as the replay task, and return once the broker has it.

The 202 is a promise, so `Dispatcher.enqueue` returns only after the broker acknowledged the
message (our Kafka transport confirms every publish) and raises `EnqueueError` otherwise, with
nothing queued. The set of broker errors is built once, from the Celery app's connection, the
first time it is needed (that needs the broker transport loaded, not a connection). One retry
right away covers a connection the broker dropped while idle; anything longer is the client's
`Retry-After`.
"""

from __future__ import annotations

import asyncio
import logging
from functools import cached_property
from typing import Any

from celery import Celery

from async_request.celery_config import TASK_NAME, get_celery_app
from async_request.envelope import RequestEnvelope
from async_request.exceptions import EnqueueError

logger = logging.getLogger(__name__)

#: kombu's publish retry: one immediate retry, then give up (the client retries later).
RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def summary(envelope: RequestEnvelope) -> str:
    """A safe one-line description of a queued request: method, path, owner kind, task id."""
    kind = envelope.owner.partition(":")[0]
    return f"<{envelope.method} {envelope.path} for {kind} {envelope.task_id}>"


class Dispatcher:
    """Publishes envelopes through a Celery app (default: `celery_config.get_celery_app()`)."""

    def __init__(self, celery_app: Celery | None = None) -> None:
        self._celery_app = celery_app

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

    async def enqueue(self, envelope: RequestEnvelope, *, secret: str) -> None:
        """Publish `envelope` sealed with `secret`; return once the broker acknowledged it.

        Raises EnqueueError when the broker did not take it.
        """
        errors = self.errors  # built here, not inside the thread: it loads the transport
        kwargs: dict[str, Any] = {
            "args": [envelope.to_dict(secret)],
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
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: self.celery_app.send_task(TASK_NAME, **kwargs))
        except errors as exc:
            logger.error("could not queue task %s: broker %s (KAFKA_BOOTSTRAP_SERVERS / "
                         "ASYNC_REQUEST_BROKER_URL): %r", envelope.task_id,
                         self.celery_app.connection_for_write().as_uri(), exc)
            raise EnqueueError(
                "the message broker is unavailable; nothing was queued, retry later") from exc
