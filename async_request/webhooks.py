"""Completion webhooks: `X-Async-Request-Callback: <url>` gets the status body when it ends.

For server-to-server callers that keep no socket open. The rules, and why:

- **Checked at accept** (`callback_url`): an absolute `http(s)` URL without credentials whose
  host is listed in ASYNC_REQUEST_CALLBACK_HOSTS (`host` or `host:port`, `*.example.com` for
  sub-domains); anything else is a 400 and nothing is queued. A server must not be made to
  POST to any address a client names (SSRF): only hosts its operator allowed, and redirects
  are never followed (a 3xx is a failed try), so an allowed host cannot bounce us elsewhere.
- **Signed as Standard Webhooks does** (`sign`): headers `webhook-id` (the same on every
  retry, so receivers deduplicate), `webhook-timestamp` (epoch seconds) and
  `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">` with the key of
  ASYNC_REQUEST_WEBHOOK_SECRET (`whsec_<base64>`, as the specification's libraries take it).
- **At least once, for a bounded time**: the terminal write puts the operation in a due set
  in Redis (`async_request:webhooks`, scored by the next try's time), so a delivery survives
  the worker that ran it. Each worker process runs one `Deliverer` thread that takes due
  entries (a claim moves the score forward first, so two workers never send the same try at
  once), POSTs, and on failure schedules the next try with exponential backoff (1 s, 2 s, ...,
  at most 5 min) until ASYNC_REQUEST_WEBHOOK_RETRY_SEC after the operation ended.

The callback URL is sealed in the store (a URL may carry a receiver's token).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from async_request._background import Loop
from async_request.exceptions import CallbackRefusedError, ConfigurationError
from async_request.records import WEBHOOKS_DUE
from async_request.settings import Settings

if TYPE_CHECKING:
    from async_request.store import OperationStore

logger = logging.getLogger(__name__)

CALLBACK_HEADER = "x-async-request-callback"
#: The operations whose webhook is due, scored by when to try next (epoch seconds).
DUE_KEY = WEBHOOKS_DUE
#: How long one try may take, and how far a claim pushes the entry's score.
TRY_TIMEOUT_SEC = 10.0
CLAIM_SEC = 30.0
MAX_BACKOFF_SEC = 300.0

#: Take the due entry if its time has come: move its score past the try. KEYS due; ARGV id,
#: now, claimed-until. Returns 1 when we took it.
CLAIM_DUE = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
"""


def _host_allowed(host: str, port: int | None, allowed: tuple[str, ...]) -> bool:
    for entry in allowed:
        name, _, entry_port = entry.lower().partition(":")
        if entry_port and str(port) != entry_port:
            continue
        if name == host or (name.startswith("*.") and host.endswith(name[1:])):
            return True
    return False


