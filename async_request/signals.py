"""Celery signal receivers, connected in `AppConfig.ready()` through `connect()`.

- a replay revoked before or while it ran (Flower's revoke, `celery control revoke`) ends
  `cancelled` in the store, and its recorded owner is told;
- a worker delivers due completion webhooks from its main process (`webhooks.Deliverer`);
- a worker publishes again, from its main process, operations nobody claimed in time
  (`sweep.Sweeper`);
- a worker imports the replay target when it starts, each prefork pool process starts it (runs
  its ASGI lifespan) when it starts, and every process that started it runs its lifespan
  shutdown at exit.

Completed and failed replays are recorded and notified by `execution.execute` itself.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import (
    task_revoked,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from async_request.auth import Owner
from async_request.celery_config import TASK_NAME
from async_request.execution import preload_asgi_app, start_replay_target, stop_replay_target
from async_request.notifications import logged, publish
from async_request.records import TERMINAL_STATES
from async_request.store import get_store
from async_request.sweep import start_sweeper, stop_sweeper
from async_request.webhooks import start_deliverer, stop_deliverer

logger = logging.getLogger(__name__)

REVOKED_ERROR = "revoked (Flower or celery control revoke)"


def on_task_revoked(sender: Any = None, request: Any = None, **_: Any) -> None:
    """Record a revoked replay as cancelled and tell the owner the store recorded for it."""
    if request is None or getattr(request, "task", None) != TASK_NAME:
        return
    task_id = str(request.id)
    store = get_store()
    operation = store.get(task_id)
    if operation is None or operation.state in TERMINAL_STATES:
        return  # not ours (forged or expired), or it had ended already
    ended = store.cancelled(task_id, REVOKED_ERROR,
                            logged(operation.owner, task_id, "cancelled", REVOKED_ERROR))
    publish(Owner.parse(operation.owner), task_id, "cancelled", error=REVOKED_ERROR,
            seq=ended.seq, told=ended.told)


def connect() -> None:
    """Connect the receivers (idempotent thanks to dispatch_uid)."""
    task_revoked.connect(on_task_revoked, dispatch_uid="async_request.task_revoked",
                         weak=False)
    # The main process only imports the app: a prefork pool forks from it, and what a lifespan
    # makes (pools, clients) belongs to the process and loop that made it.
    worker_init.connect(preload_asgi_app, dispatch_uid="async_request.preload", weak=False)
    worker_process_init.connect(start_replay_target, dispatch_uid="async_request.preload_child",
                                weak=False)
    worker_process_shutdown.connect(stop_replay_target, dispatch_uid="async_request.stop_child",
                                    weak=False)
    worker_shutdown.connect(stop_replay_target, dispatch_uid="async_request.stop", weak=False)
    # Completion webhooks go out from the worker's main process, whatever its pool.
    worker_ready.connect(start_deliverer, dispatch_uid="async_request.webhooks", weak=False)
    worker_shutdown.connect(stop_deliverer, dispatch_uid="async_request.webhooks_stop",
                            weak=False)
    # Operations the broker lost are published again from the store (sweep.py).
    worker_ready.connect(start_sweeper, dispatch_uid="async_request.sweep", weak=False)
    worker_shutdown.connect(stop_sweeper, dispatch_uid="async_request.sweep_stop", weak=False)
