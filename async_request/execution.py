"""What a worker does with one queued request: claim it, replay it, record the outcome.

The claim (see `registry.Registry.claim`) is what keeps a redelivered request from running
twice: a run that finished hands back its stored result. A run that died mid-way (worker killed,
its lease expired) leaves the outcome unknown; the rule for it (`may_run_again`):

- idempotent methods (GET, HEAD, OPTIONS, TRACE, PUT, DELETE: RFC 9110 §9.2.2) run again;
- a request carrying an `Idempotency-Key` header runs again (the app promised to honour it);
- a route listed in ASYNC_REQUEST_IDEMPOTENT_ROUTES runs again: it deduplicates on the task id
  that `dependencies.replay_of()` gives it (the sample's order creation does);
- anything else (a plain POST or PATCH) is not run a second time: the task ends `failed` with an
  "interrupted" error, and the client decides.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from functools import lru_cache
from importlib import import_module
from typing import Any

from asgiref.sync import async_to_sync

from async_request.envelope import RequestEnvelope
from async_request.exceptions import (
    ConfigurationError,
    EnvelopeError,
    ReplayInterruptedError,
    ReplayTimeoutError,
)
from async_request.registry import Registry, get_registry
from async_request.replay import replay
from async_request.settings import Settings, get_settings
from async_request.types import ASGIApp

logger = logging.getLogger(__name__)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


def may_run_again(envelope: RequestEnvelope, settings: Settings) -> bool:
    """True when a request whose earlier run died mid-way may safely run again."""
    method = envelope.method.upper()
    if method in IDEMPOTENT_METHODS:
        return True
    if any(name == "idempotency-key" for name, _ in envelope.headers):
        return True
    return any(method == route_method and pattern.fullmatch(envelope.path)
               for route_method, pattern in settings.idempotent_routes)


@lru_cache(maxsize=4)
def load_asgi_app(path: str) -> ASGIApp:
    """Import the ASGI app named by ASYNC_REQUEST_ASGI_APP ('module:attribute')."""
    if not path:
        raise ConfigurationError(
            "setting ASYNC_REQUEST_ASGI_APP is empty: the worker needs the dotted path of the "
            "ASGI app to replay requests into, e.g. 'myproject.asgi:application'"
        )
    module_name, _, attr = path.partition(":")
    try:
        app: ASGIApp = getattr(import_module(module_name), attr or "application")
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"setting ASYNC_REQUEST_ASGI_APP = {path!r}: {exc}") from exc
    return app


@contextlib.contextmanager
def _lease(registry: Registry, task_id: str, worker: str) -> Iterator[None]:
    """Keep renewing our claim while the replay runs, so others know we are alive."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(registry.lease_sec / 3):
            registry.renew(task_id, worker)

    thread = threading.Thread(target=beat, name=f"lease-{task_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def execute(envelope_data: dict[str, Any], *, task_id: str, worker: str) -> dict[str, Any]:
    """Replay one queued request exactly once and return its result record."""
    settings = get_settings()
    envelope = RequestEnvelope.from_dict(envelope_data)
    if envelope.task_id != task_id:
        raise EnvelopeError(f"envelope of task {envelope.task_id} delivered as task {task_id}")
    registry = get_registry()
    if not registry.known(task_id):
        # Withdrawn after a failed publish (the client got 503), or older than the result expiry.
        raise EnvelopeError(f"task {task_id} is unknown to the registry (withdrawn or expired)")
    claim = registry.claim(task_id, worker, wait_sec=registry.lease_sec + 5)
    if claim.action == "done" and claim.result is not None:
        logger.info("task %s already ran; returning its stored result", task_id)
        return claim.result
    if claim.action == "failed":
        raise ReplayInterruptedError(claim.error or "an earlier run of this task failed")
    if claim.action == "resume" and not may_run_again(envelope, settings):
        message = (f"an earlier run of this {envelope.method} request stopped mid-way; "
                   "it is not run again because the method is not idempotent")
        registry.fail(task_id, message)
        raise ReplayInterruptedError(message)
    if claim.action == "resume":
        logger.warning("task %s: earlier run died mid-way; running attempt %d", task_id,
                       claim.attempt)
    body = envelope.body if envelope.body is not None else registry.load_body(task_id)
    if body is None:
        raise EnvelopeError(f"the stored body of task {task_id} has expired")
    app = load_asgi_app(settings.asgi_app)
    scope = envelope.to_scope(settings.secret_key, {"task_id": task_id, "attempt": claim.attempt})
    try:
        with _lease(registry, task_id, worker):
            result = async_to_sync(replay)(
                app, scope, body, task_id=task_id, endpoint=envelope.path,
                timeout=settings.replay_timeout_sec,
            )
    except ReplayTimeoutError as exc:
        registry.fail(task_id, str(exc))
        raise
    record = result.to_dict()
    registry.finish(task_id, record)
    return record
