"""Settings of the async-request sample: Django + FastAPI + Channels in one ASGI app.

Environment:
- `DJANGO_SECRET_KEY`  signs sessions and the demo JWTs (dev default below; set it in prod).
- `DJANGO_DEBUG`       "1"/"0", default "1".
- `DJANGO_ALLOWED_HOSTS` comma separated, default `127.0.0.1,localhost,testserver,[::1]`.
- `DATABASE_URL`       `postgresql://user:pass@host:port/name`; unset → SQLite.
- `SQLITE_PATH`        the SQLite file when `DATABASE_URL` is unset, default `db.sqlite3` here.
- `DJANGO_CONN_MAX_AGE` seconds a database connection is kept for later requests, default 600
                       (0: a new connection per request, a PostgreSQL backend fork each time).
- `REDIS_URL`          channel layer + async-request results, default `redis://127.0.0.1:6379/0`.
- `ASYNC_REQUEST_CHANNEL_LAYER=memory`  in-memory channel layer (unit tests, one process).
- `KAFKA_BOOTSTRAP_SERVERS` (or `BS_KAFKA_BOOTSTRAP_SERVERS`), default `127.0.0.1:9092`.
- `DEMO_JWT_TTL_SEC`   lifetime of tokens from `/api/v1/auth/token/`, default 3600.

async-request reads each of its options from env `BS_<NAME>` first, then `.env`, then these
Django settings: launchers and tests override the values below with `BS_*` variables (the test
suite gives each session its own topic and group that way) without this file reading them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from sample_project.dburl import parse_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


# The built-in key is public (it is in this repository): anyone could mint tokens with it, and
# it also derives the key that seals queued requests. `make run` generates a key per checkout.
DEV_SECRET_KEY = "dev-only-insecure-key-change-me-0123456789abcdef0123456789"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", DEV_SECRET_KEY)
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
if not DEBUG and SECRET_KEY == DEV_SECRET_KEY:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is not set and DJANGO_DEBUG is off: the sample refuses to run with its "
        "built-in key, which is public; set DJANGO_SECRET_KEY to a random value "
        "(python -c 'import secrets; print(secrets.token_urlsafe(48))')")
ALLOWED_HOSTS = os.environ.get(
    "DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver,[::1]"
).split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "async_request",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "sample_project.urls"
ASGI_APPLICATION = "sample_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

_database_url = os.environ.get("DATABASE_URL", "")
DATABASES: dict[str, dict[str, Any]] = {
    "default": parse_database_url(_database_url)
    if _database_url
    else {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SQLITE_PATH") or BASE_DIR / "db.sqlite3",
    }
}
# Persistent connections: the worker replays every request through this app, and with
# CONN_MAX_AGE 0 each replay would open (on PostgreSQL: fork) a new connection and close it.
# The async ORM runs in one thread per process (sync_to_async's thread-sensitive executor), so
# this keeps one connection per web or worker process; the health check replaces a connection
# the server dropped at the start of the next request instead of failing that request.
for _database in DATABASES.values():
    _database.setdefault("CONN_MAX_AGE", int(os.environ.get("DJANGO_CONN_MAX_AGE", "600")))
    _database.setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

CHANNEL_LAYERS: dict[str, dict[str, Any]] = (
    {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    if os.environ.get("ASYNC_REQUEST_CHANNEL_LAYER") == "memory"
    else {
        "default": {
            # channels_redis' layer with a group_send of two Redis calls instead of four.
            "BACKEND": "async_request.layers.RedisChannelLayer",
            # redis-py 8 defaults socket_timeout to 5 s, the same as channels_redis's blocking
            # pop: the pop then times out now and then and drops the WebSocket. Wait longer.
            # capacity: channels_redis drops messages beyond it (default 100), counted per web
            # process, not per socket (all of a process's sockets share one Redis key). A burst
            # of 1000 operations is 3000 events (pending, running, outcome); 1000 overflowed it
            # (bench/sockets.py). Messages still expire after 60 s, so this bounds memory only.
            # max_connections: redis-py's asyncio pool (100 by default) raises instead of
            # waiting, so 1000 sockets subscribing at once failed past the 100th.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30,
                                  "max_connections": 2000}],
                       "capacity": 10_000},
        }
    }
)

# async-request (docs/design.md, "Settings").
ASYNC_REQUEST_ASGI_APP = "sample_project.asgi:application"
ASYNC_REQUEST_REDIS_URL = REDIS_URL
KAFKA_BOOTSTRAP_SERVERS = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
KAFKA_TOPIC_ASYNC_BG = "async_request"
KAFKA_GROUP_ID = "async_request"
# Order creation deduplicates on the task id (demo/api/orders.py): safe to run again after a crash.
ASYNC_REQUEST_IDEMPOTENT_ROUTES = [r"POST ^/api/v1/orders/$"]
KAFKA_TASKS = ["demo.tasks"]

DEMO_JWT_TTL_SEC = int(os.environ.get("DEMO_JWT_TTL_SEC", "3600"))

LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "INFO"},
}
