"""`manage.py kafka_consumer_single`: one Celery worker consuming KAFKA_TOPIC_ASYNC_BG."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from async_request.workers import POOLS, run_worker


class Command(BaseCommand):
    help = "Run one worker that replays background requests (retires after its lifetime)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--pool", default="prefork", choices=POOLS)
        parser.add_argument("--concurrency", type=int, default=None)
        parser.add_argument("--hostname", default=None,
                            help="worker node name (default: celery@host)")

    def handle(self, *args: Any, **options: Any) -> None:
        run_worker(options["pool"], options["concurrency"], options["hostname"])
