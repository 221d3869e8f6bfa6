"""`manage.py kafka_consumer_single [--lanes a,b]`: one Celery worker consuming the lanes'
queues (default: every lane's; KAFKA_TOPIC_ASYNC_BG is the lane `default`)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from async_request.exceptions import ConfigurationError
from async_request.workers import LANES_HELP, POOLS, run_worker


class Command(BaseCommand):
    help = "Run one worker that replays background requests (retires after its lifetime)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--pool", default="prefork", choices=POOLS)
        parser.add_argument("--concurrency", type=int, default=None)
        parser.add_argument("--hostname", default=None,
                            help="worker node name (default: celery@host)")
        parser.add_argument("--lanes", default=None, help=LANES_HELP)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            run_worker(options["pool"], options["concurrency"], options["hostname"],
                       options["lanes"])
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from exc
