"""App config of the demo app."""

from __future__ import annotations

from django.apps import AppConfig


class DemoConfig(AppConfig):
    """Orders, reports and JWT helpers used by the sample's Django and FastAPI routes."""

    name = "demo"
    default_auto_field = "django.db.models.BigAutoField"
