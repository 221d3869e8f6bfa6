"""Celery signal receivers: a finished replay notifies its owner. Connected in `connect()`."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import (
    task_failure,
    task_revoked,
    task_success,
    worker_init,
    worker_process_init,
)

from async_request.auth import Owner
from async_request.celery_config import TASK_NAME
from async_request.notifications import publish

logger = logging.getLogger(__name__)


def _owner_from_args(args: Any) -> Owner | None:
    try:
        return Owner.parse(args[0]["owner"])
    except (TypeError, KeyError, IndexError, ValueError):
        return None


def on_task_success(sender: Any = None, result: Any = None, **_: Any) -> None:
    """Notify the owner that a replay completed (whatever HTTP status the route gave)."""
    if getattr(sender, "name", None) != TASK_NAME:
        return
    owner = _owner_from_args(sender.request.args)
    if owner is not None:
        publish(owner, str(sender.request.id), "completed")


def on_task_failure(sender: Any = None, task_id: str | None = None, args: Any = None,
                    **_: Any) -> None:
    """Notify the owner that a replay failed in the worker (exception, timeout)."""
    if getattr(sender, "name", None) != TASK_NAME:
        return
    owner = _owner_from_args(args)
    if owner is not None and task_id:
        publish(owner, task_id, "failed")


def on_task_revoked(sender: Any = None, request: Any = None, **_: Any) -> None:
    """Notify the owner that a queued replay was revoked."""
    if request is None or getattr(request, "task", None) != TASK_NAME:
        return
    owner = _owner_from_args(getattr(request, "args", None))
    if owner is not None:
        publish(owner, str(request.id), "failed")


def preload_asgi_app(**_: Any) -> None:
    """Import the replay target when a worker (or pool process) starts, not on its first task."""
    from async_request.execution import load_asgi_app
    from async_request.settings import get_settings

    path = get_settings().asgi_app
    if path:
        load_asgi_app(path)


def connect() -> None:
    """Connect the receivers (idempotent thanks to dispatch_uid)."""
    task_success.connect(on_task_success, dispatch_uid="async_request.task_success",
                         weak=False)
    task_failure.connect(on_task_failure, dispatch_uid="async_request.task_failure",
                         weak=False)
    task_revoked.connect(on_task_revoked, dispatch_uid="async_request.task_revoked",
                         weak=False)
    worker_init.connect(preload_asgi_app, dispatch_uid="async_request.preload", weak=False)
    worker_process_init.connect(preload_asgi_app, dispatch_uid="async_request.preload_child",
                                weak=False)
