"""Settings of async-request: one frozen `Settings`, each setting declared once in it.

Every setting has a name: the Django setting of that name and, with the `BS_` prefix, the
environment variable. Sources, first match wins (the environment overrides the code, as
twelve-factor apps expect, so a settings module never has to re-read `BS_*` itself):

1. the environment variable `BS_<NAME>`;
2. the `.env` file (path in `BS_ENV_FILE`, default `.env` in the working directory), `BS_<NAME>=...`;
3. the Django setting `<NAME>` (when Django settings are configured);
4. the default.

Lists and dicts come from the environment as JSON (`BS_KAFKA_TASKS='["app.tasks"]'`); a list may
also be comma separated. Booleans accept true/false, 1/0, yes/no, on/off. A wrong value raises
`ConfigurationError` naming the setting, its source and the value, when the settings are loaded
(start-up). The table of every setting with its default is `settings_table()`, printed by
`python -m async_request.settings` and kept in docs/design.md (a test compares the two).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from async_request._casts import (
    as_bool,
    as_dict,
    as_float,
    as_int,
    as_list,
    as_redis_url,
    as_str,
    dotted,
    log_level,
    non_empty,
    non_empty_list,
    one_of,
    path_prefix,
    route_timeouts,
    routes,
)
from async_request.exceptions import ConfigurationError

ENV_PREFIX = "BS_"
#: The route (under the API prefix) of the results endpoint; ASYNC_REQUEST_RESULTS_PATH's default.
RESULTS_ROUTE = "async_background_response"


def _setting(name: str, default: Any, cast: Callable[[Any], Any], doc: str, *,
             shown: str | None = None) -> Any:
    """Declare one setting: its name, default, caster and one line of documentation."""
    metadata = {"name": name, "cast": cast, "doc": doc, "shown": shown}
    if isinstance(default, dict | list):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    """All settings of async-request, validated. Each field is the one declaration of a setting."""

    kafka_bootstrap_servers: str = _setting(
        "KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092", non_empty, "Kafka brokers, comma separated")
    kafka_topic_async_bg: str = _setting(
        "KAFKA_TOPIC_ASYNC_BG", "async_request", non_empty,
        "topic (Celery queue) of replayed requests (the original system's name)")
    kafka_group_id: str = _setting(
        "KAFKA_GROUP_ID", "async_request", non_empty, "consumer group of the workers")
    kafka_topic_partitions: int = _setting(
        "KAFKA_TOPIC_PARTITIONS", 4, as_int(1), "partitions of topics the transport creates")
    kafka_consumer_lifetime_sec: int = _setting(
        "KAFKA_CONSUMER_LIFETIME_SEC", 0, as_int(0),
        "a worker retires after this many seconds (0: never)")
    kafka_consumer_lifetime_jitter_sec: int = _setting(
        "KAFKA_CONSUMER_LIFETIME_JITTER_SEC", 0, as_int(0), "plus a random 0..jitter seconds")
    kafka_auto_offset_reset: str = _setting(
        "KAFKA_AUTO_OFFSET_RESET", "earliest",
        one_of("earliest", "latest", "smallest", "largest"),
        "earliest, latest (or smallest/largest)")
    kafka_enable_auto_commit: bool = _setting(
        "KAFKA_ENABLE_AUTO_COMMIT", False, as_bool,
        "commit offsets in the background (see docs/transport.md)")
    kafka_auto_commit_interval_ms: int = _setting(
        "KAFKA_AUTO_COMMIT_INTERVAL_MS", 1000, as_int(1), "how often committed offsets are sent")
    kafka_leave_group_on_shutdown: bool = _setting(
        "KAFKA_LEAVE_GROUP_ON_SHUTDOWN", False, as_bool,
        "true: a stopping worker sends a LeaveGroup once its group is not rebalancing (faster "
        "handover; on tansu it can wedge the group, docs/transport.md)")
    kafka_log_level: str = _setting(
        "KAFKA_LOG_LEVEL", "INFO", log_level, "log level of the workers")
    kafka_tasks: tuple[str, ...] = _setting(
        "KAFKA_TASKS", (), as_list, "modules the worker imports to register more tasks",
        shown="[]")
    kafka_config: Mapping[str, Any] = _setting(
        "KAFKA_CONFIG", {}, as_dict,
        "librdkafka options for producer and consumer (SASL, SSL, ...)")
    kafka_max_message_bytes: int = _setting(
        "KAFKA_MAX_MESSAGE_BYTES", 1_000_000, as_int(1024),
        "largest message the broker takes (the producer's message.max.bytes; Kafka's broker "
        "default is 1048588): bodies that would not fit travel in Redis, headers get 431")
    kafka_publish_timeout_sec: float = _setting(
        "KAFKA_PUBLISH_TIMEOUT_SEC", 10.0, as_float,
        "how long the web app waits for the broker's ack")
    broker_url: str = _setting(
        "ASYNC_REQUEST_BROKER_URL", "", as_str,
        "Celery broker URL (kafka:// selects our transport)", shown="kafka://<bootstrap>")
    redis_url: str = _setting(
        "ASYNC_REQUEST_REDIS_URL", "redis://127.0.0.1:6379/0", as_redis_url,
        "the operation store (owner, state, result) and Celery's result backend")
    result_expires_sec: int = _setting(
        "ASYNC_REQUEST_RESULT_EXPIRES_SEC", 86400, as_int(1),
        "how long an operation and its result are kept")
    asgi_app: str = _setting(
        "ASYNC_REQUEST_ASGI_APP", "", dotted,
        "dotted path (module:attr) of the ASGI app the worker replays into", shown='""')
    celery_app: str = _setting(
        "ASYNC_REQUEST_CELERY_APP", "", dotted,
        "dotted path of the project's Celery app; empty: built from these settings", shown='""')
    max_body_bytes: int = _setting(
        "ASYNC_REQUEST_MAX_BODY_BYTES", 10 * 1024 * 1024, as_int(1),
        "bigger request bodies get 413")
    max_header_bytes: int = _setting(
        "ASYNC_REQUEST_MAX_HEADER_BYTES", 64 * 1024, as_int(1),
        "request headers (names and values) above this size get 431")
    inline_body_bytes: int = _setting(
        "ASYNC_REQUEST_INLINE_BODY_BYTES", 512 * 1024, as_int(1),
        "bigger bodies travel in Redis beside the Kafka message")
    secret_key: str = _setting(
        "ASYNC_REQUEST_SECRET_KEY", "", as_str, "seals credentials inside queued requests",
        shown="Django SECRET_KEY")
    jwt_secret: str = _setting(
        "ASYNC_REQUEST_JWT_SECRET", "", as_str, "key that verifies Bearer JWTs",
        shown="the secret key")
    jwt_algorithms: tuple[str, ...] = _setting(
        "ASYNC_REQUEST_JWT_ALGORITHMS", ("HS256",), non_empty_list, "accepted JWT algorithms",
        shown='["HS256"]')
    allow_anonymous: bool = _setting(
        "ASYNC_REQUEST_ALLOW_ANONYMOUS", True, as_bool,
        "allow `X-Async-Request: <channel>` without a token")
    replay_timeout_sec: float = _setting(
        "ASYNC_REQUEST_REPLAY_TIMEOUT_SEC", 300.0, as_float,
        "a replay running longer fails with a timeout")
    route_timeouts: tuple[tuple[str, re.Pattern[str], float], ...] = _setting(
        "ASYNC_REQUEST_ROUTE_TIMEOUTS", (), route_timeouts,
        '"METHOD path-regex seconds" time limits of routes, first match wins; other routes '
        "have ASYNC_REQUEST_REPLAY_TIMEOUT_SEC", shown="[]")
    max_inflight_per_owner: int = _setting(
        "ASYNC_REQUEST_MAX_INFLIGHT_PER_OWNER", 100, as_int(0),
        "operations of one owner not finished yet (re-runs too); more get 429 (0: no cap)")
    max_wait_sec: int = _setting(
        "ASYNC_REQUEST_MAX_WAIT_SEC", 30, as_int(0),
        "cap of `Prefer: wait=N` (seconds the 202 waits for the outcome); 0: never wait")
    cancel_grace_sec: float = _setting(
        "ASYNC_REQUEST_CANCEL_GRACE_SEC", 5.0, as_float,
        "a running replay whose owner cancelled it has this long to stop, then it is stopped")
    callback_hosts: tuple[str, ...] = _setting(
        "ASYNC_REQUEST_CALLBACK_HOSTS", (), as_list,
        "hosts (`host`, `host:port`, `*.domain`) X-Async-Request-Callback may name; empty: off",
        shown="[]")
    webhook_secret: str = _setting(
        "ASYNC_REQUEST_WEBHOOK_SECRET", "", as_str,
        "`whsec_<base64>` key that signs completion webhooks (Standard Webhooks)")
    webhook_retry_sec: int = _setting(
        "ASYNC_REQUEST_WEBHOOK_RETRY_SEC", 3600, as_int(1),
        "a failing webhook receiver is retried (backoff to 5 min) this long after the end")
    event_log_length: int = _setting(
        "ASYNC_REQUEST_EVENT_LOG_LENGTH", 1000, as_int(10),
        "events kept per owner for clients that reconnect (about; older ones are trimmed)")
    event_log_sec: int = _setting(
        "ASYNC_REQUEST_EVENT_LOG_SEC", 3600, as_int(1),
        "an owner's event log expires this long after its last event")
    ticket_ttl_sec: int = _setting(
        "ASYNC_REQUEST_TICKET_TTL_SEC", 300, as_int(1),
        "a subscription ticket (POST .../tickets/) is accepted this long after it was issued")
    progress_interval_sec: float = _setting(
        "ASYNC_REQUEST_PROGRESS_INTERVAL_SEC", 0.5, as_float,
        "a route's progress is written and sent at most this often (the latest value wins)")
    results_path: str = _setting(
        "ASYNC_REQUEST_RESULTS_PATH", f"/api/v1/{RESULTS_ROUTE}/", path_prefix,
        "results route prefix (never queued); where you mount the results router")
    idempotent_routes: tuple[tuple[str, re.Pattern[str]], ...] = _setting(
        "ASYNC_REQUEST_IDEMPOTENT_ROUTES", (), routes,
        '"METHOD path-regex" of routes that deduplicate on the task id: run again after a crash',
        shown="[]")
    republish_after_sec: int = _setting(
        "ASYNC_REQUEST_REPUBLISH_AFTER_SEC", 30, as_int(0),
        "an accepted operation no worker claimed this long is published again (a broker that "
        "lost it); 0: off")


#: setting name -> its field, in declaration order.
_FIELDS = {f.metadata["name"]: f for f in fields(Settings)}
_MISSING = object()


def _shown_default(item: Any) -> str:
    if item.metadata["shown"] is not None:
        return str(item.metadata["shown"])
    default = item.default_factory() if item.default is MISSING else item.default
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, dict):
        return json.dumps(default)
    return str(default)


def settings_table() -> str:
    """The Markdown table of every setting: name, default, meaning."""
    rows = ["| name | default | meaning |", "|---|---|---|"]
    rows += [f"| {name} | {_shown_default(item)} | {item.metadata['doc']} |"
             for name, item in _FIELDS.items()]
    return "\n".join(rows)


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
    for name, item in _FIELDS.items():
        source, raw = _lookup(name, environ, env_file, django_settings)
        if source is None:
            continue
        try:
            values[item.name] = item.metadata["cast"](raw)
        except (ValueError, TypeError, json.JSONDecodeError) as exc:
            raise ConfigurationError(f"setting {name} ({source}) = {raw!r}: {exc}") from exc
    if not values.get("broker_url"):
        servers = values.get("kafka_bootstrap_servers", Settings.kafka_bootstrap_servers)
        # One URL with the whole list (our transport parses it): a ';' list would be kombu
        # failover alternates, and its round robin back to the first one (`kafka://h1`, a
        # scheme) loads kombu's own confluentkafka transport, seen after a broker died.
        values["broker_url"] = "kafka://" + ",".join(s.strip() for s in servers.split(","))
    if not values.get("secret_key"):
        values["secret_key"] = str(getattr(django_settings, "SECRET_KEY", "") or "")
    if not values.get("jwt_secret"):
        values["jwt_secret"] = values["secret_key"]
    return Settings(**values)


def _lookup(
    name: str, environ: Mapping[str, str], env_file: Mapping[str, str], django_settings: Any
) -> tuple[str | None, Any]:
    env_name = ENV_PREFIX + name
    if env_name in environ:
        return f"environment {env_name}", environ[env_name]
    if env_name in env_file:
        return f".env {env_name}", env_file[env_name]
    if django_settings is not None and hasattr(django_settings, name):
        return "Django settings", getattr(django_settings, name)
    return None, None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded once; `reset_settings()` drops the cache."""
    return load_settings()


def reset_settings(**_: Any) -> None:
    """Forget the cached settings (tests, and Django's setting_changed signal)."""
    get_settings.cache_clear()


if __name__ == "__main__":  # python -m async_request.settings
    print(settings_table())
