"""Start-up checks: what a project can get wrong, said where Django users look for it.

`check_settings` is registered as a Django system check (`manage.py check`, and every management
command) in `AppConfig.ready()`, which also logs the cheap ones (secrets, channel layer) when any
process starts; a worker runs all of them when it starts (`worker_start_checks`, connected by
`celery_config.configure_celery`) and refuses to start with a replay target that does not
import, or with a `-Q` queue that looks like a lane's and is none; it logs the lanes it
serves. The web app says at start when `async_request` is not an installed app.
"""

from __future__ import annotations

import logging
import socket
from typing import Any
from urllib.parse import urlsplit

from django.core.checks import CheckMessage, Error, Warning

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


LAYER_HINT = "see README's settings snippet (async_request.layers.RedisChannelLayer)"


def channel_layer_errors() -> list[CheckMessage]:
    """E001: no or a broken CHANNEL_LAYERS: the WebSocket cannot subscribe anyone."""
    from channels.exceptions import InvalidChannelLayerError
    from channels.layers import get_channel_layer

    try:
        layer = get_channel_layer()
    except (InvalidChannelLayerError, ImportError, TypeError, ValueError) as exc:
        return [Error(f"CHANNEL_LAYERS is broken: {exc}", id="async_request.E001",
                      hint=LAYER_HINT)]
    if layer is None:
        return [Error("CHANNEL_LAYERS is not set: WebSockets cannot hear about operations",
                      id="async_request.E001",
                      hint=LAYER_HINT)]
    return []


def replay_target_errors(settings: Settings) -> list[CheckMessage]:
    """E002: ASYNC_REQUEST_ASGI_APP is empty or does not import: every replay would fail."""
    from async_request.exceptions import ConfigurationError
    from async_request.execution import load_asgi_app

    try:
        load_asgi_app(settings.asgi_app)
    except ConfigurationError as exc:
        return [Error(str(exc), id="async_request.E002",
                      hint="the worker replays requests into this ASGI app, e.g. "
                           "'myproject.asgi:application'")]
    return []


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def reachability_warnings(settings: Settings) -> list[CheckMessage]:
    """W003: Redis unreachable; W004: no Kafka broker answers (each names the URL and setting)."""
    found: list[CheckMessage] = []
    redis = urlsplit(settings.redis_url)
    if redis.scheme in ("redis", "rediss") and not _answers(redis.hostname or "127.0.0.1",
                                                            redis.port or 6379):
        found.append(Warning(
            f"Redis at {redis.hostname}:{redis.port or 6379} (ASYNC_REQUEST_REDIS_URL) does not "
            "answer: async requests will get 503 until it does", id="async_request.W003"))
    servers = [s.strip() for s in settings.kafka_bootstrap_servers.split(",") if s.strip()]
    if settings.broker_url.startswith("kafka://") and not any(
            _answers(host or "127.0.0.1", int(port)) for host, _, port in
            (server.rpartition(":") for server in servers) if port.isdigit()):
        found.append(Warning(
            f"no Kafka broker answers at {settings.kafka_bootstrap_servers} "
            "(KAFKA_BOOTSTRAP_SERVERS): async requests will get 503 until one does",
            hint="for development: `async-request broker` starts the embedded one",
            id="async_request.W004"))
    return found


def check_settings(app_configs: Any = None, **_: Any) -> list[CheckMessage]:
    """The Django system checks of async-request: settings, channel layer, replay target,
    Redis and the broker (`manage.py check`, and every management command)."""
    settings = get_settings()
    return [*secret_warnings(settings), *channel_layer_errors(),
            *replay_target_errors(settings), *reachability_warnings(settings)]


def worker_start_checks(sender: Any = None, **_: Any) -> None:
    """At worker start (`worker_init`, `sender` the worker): log every check and the lanes it
    serves; refuse to start when the replay target is broken or `-Q` names no lane's queue.

    A worker that said `ready` with a replay target that does not import would fail every task
    it took (and the client would learn of it one operation at a time).
    """
    if sender is not None:
        from async_request.exceptions import ConfigurationError

        try:
            worker_lanes(sender)
        except ConfigurationError as exc:
            logger.critical("%s", exc)
            # Celery's signals log and swallow a receiver's Exception; SystemExit stops it.
            raise SystemExit(f"async-request: {exc}") from exc
    problem = installed_error()
    if problem:
        logger.error("async_request.E003: %s", problem)
    messages = check_settings()
    for message in messages:
        log = logger.error if message.is_serious() else logger.warning
        log("%s: %s (%s)", message.id, message.msg, message.hint)
    broken = [m for m in messages if m.id == "async_request.E002"]
    if broken:
        from async_request.exceptions import ConfigurationError

        raise ConfigurationError(broken[0].msg)


def installed_error() -> str | None:
    """Why async-request cannot work here when `async_request` is not in INSTALLED_APPS."""
    from django.apps import apps

    if apps.ready and not apps.is_installed("async_request"):
        return ("'async_request' is not in INSTALLED_APPS: its start-up checks, the lifespan "
                "of the replay target and revoked-task handling are off; add it "
                "(INSTALLED_APPS = [..., 'channels', 'async_request'])")
    return None


def log_start_up_warnings() -> None:
    """Log the cheap checks once when a process starts (its settings are loaded in ready())."""
    for message in [*secret_warnings(get_settings()), *channel_layer_errors()]:
        log = logger.error if message.is_serious() else logger.warning
        log("%s: %s (%s)", message.id, message.msg, message.hint)


def worker_lanes(worker: Any, settings: Settings | None = None) -> tuple[str, ...]:
    """The lanes `worker` (a Celery WorkController after `-Q`) serves, logged; ConfigurationError
    for a queue that looks like a lane's and is none (`lanes.lanes_of_queues`)."""
    from async_request.lanes import describe, lanes_of_queues

    settings = settings or get_settings()
    queues = list(worker.app.amqp.queues.consume_from)
    lanes = lanes_of_queues(settings, queues)
    logger.info("async-request worker %s serves lanes: %s", getattr(worker, "hostname", ""),
                describe(settings, lanes))
    return lanes
