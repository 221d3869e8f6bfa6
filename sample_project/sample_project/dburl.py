"""Turn a `DATABASE_URL` into a Django `DATABASES` entry without an extra dependency.

Accepted form: `postgresql://user:password@host:port/name?option=value` (scheme `postgres`
also works). Query options go to `OPTIONS` as strings (e.g. `sslmode=require`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_ENGINES = {
    "postgres": "django.db.backends.postgresql",
    "postgresql": "django.db.backends.postgresql",
}


def parse_database_url(url: str) -> dict[str, Any]:
    """Return a Django database dict for `url`; raise ImproperlyConfigured if unusable."""
    parts = urlsplit(url)
    engine = _ENGINES.get(parts.scheme)
    if engine is None:
        raise ImproperlyConfigured(
            f"DATABASE_URL: unsupported scheme {parts.scheme!r}; use postgresql://"
        )
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ImproperlyConfigured("DATABASE_URL: missing database name after the host")
    return {
        "ENGINE": engine,
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "OPTIONS": dict(parse_qsl(parts.query)),
    }
