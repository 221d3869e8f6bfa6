"""The Celery task that replays a queued request. Thin: the work lives in `execution.py`."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from async_request.celery_config import TASK_NAME
from async_request.execution import execute


# ignore_result: the outcome is in the operation store; Celery stores and logs only a summary.
@shared_task(bind=True, name=TASK_NAME, acks_late=True, reject_on_worker_lost=True,
             ignore_result=True)
def replay_request(self: Task, envelope: dict[str, Any]) -> dict[str, Any]:
    """Replay the captured request `envelope`; return {task_id, state, status} (no body)."""
    return execute(envelope, task_id=str(self.request.id), worker=str(self.request.hostname))
