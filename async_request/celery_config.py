"""Celery configuration for async-request, built from `Settings`.

`create_celery_app()` gives a ready app (the sample's `celery_app.py` is one line of it);
`configure_celery(app)` applies the same configuration to a project's existing app;
`get_celery_app()` is what the middleware and the results endpoint use: the app named by
ASYNC_REQUEST_CELERY_APP, else one built from the settings.

Choices, and why:
- `task_acks_late` + `task_reject_on_worker_lost`: a task is acknowledged only after it ran, so
  a worker killed mid-replay leaves it to be redelivered (the 202 promise); the registry's claim
  keeps a redelivered request from running twice.
- `worker_prefetch_multiplier = 1`: replays are heavy; a worker holds only what it runs.
- The replay task's outcome lives in the operation store (`store.py`), so the task ignores its
  result (no result-backend write per replay, no result subscription per publish); the result
  backend stays configured for a project's own tasks (KAFKA_TASKS), and
  `result_backend_always_retry` makes a Redis outage delay their results, never drop them.
- Task events stay on: Flower's received/started/succeeded/failed come from them (the worker
  sends them, batched per loop turn). `task-sent` is off: it is one more Kafka record per
  request, published by the web app on the path to the 202, and Flower needs it only to list a
  task before a worker received it (the operation store already answers "pending").
- JSON only: messages are readable by any Kafka tool, and no pickle.
- `task_queues` holds every lane's queue (`lanes.py`), so a worker started without `-Q` or
  `--lanes` serves every lane (a lane nobody serves would leave its 202s unanswered); the
  dispatcher names the lane's queue on each publish. A project's own `task_queues` are kept.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from celery import Celery
from kombu.entity import Exchange, Queue

from async_request._dotted import import_object
from async_request.exceptions import ConfigurationError
from async_request.lanes import lane_queues
from async_request.settings import Settings, get_settings
from async_request.transport import TRANSPORT_PATH

TASK_NAME = "async_request.replay_request"
KAFKA_TRANSPORT = TRANSPORT_PATH


def transport_options(settings: Settings) -> dict[str, Any]:
    """The options our Kafka transport takes, from the KAFKA_* settings."""
    return {
        "group_id": settings.kafka_group_id,
        "num_partitions": settings.kafka_topic_partitions,
        "auto_offset_reset": settings.kafka_auto_offset_reset,
        "enable_auto_commit": settings.kafka_enable_auto_commit,
        "auto_commit_interval_ms": settings.kafka_auto_commit_interval_ms,
        "leave_group_on_shutdown": settings.kafka_leave_group_on_shutdown,
        "kafka_config": dict(settings.kafka_config),
        "publish_timeout": settings.kafka_publish_timeout_sec,
        "max_message_bytes": settings.kafka_max_message_bytes,
    }


def _queue(name: str) -> Queue:
    """A lane's queue as Celery makes its default one: a direct exchange of the same name."""
    return Queue(name, Exchange(name, type="direct"), routing_key=name)  # type: ignore[no-untyped-call]


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery configuration dict for `settings`."""
    config: dict[str, Any] = {
        "broker_url": settings.broker_url,
        "broker_connection_retry_on_startup": True,
        "result_backend": settings.redis_url,
        "result_expires": settings.result_expires_sec,
        "result_backend_always_retry": True,
        "result_backend_max_retries": 120,
        "result_backend_max_sleep_between_retries_ms": 5000,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "task_send_sent_event": False,
        "worker_prefetch_multiplier": 1,
        "worker_send_task_events": True,
        "task_default_queue": settings.kafka_topic_async_bg,
        "task_queues": [_queue(name) for name in lane_queues(settings)],
        "task_routes": {TASK_NAME: {"queue": settings.kafka_topic_async_bg}},
        "imports": ("async_request.tasks", *settings.kafka_tasks),
        "worker_hijack_root_logger": False,
        "broker_transport_options": transport_options(settings),
    }
    if settings.broker_url.startswith("kafka://"):
        config["broker_transport"] = KAFKA_TRANSPORT
    return config


def configure_celery(app: Celery, settings: Settings | None = None) -> Celery:
    """Apply the async-request configuration to an existing Celery app and return it.

    Also connects the start-up checks of a worker (`checks.worker_start_checks`), which run
    whether or not `async_request` is an installed app, and adds the bootstep that batches
    task events (`task_events.BatchedTaskEvents`).
    """
    from celery.signals import worker_init

    from async_request.checks import worker_start_checks
    from async_request.task_events import BatchedTaskEvents

    config = celery_config(settings or get_settings())
    ours = {queue.name for queue in config["task_queues"]}
    theirs = [queue for queue in app.conf.task_queues or ()
              if isinstance(queue, Queue) and queue.name not in ours]
    config["task_queues"] = [*theirs, *config["task_queues"]]
    app.conf.update(config)
    app.steps["consumer"].add(BatchedTaskEvents)
    worker_init.connect(worker_start_checks, dispatch_uid="async_request.checks", weak=False)
    return app


def create_celery_app(main: str = "async_request", settings: Settings | None = None) -> Celery:
    """A new Celery app configured from `settings` (default: the process settings)."""
    return configure_celery(Celery(main), settings)


@lru_cache(maxsize=1)
def get_celery_app() -> Celery:
    """The Celery app that carries our tasks (ASYNC_REQUEST_CELERY_APP, else built)."""
    settings = get_settings()
    if settings.celery_app:
        app = import_object(settings.celery_app, "app", "ASYNC_REQUEST_CELERY_APP")
        if not isinstance(app, Celery):
            raise ConfigurationError(
                f"setting ASYNC_REQUEST_CELERY_APP = {settings.celery_app!r} is not a Celery app"
            )
        return app
    return create_celery_app()
