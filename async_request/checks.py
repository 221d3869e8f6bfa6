"""Start-up checks: what a project can get wrong, said where Django users look for it.

`check_settings` is registered as a Django system check (`manage.py check`, and every management
command) in `AppConfig.ready()`, which also logs its messages once when the web app or a worker
starts.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.checks import CheckMessage, Warning

from async_request.settings import Settings, get_settings

logger = logging.getLogger(__name__)

#: Shorter secrets can be brute-forced offline from one sealed message or one signed token.
MIN_SECRET_LENGTH = 32
#: Parts of the well-known keys of templates and samples (Django's startproject, ours, tutorials).
KNOWN_DEFAULT_MARKERS = ("django-insecure-", "dev-only-insecure", "change-me", "changeme",
                         "secret-key", "your-secret", "insecure")


def weak_secret(secret: str) -> str | None:
    """Why `secret` is not fit to seal requests and verify tokens, or None when it is."""
    if not secret:
        return "it is empty"
    lowered = secret.lower()
    for marker in KNOWN_DEFAULT_MARKERS:
        if marker in lowered:
            return f"it is a known default (contains {marker!r})"
    if len(secret) < MIN_SECRET_LENGTH:
        return f"it is {len(secret)} characters long; use at least {MIN_SECRET_LENGTH}"
    return None


def secret_warnings(settings: Settings) -> list[CheckMessage]:
    """W001: the sealing key is weak; W002: the JWT key is weak (when it is another key)."""
    found: list[CheckMessage] = []
    reason = weak_secret(settings.secret_key)
    if reason:
        found.append(Warning(
            f"ASYNC_REQUEST_SECRET_KEY (default: SECRET_KEY) is weak: {reason}",
            hint="it seals queued requests and stored results, and by default verifies JWTs: "
                 "set a random value of 32+ characters (python -c 'import secrets; "
                 "print(secrets.token_urlsafe(48))')",
            id="async_request.W001"))
    if settings.jwt_secret != settings.secret_key:
        reason = weak_secret(settings.jwt_secret)
        if reason:
            found.append(Warning(f"ASYNC_REQUEST_JWT_SECRET is weak: {reason}",
                                 hint="anyone who guesses it can mint tokens for any user",
                                 id="async_request.W002"))
    return found


def check_settings(app_configs: Any = None, **_: Any) -> list[CheckMessage]:
    """The Django system check of async-request's settings."""
    return secret_warnings(get_settings())


def log_start_up_warnings() -> None:
    """Log every check message once, for processes that run no management command."""
    for message in check_settings():
        logger.warning("%s: %s (%s)", message.id, message.msg, message.hint)
