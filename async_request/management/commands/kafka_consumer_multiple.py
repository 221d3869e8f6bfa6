"""`manage.py kafka_consumer_multiple --consumers-count=N [--lanes a,b]`: N supervised worker
processes (serving those lanes; default: every lane)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from async_request.exceptions import ConfigurationError
from async_request.workers import LANES_HELP, POOLS, run_workers


class Command(BaseCommand):
    help = ("Run N worker processes; replace those that retire or crash; stop all on "
            "SIGTERM/SIGINT.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--consumers-count", type=int, default=2)
        parser.add_argument("--restart-delay-sec", type=float, default=1.0)
        parser.add_argument("--pool", default="prefork", choices=POOLS)
        parser.add_argument("--concurrency", type=int, default=1)
        parser.add_argument("--lanes", default=None, help=LANES_HELP)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            run_workers(options["consumers_count"], options["pool"], options["concurrency"],
                        restart_delay=options["restart_delay_sec"], lanes=options["lanes"])
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from exc
        except ValueError as exc:
            raise CommandError(f"--consumers-count: {exc}") from exc
