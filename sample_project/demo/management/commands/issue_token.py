"""`manage.py issue_token alice`: print a bearer JWT for a user, for curl and WebSocket demos."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from demo.auth import issue_token


class Command(BaseCommand):
    """Print only the token, so `TOKEN=$(python manage.py issue_token alice)` works."""

    help = "Print a JWT for the given user."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--ttl", type=int, default=None, help="lifetime in seconds")

    def handle(self, *args: Any, **options: Any) -> None:
        ttl: int | None = options["ttl"]
        if ttl is not None and ttl <= 0:
            raise CommandError(f"--ttl must be positive, got {ttl}")
        try:
            user = get_user_model().objects.get(username=options["username"], is_active=True)
        except get_user_model().DoesNotExist as exc:
            raise CommandError(
                f"no active user {options['username']!r}; run create_demo_user first"
            ) from exc
        self.stdout.write(issue_token(user, ttl))
