"""Extra Celery tasks of the demo, loaded by the worker through `KAFKA_TASKS = ["demo.tasks"]`."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from demo.models import Report

logger = logging.getLogger(__name__)


@shared_task(name="demo.cleanup_reports")
def cleanup_reports(days: int = 7) -> int:
    """Delete ready reports finished more than `days` days ago; return how many went."""
    cutoff = timezone.now() - timedelta(days=days)
    deleted, _ = Report.objects.filter(status=Report.Status.READY, finished_at__lt=cutoff).delete()
    logger.info("deleted %d reports finished before %s", deleted, cutoff.isoformat())
    return deleted
