"""Django app config: wires Celery signals and settings reloads in `ready()`."""

from __future__ import annotations

from django.apps import AppConfig


class AsyncRequestConfig(AppConfig):
    """`INSTALLED_APPS += ["async_request"]`."""

    name = "async_request"
    verbose_name = "Async request"

    def ready(self) -> None:
        from django.core import checks as django_checks
        from django.core.signals import setting_changed

        from async_request import checks, signals
        from async_request.settings import get_settings, reset_settings

        signals.connect()
        setting_changed.connect(reset_settings, dispatch_uid="async_request.reset_settings")
        get_settings()  # validate at start-up: a wrong value fails here, naming the setting
        django_checks.register(checks.check_settings)
        checks.log_start_up_warnings()
