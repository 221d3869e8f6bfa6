"""`manage.py kafka_consumer_single`: one Celery worker consuming KAFKA_TOPIC_ASYNC_BG."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from async_request.celery_config import get_celery_app
from async_request.settings import get_settings
from async_request.workers import run_single_worker


class Command(BaseCommand):
    help = "Run one worker that replays background requests (retires after its lifetime)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--pool", default="prefork", choices=["prefork", "threads", "solo"])
        parser.add_argument("--concurrency", type=int, default=None)
        parser.add_argument("--hostname", default=None,
                            help="worker node name (default: celery@host)")

    def handle(self, *args: Any, **options: Any) -> None:
        argv = ["-P", options["pool"]]
        if options["concurrency"]:
            argv += ["-c", str(options["concurrency"])]
        if options["hostname"]:
            argv += ["-n", options["hostname"]]
        run_single_worker(get_celery_app(), get_settings(), argv)
