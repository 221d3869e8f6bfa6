"""Celery task events sent in batches: one Kafka record per `FLUSH_SEC`, not one per event.

A worker with task events on (Flower's received/started/succeeded/failed) already buffers them
(`EventDispatcher(buffer_group=['task'])`) but flushes the buffer on the next turn of its event
loop, and under load a turn carries one or two events: three publishes per task, each a pass
through kombu's producer and our Kafka transport (10 % of the worker's samples in a profile,
and three broker records per request). `BatchedTaskEvents`, a consumer bootstep that
`celery_config.configure_celery` adds, flushes at most once per `FLUSH_SEC` instead, or as soon
as the dispatcher's `buffer_limit` (24) events wait; the events and their order are the same,
they reach Flower up to `FLUSH_SEC` later. What is still buffered when the worker stops is
flushed before the dispatcher closes.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps

logger = logging.getLogger(__name__)

#: The longest a task event waits in the worker before it is published.
FLUSH_SEC = 0.1


class BatchedTaskEvents(bootsteps.StartStopStep):  # type: ignore[misc]
    """Consumer bootstep: the task-event buffer is flushed every FLUSH_SEC, not every turn."""

    requires = ("celery.worker.consumer.events:Events",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        self._due = False
        super().__init__(c, **kwargs)

    def start(self, c: Any) -> None:
        """Take over the dispatcher's "an event was buffered" callback (set with a hub only)."""
        dispatcher = c.event_dispatcher
        if c.hub is None or dispatcher is None or dispatcher.on_send_buffered is None:
            return
        self._due = False

        def flush() -> None:
            self._due = False
            c._flush_events()

        def buffered() -> None:
            if not self._due:
                self._due = True
                c.hub.call_later(FLUSH_SEC, flush)

        dispatcher.on_send_buffered = buffered

    def shutdown(self, c: Any) -> None:
        """Publish what is still buffered (this step stops before the dispatcher closes)."""
        if c.event_dispatcher is not None:
            c.event_dispatcher.flush()