def callback_url(value: str | None, settings: Settings) -> str | None:
    """The callback a request asked for, checked; None without one; CallbackRefusedError."""
    if value is None:
        return None
    url = value.strip()
    if not settings.callback_hosts:
        raise CallbackRefusedError("this server sends no webhooks: "
                                   "ASYNC_REQUEST_CALLBACK_HOSTS is empty")
    if not settings.webhook_secret:
        raise CallbackRefusedError("this server sends no webhooks: "
                                   "ASYNC_REQUEST_WEBHOOK_SECRET is not set")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise CallbackRefusedError(f"X-Async-Request-Callback: {url[:100]!r} is not a URL") \
            from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CallbackRefusedError(
            f"X-Async-Request-Callback: {url[:100]!r} is not an absolute http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise CallbackRefusedError("X-Async-Request-Callback: a URL with credentials is refused")
    if not _host_allowed(parts.hostname.lower(), port, settings.callback_hosts):
        raise CallbackRefusedError(
            f"X-Async-Request-Callback: host {parts.hostname!r} is not allowed "
            "(ASYNC_REQUEST_CALLBACK_HOSTS)")
    return url


def secret_bytes(secret: str) -> bytes:
    """The signing key of a `whsec_<base64>` secret (the specification's format)."""
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except ValueError as exc:
        raise ConfigurationError("ASYNC_REQUEST_WEBHOOK_SECRET must be 'whsec_' followed by "
                                 "base64 (e.g. whsec_" + base64.b64encode(b"0" * 24).decode()
                                 + ")") from exc


def sign(msg_id: str, timestamp: int, body: bytes, secret: str) -> str:
    """The `webhook-signature` header value: `v1,<base64 HMAC-SHA256>` of id.timestamp.body."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def message_id(task_id: str) -> str:
    """The same id on every try of one operation's webhook."""
    return f"msg_{task_id}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx stays a 3xx: a failed try, never a request elsewhere


_OPENER = urllib.request.build_opener(_NoRedirect)


def post(url: str, msg_id: str, body: bytes, secret: str, *,
         timeout: float = TRY_TIMEOUT_SEC) -> int | str:
    """One try: the receiver's HTTP status, or a short reason when there was none."""
    timestamp = int(time.time())
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "content-type": "application/json", "user-agent": "async-request-webhook/1",
        "webhook-id": msg_id, "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(msg_id, timestamp, body, secret)})
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"[:200]


def backoff(attempt: int) -> float:
    """Seconds before try `attempt + 1` (attempt counts from 1)."""
    return float(min(MAX_BACKOFF_SEC, 2 ** (attempt - 1)))


class Deliverer(Loop):
    """One worker process's delivery loop over the due set (see the module docstring)."""

    thread_name = "webhooks"

    def __init__(self, store: OperationStore, settings: Settings, *,
                 interval: float = 0.5) -> None:
        super().__init__(interval)
        self.store = store
        self.settings = settings
        self._claim = store.client.register_script(CLAIM_DUE)

    def tick(self) -> int:
        return self.run_due()

    def run_due(self, now: float | None = None) -> int:
        """Try every due webhook once; how many were tried."""
        now = time.time() if now is None else now
        client = self.store.client
        due: list[bytes] = client.zrangebyscore(  # type: ignore[assignment]
            DUE_KEY, "-inf", repr(now), start=0, num=20)
        tried = 0
        for raw in due:
            task_id = raw.decode()
            if self._claim(keys=[DUE_KEY], args=[task_id, repr(now), repr(now + CLAIM_SEC)]):
                tried += 1
                self._try(task_id)
        return tried

    def _try(self, task_id: str) -> None:
        from async_request.results.status import status_body

        client = self.store.client
        target = self.store.webhook_target(task_id)
        if target is None:  # expired, or no longer one to send: nothing left to do
            client.zrem(DUE_KEY, task_id)
            return
        url, operation, tries = target
        tries += 1
        outcome = post(url, message_id(task_id), json.dumps(status_body(operation)).encode(),
                       self.settings.webhook_secret)
        if isinstance(outcome, int) and 200 <= outcome < 300:
            client.zrem(DUE_KEY, task_id)
            self.store.webhook_tried(task_id, tries, f"delivered: HTTP {outcome}")
            return
        reason = f"HTTP {outcome}" if isinstance(outcome, int) else outcome
        later = time.time() + backoff(tries)
        if later > (operation.finished_at or 0) + self.settings.webhook_retry_sec:
            client.zrem(DUE_KEY, task_id)
            logger.warning("webhook of task %s given up after %d tries: %s", task_id, tries,
                           reason)
            self.store.webhook_tried(task_id, tries, f"given up: {reason}")
            return
        logger.info("webhook of task %s: try %d failed (%s); next in %.0fs", task_id, tries,
                    reason, backoff(tries))
        client.zadd(DUE_KEY, {task_id: later})
        self.store.webhook_tried(task_id, tries, f"failed: {reason}")


_deliverer: Deliverer | None = None


def start_deliverer(**_: Any) -> None:
    """Celery `worker_ready`: deliver due webhooks from this worker (when callbacks are on)."""
    global _deliverer
    from async_request.settings import get_settings
    from async_request.store import get_store

    settings = get_settings()
    if not settings.callback_hosts or not settings.webhook_secret:
        return
    _deliverer = Deliverer(get_store(), settings)
    _deliverer.start()


def stop_deliverer(**_: Any) -> None:
    """Celery `worker_shutdown`: stop the loop (a try under way finishes on its own)."""
    if _deliverer is not None:
        _deliverer.stop()
