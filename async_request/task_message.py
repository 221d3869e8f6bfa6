"""The replay task's message, built once per request the way Celery's `send_task` builds it.

Why not `send_task`: for this one task, whose options never change, Celery's general path
(routing, the producer pool, kombu's entity copies, declare cache and retry wrappers) costs
about 0.3 ms of the web process's CPU per request, five times the produce itself, and it
blocks, so it ran in an executor thread: one more thread hop before the 202 (bench/pipeline.py,
the web server's profile in docs/benchmarks.md). Here Celery still writes the task's headers,
properties and body (`amqp.create_task_message`) and kombu's channel frames them
(`prepare_message`, the body's encoding, the delivery info); only the parts of `send_task`
that resolve options (router, task options, producer) are done once per lane and checked.

`ReplayMessages.fits` and `route()` say whether the app's settings are the ones this message
is built for (task protocol 2, the JSON serializer, no compression, no task-sent events,
persistent delivery, a lane that routes to its own direct queue and nothing else); when not,
the caller uses `send_task`. tests/integration/test_dispatch.py reads both messages back from
the broker and compares them field by field, so a Celery or kombu upgrade that changes either
shows up there.

Celery's `before_task_publish` and `after_task_publish` signals are sent as `send_task_message`
sends them (receivers such as tracing may add headers), so a project that listens to them
sees these publishes too.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from celery import Celery
from celery.signals import after_task_publish, before_task_publish
from kombu.entity import Queue
from kombu.serialization import dumps

from async_request.celery_config import TASK_NAME


@dataclass(frozen=True)
class ReplayMessage:
    """One task message ready for the transport's channel, and what the signals carry."""

    queue: str
    message: dict[str, Any]
    body: tuple[Any, ...]
    headers: dict[str, Any]

    def published(self) -> None:
        """Send `after_task_publish`, as Celery does once the broker has the message."""
        after_task_publish.send(sender=TASK_NAME, body=self.body, headers=self.headers,
                                exchange="", routing_key=self.queue)


class ReplayMessages:
    """Builds the replay task's messages for `app` (see the module docstring)."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._routes: dict[str, Queue | None] = {}

    @cached_property
    def fits(self) -> bool:
        """Whether the app's task settings are those the messages are built for."""
        conf = self.app.conf
        options = self._task_options()
        return (conf.task_protocol == 2 and conf.task_serializer == "json"
                and options.pop("serializer", "json") == "json" and not options
                and not conf.task_compression and not conf.task_send_sent_event
                and conf.task_default_delivery_mode in (2, "persistent"))

    def _task_options(self) -> dict[str, Any]:
        """What the replay task, when registered here, adds to each `send_task`: its
        serializer (the app's) and nothing else unless a project gives it a time limit, a
        priority, ..."""
        task = self.app._tasks.get(TASK_NAME)  # as send_task looks: without finalizing
        options = getattr(task, "_get_exec_options", None)
        return {key: value for key, value in (options() if options else {}).items()
                if value is not None}

    def route(self, queue: str) -> Queue | None:
        """The Queue that `send_task(queue=queue)` publishes to, if it is `queue`'s own direct
        queue and the router adds nothing (priority, exchange, ...); else None."""
        if queue not in self._routes:
            options = self.app.amqp.router.route({"queue": queue}, TASK_NAME, None, None, None)
            target = options.get("queue")
            plain = (set(options) == {"queue"} and isinstance(target, Queue)
                     and target.name == queue and target.exchange.type == "direct")
            self._routes[queue] = target if plain else None
        return self._routes[queue]

    def build(self, channel: Any, queue: str, task_id: str, args: list[Any], *,
              argsrepr: str, kwargsrepr: str, retry_policy: dict[str, Any]) -> ReplayMessage:
        """The message that `send_task(TASK_NAME, args=args, task_id=task_id, queue=queue,
        argsrepr=..., kwargsrepr=..., retry_policy=..., ignore_result=True)` would hand to
        `channel` (a kombu virtual channel). `route(queue)` must have answered a Queue."""
        app = self.app
        target = self._routes[queue]
        headers, properties, body, _ = app.amqp.create_task_message(
            task_id, TASK_NAME, args, {}, reply_to=app.thread_oid,
            create_sent_event=False, ignore_result=True, argsrepr=argsrepr,
            kwargsrepr=kwargsrepr)
        # send_task_message: the options left after routing become properties.
        properties.update(argsrepr=argsrepr, kwargsrepr=kwargsrepr)
        if before_task_publish.receivers:
            before_task_publish.send(
                sender=TASK_NAME, body=body, exchange="", routing_key=queue,
                declare=[target], headers=headers, properties=properties,
                retry_policy=dict(app.conf.task_publish_retry_policy or {}, **retry_policy))
        # kombu's Producer.publish, then the virtual channel's basic_publish.
        properties["delivery_mode"] = 2
        content_type, content_encoding, payload = dumps(  # type: ignore[no-untyped-call]
            body, serializer="json")
        message = channel.prepare_message(payload, 0, content_type, content_encoding, headers,
                                          properties)
        channel._inplace_augment_message(message, "", queue)
        return ReplayMessage(queue, message, body, headers)
