"""`manage.py create_demo_user alice --password secret`: create or update a login for the demo."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    """Create the user, or reset the password of an existing one, so reruns are harmless."""

    help = "Create or update a demo user with the given password."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--password", required=True)
        parser.add_argument("--email", default="")
        parser.add_argument("--superuser", action="store_true", help="also allow the Django admin")

    def handle(self, *args: Any, **options: Any) -> None:
        username: str = options["username"].strip()
        if not username:
            raise CommandError("username must not be empty")
        user, created = get_user_model().objects.get_or_create(username=username)
        user.set_password(options["password"])
        user.is_active = True
        if options["email"]:
            user.email = options["email"]
        if options["superuser"]:
            user.is_staff = user.is_superuser = True
        user.save()
        verb = "created" if created else "updated"
        self.stdout.write(self.style.SUCCESS(f"{verb} user {username!r} (id {user.pk})"))
