"""Settings of async-request: one frozen `Settings`, read from Django settings or the environment.

Every setting has a name (the Django setting and, with the `BS_` prefix, the environment variable).
Sources, first match wins:

1. the Django setting of that name (when Django settings are configured);
2. the environment variable `BS_<NAME>`;
3. the `.env` file (path in `BS_ENV_FILE`, default `.env` in the working directory), `BS_<NAME>=...`;
4. the default below.

Lists and dicts come from the environment as JSON (`BS_KAFKA_TASKS='["app.tasks"]'`); a list may
also be comma separated. Booleans accept true/false, 1/0, yes/no, on/off. A wrong value raises
`ConfigurationError` naming the setting and the value, when the settings are loaded (start-up).

| name | default | meaning |
|---|---|---|
| KAFKA_BOOTSTRAP_SERVERS | 127.0.0.1:9092 | Kafka brokers, comma separated |
| KAFKA_TOPIC_ASYNC_BG | async_request | topic (Celery queue) of replayed requests |
| KAFKA_GROUP_ID | async_request | consumer group of the workers |
| KAFKA_TOPIC_PARTITIONS | 4 | partitions of topics the transport creates |
| KAFKA_CONSUMER_LIFETIME_SEC | 0 | a worker retires after this many seconds (0: never) |
| KAFKA_CONSUMER_LIFETIME_JITTER_SEC | 0 | plus a random 0..jitter seconds |
| KAFKA_AUTO_OFFSET_RESET | earliest | earliest, latest (or smallest/largest) |
| KAFKA_ENABLE_AUTO_COMMIT | false | commit offsets in the background (see docs/transport.md) |
| KAFKA_AUTO_COMMIT_INTERVAL_MS | 1000 | how often committed offsets are sent |
| KAFKA_LEAVE_GROUP_ON_SHUTDOWN | false | true: a stopping worker sends a LeaveGroup once its group is not rebalancing (faster handover; on tansu it can wedge the group, docs/transport.md) |
| KAFKA_LOG_LEVEL | INFO | log level of the workers |
| KAFKA_TASKS | [] | modules the worker imports to register more tasks |
| KAFKA_CONFIG | {} | librdkafka options for producer and consumer (SASL, SSL, ...) |
| KAFKA_PUBLISH_TIMEOUT_SEC | 10 | how long the web app waits for the broker's ack |
| ASYNC_REQUEST_BROKER_URL | kafka://<bootstrap> | Celery broker URL (kafka:// selects our transport) |
| ASYNC_REQUEST_REDIS_URL | redis://127.0.0.1:6379/0 | results backend and task registry |
| ASYNC_REQUEST_RESULT_EXPIRES_SEC | 86400 | how long results are kept |
| ASYNC_REQUEST_ASGI_APP | "" | dotted path (module:attr) of the ASGI app the worker replays into |
| ASYNC_REQUEST_CELERY_APP | "" | dotted path of the project's Celery app; empty: built from these settings |
| ASYNC_REQUEST_MAX_BODY_BYTES | 10485760 | bigger request bodies get 413 |
| ASYNC_REQUEST_INLINE_BODY_BYTES | 524288 | bigger bodies travel in Redis beside the Kafka message |
| ASYNC_REQUEST_SECRET_KEY | Django SECRET_KEY | seals credentials inside queued requests |
| ASYNC_REQUEST_JWT_SECRET | the secret key | key that verifies Bearer JWTs |
| ASYNC_REQUEST_JWT_ALGORITHMS | ["HS256"] | accepted JWT algorithms |
| ASYNC_REQUEST_ALLOW_ANONYMOUS | true | allow `X-Async-Request: <channel>` without a token |
| ASYNC_REQUEST_REPLAY_TIMEOUT_SEC | 300 | a replay running longer fails with a timeout |
| ASYNC_REQUEST_RESULTS_PATH | /api/v1/async_background_response/ | results route prefix (never queued) |
| ASYNC_REQUEST_IDEMPOTENT_ROUTES | [] | "METHOD path-regex" of routes that deduplicate on the task id: run again after a crash |
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from async_request.exceptions import ConfigurationError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Settings:
    """All settings of async-request, validated."""

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_topic_async_bg: str = "async_request"
    kafka_group_id: str = "async_request"
    kafka_topic_partitions: int = 4
    kafka_consumer_lifetime_sec: int = 0
    kafka_consumer_lifetime_jitter_sec: int = 0
    kafka_auto_offset_reset: str = "earliest"
    kafka_enable_auto_commit: bool = False
    kafka_auto_commit_interval_ms: int = 1000
    kafka_leave_group_on_shutdown: bool = False
    kafka_log_level: str = "INFO"
    kafka_tasks: tuple[str, ...] = ()
    kafka_config: Mapping[str, Any] = field(default_factory=dict)
    kafka_publish_timeout_sec: float = 10.0
    broker_url: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    result_expires_sec: int = 86400
    asgi_app: str = ""
    celery_app: str = ""
    max_body_bytes: int = 10 * 1024 * 1024
    inline_body_bytes: int = 512 * 1024
    secret_key: str = ""
    jwt_secret: str = ""
    jwt_algorithms: tuple[str, ...] = ("HS256",)
    allow_anonymous: bool = True
    replay_timeout_sec: float = 300.0
    results_path: str = "/api/v1/async_background_response/"
    idempotent_routes: tuple[tuple[str, re.Pattern[str]], ...] = ()


def _as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value.strip()


def _non_empty(value: Any) -> str:
    text = _as_str(value)
    if not text:
        raise ValueError("must not be empty")
    return text


def _as_int(minimum: int) -> Callable[[Any], int]:
    def cast(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("expected an integer")
        number = int(value)
        if number < minimum:
            raise ValueError(f"must be >= {minimum}")
        return number

    return cast


def _as_float(value: Any) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError("must be > 0")
    return number


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("expected true/false, 1/0, yes/no or on/off")


def _as_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("[", "{")):
            value = json.loads(text)
        else:
            value = [part for part in (p.strip() for p in text.split(",")) if part]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of strings")
    return tuple(value)


def _as_dict(value: Any) -> Mapping[str, Any]:
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else {}
    if not isinstance(value, Mapping):
        raise ValueError("expected a mapping (a JSON object in the environment)")
    return dict(value)


def _one_of(*choices: str) -> Callable[[Any], str]:
    def cast(value: Any) -> str:
        text = _as_str(value).lower()
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text

    return cast


def _log_level(value: Any) -> str:
    text = _as_str(value).upper()
    if text not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return text


def _path_prefix(value: Any) -> str:
    text = _non_empty(value)
    if not text.startswith("/"):
        raise ValueError("must start with /")
    return text if text.endswith("/") else text + "/"


def _dotted(value: Any) -> str:
    text = _as_str(value)
    if text and not all(part.isidentifier() for part in text.replace(":", ".").split(".")):
        raise ValueError("expected a dotted path like 'package.module:attribute'")
    return text


def _routes(value: Any) -> tuple[tuple[str, re.Pattern[str]], ...]:
    routes = []
    for item in _as_list(value):
        method, _, pattern = item.strip().partition(" ")
        if not method.isalpha() or not pattern.strip():
            raise ValueError(f"{item!r} is not 'METHOD /path-regex'")
        try:
            routes.append((method.upper(), re.compile(pattern.strip())))
        except re.error as exc:
            raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from exc
    return tuple(routes)


# setting name -> (Settings attribute, caster)
_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "KAFKA_BOOTSTRAP_SERVERS": ("kafka_bootstrap_servers", _non_empty),
    "KAFKA_TOPIC_ASYNC_BG": ("kafka_topic_async_bg", _non_empty),
    "KAFKA_GROUP_ID": ("kafka_group_id", _non_empty),
    "KAFKA_TOPIC_PARTITIONS": ("kafka_topic_partitions", _as_int(1)),
    "KAFKA_CONSUMER_LIFETIME_SEC": ("kafka_consumer_lifetime_sec", _as_int(0)),
    "KAFKA_CONSUMER_LIFETIME_JITTER_SEC": ("kafka_consumer_lifetime_jitter_sec", _as_int(0)),
    "KAFKA_AUTO_OFFSET_RESET": (
        "kafka_auto_offset_reset",
        _one_of("earliest", "latest", "smallest", "largest"),
    ),
    "KAFKA_ENABLE_AUTO_COMMIT": ("kafka_enable_auto_commit", _as_bool),
    "KAFKA_AUTO_COMMIT_INTERVAL_MS": ("kafka_auto_commit_interval_ms", _as_int(1)),
    "KAFKA_LEAVE_GROUP_ON_SHUTDOWN": ("kafka_leave_group_on_shutdown", _as_bool),
    "KAFKA_LOG_LEVEL": ("kafka_log_level", _log_level),
    "KAFKA_TASKS": ("kafka_tasks", _as_list),
    "KAFKA_CONFIG": ("kafka_config", _as_dict),
    "KAFKA_PUBLISH_TIMEOUT_SEC": ("kafka_publish_timeout_sec", _as_float),
    "ASYNC_REQUEST_BROKER_URL": ("broker_url", _as_str),
    "ASYNC_REQUEST_REDIS_URL": ("redis_url", _non_empty),
    "ASYNC_REQUEST_RESULT_EXPIRES_SEC": ("result_expires_sec", _as_int(1)),
    "ASYNC_REQUEST_ASGI_APP": ("asgi_app", _dotted),
    "ASYNC_REQUEST_CELERY_APP": ("celery_app", _dotted),
    "ASYNC_REQUEST_MAX_BODY_BYTES": ("max_body_bytes", _as_int(1)),
    "ASYNC_REQUEST_INLINE_BODY_BYTES": ("inline_body_bytes", _as_int(1)),
    "ASYNC_REQUEST_SECRET_KEY": ("secret_key", _as_str),
    "ASYNC_REQUEST_JWT_SECRET": ("jwt_secret", _as_str),
    "ASYNC_REQUEST_JWT_ALGORITHMS": ("jwt_algorithms", _as_list),
    "ASYNC_REQUEST_ALLOW_ANONYMOUS": ("allow_anonymous", _as_bool),
    "ASYNC_REQUEST_REPLAY_TIMEOUT_SEC": ("replay_timeout_sec", _as_float),
    "ASYNC_REQUEST_RESULTS_PATH": ("results_path", _path_prefix),
    "ASYNC_REQUEST_IDEMPOTENT_ROUTES": ("idempotent_routes", _routes),
}

SETTING_NAMES: tuple[str, ...] = tuple(_FIELDS)
ENV_PREFIX = "BS_"
_MISSING = object()


def _read_env_file(environ: Mapping[str, str]) -> dict[str, str]:
    path = Path(environ.get(f"{ENV_PREFIX}ENV_FILE", ".env"))
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _django_settings() -> Any:
    try:
        from django.conf import settings as django_settings
    except ImportError:  # pragma: no cover - django is a dependency
        return None
    return django_settings if django_settings.configured else None


def load_settings(
    environ: Mapping[str, str] | None = None,
    django_settings: Any = _MISSING,
) -> Settings:
    """Read and validate every setting; raise ConfigurationError naming the bad one."""
    environ = os.environ if environ is None else environ
    django_settings = _django_settings() if django_settings is _MISSING else django_settings
    env_file = _read_env_file(environ)
    values: dict[str, Any] = {}
    for name, (attr, cast) in _FIELDS.items():
        source, raw = _lookup(name, environ, env_file, django_settings)
        if source is None:
            continue
        try:
            values[attr] = cast(raw)
        except (ValueError, TypeError, json.JSONDecodeError) as exc:
            raise ConfigurationError(f"setting {name} ({source}) = {raw!r}: {exc}") from exc
    values.setdefault("broker_url", "")
    if not values["broker_url"]:
        servers = values.get("kafka_bootstrap_servers", Settings.kafka_bootstrap_servers)
        values["broker_url"] = "kafka://" + ";".join(s.strip() for s in servers.split(","))
    if not values.get("secret_key"):
        values["secret_key"] = str(getattr(django_settings, "SECRET_KEY", "") or "")
    if not values.get("jwt_secret"):
        values["jwt_secret"] = values["secret_key"]
    if "jwt_algorithms" in values and not values["jwt_algorithms"]:
        raise ConfigurationError("setting ASYNC_REQUEST_JWT_ALGORITHMS must not be empty")
    return Settings(**values)


def _lookup(
    name: str, environ: Mapping[str, str], env_file: Mapping[str, str], django_settings: Any
) -> tuple[str | None, Any]:
    if django_settings is not None and hasattr(django_settings, name):
        return "Django settings", getattr(django_settings, name)
    env_name = ENV_PREFIX + name
    if env_name in environ:
        return f"environment {env_name}", environ[env_name]
    if env_name in env_file:
        return f".env {env_name}", env_file[env_name]
    return None, None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded once; `reset_settings()` drops the cache."""
    return load_settings()


def reset_settings(**_: Any) -> None:
    """Forget the cached settings (tests, and Django's setting_changed signal)."""
    get_settings.cache_clear()
