"""The operation store in Redis: the one record of a deferred request, from 202 to its outcome.

Every reader (the results endpoint, the WebSocket status query, the notifications) reads this
record, and only the worker writes its outcome; Celery's result backend is not used for replays
(`ignore_result`). Keys, all expiring after ASYNC_REQUEST_RESULT_EXPIRES_SEC:

- `async_request:op:<id>` hash, the operation: `owner`, `method`, `endpoint`, `state`
  (pending → running → completed | failed), `created_at`, `started_at`, `finished_at` (epoch
  seconds), `attempts`, `worker`, and at the end `result` (the ReplayResult as JSON, sealed:
  response bodies carry issued tokens and personal data) or `error` (one line, never a
  traceback). Written before the task is published, so the owner of a task still in the queue
  is known. An anonymous owner is a keyed hash of its channel name, never the name.
- `async_request:lease:<id>` the worker that runs it, with a lease of `lease_sec` that the run
  renews; a run whose worker died loses its lease, so a redelivery can tell "died" from "busy".
- `async_request:body:<id>` request bodies above ASYNC_REQUEST_INLINE_BODY_BYTES (the Kafka
  message carries a reference), sealed, deleted when the run ends.

Why a claim at all (`claim`): a redelivered task (a worker killed mid-run, a rebalance) must not
run twice at once, and a finished one must hand back its outcome instead of running again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio as aredis

from async_request._retry import retry
from async_request.exceptions import StoreUnavailableError
from async_request.seal import seal, unseal

logger = logging.getLogger(__name__)
T = TypeVar("T")

PREFIX = "async_request"
#: Errors that mean "Redis is not reachable now" (retried), as opposed to a wrong command.
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, OSError)
TERMINAL_STATES = frozenset({"completed", "failed"})


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=f"***@{parts.hostname}:{parts.port or 6379}"))


def op_key(task_id: str) -> str:
    return f"{PREFIX}:op:{task_id}"


def lease_key(task_id: str) -> str:
    return f"{PREFIX}:lease:{task_id}"


def body_key(task_id: str) -> str:
    return f"{PREFIX}:body:{task_id}"


#: Atomic claim: KEYS op, lease; ARGV worker, lease ms, now.
#: Returns {action, attempts, owner, result-or-error}.
_CLAIM = """
local op = redis.call('HMGET', KEYS[1], 'state', 'owner', 'result', 'error', 'attempts')
local state, owner = op[1], op[2]
if not state then return {'unknown', 0, '', ''} end
if state == 'completed' then return {'done', tonumber(op[5] or 0), owner, op[3] or ''} end
if state == 'failed' then return {'failed', tonumber(op[5] or 0), owner, op[4] or ''} end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {'busy', tonumber(op[5] or 0), owner, ''}
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'state', 'running', 'started_at', ARGV[3], 'worker', ARGV[1])
return {'run', attempts, owner, ''}
"""


@dataclass(frozen=True)
class Operation:
    """One operation as stored."""

    task_id: str
    owner: str
    method: str
    endpoint: str
    state: str
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    result: dict[str, Any] | None = None
    error: str | None = None

    @classmethod
    def from_hash(cls, task_id: str, raw: dict[bytes, bytes], secret: str) -> Operation:
        """Parse the Redis hash of an operation, unsealing its result with `secret`."""
        data = {k.decode(): v.decode() for k, v in raw.items()}

        def when(name: str) -> float | None:
            return float(data[name]) if data.get(name) else None

        return cls(
            task_id=task_id, owner=data.get("owner", ""), method=data.get("method", ""),
            endpoint=data.get("endpoint", ""), state=data.get("state", "pending"),
            created_at=when("created_at") or 0.0, started_at=when("started_at"),
            finished_at=when("finished_at"), attempts=int(data.get("attempts") or 0),
            result=json.loads(unseal(data["result"], secret)) if data.get("result") else None,
            error=data.get("error") or None,
        )


@dataclass(frozen=True)
class Claim:
    """Outcome of `OperationStore.claim`: run it, or reuse what an earlier run left."""

    action: Literal["run", "resume", "done", "failed", "unknown"]
    owner: str = ""
    attempt: int = 0
    result: dict[str, Any] | None = None
    error: str | None = None


class OperationStore:
    """Redis-backed operation records; sync methods for workers, async ones for the web app."""

    def __init__(self, redis_url: str, expires_sec: int, *, secret: str,
                 lease_sec: float = 6.0) -> None:
        self.redis_url = redis_url
        self.expires_sec = expires_sec
        self.secret = secret
        self.lease_sec = lease_sec
        self._sync: redis.Redis | None = None
        self._claim_script: Any = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aredis.Redis] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def client(self) -> redis.Redis:
        """The synchronous client (thread-safe connection pool)."""
        if self._sync is None:
            self._sync = redis.Redis.from_url(
                self.redis_url, socket_connect_timeout=2, socket_timeout=5,
                health_check_interval=10,
            )
        return self._sync

    def aclient(self) -> aredis.Redis:
        """An asyncio client bound to the running event loop."""
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            client = aredis.Redis.from_url(
                self.redis_url, socket_connect_timeout=2, socket_timeout=5
            )
            self._async[loop] = client
        return client

    def _unavailable(self, what: str, exc: BaseException) -> StoreUnavailableError:
        # The URL goes to the log only: it may carry a password, and clients need not know it.
        logger.error("Redis at %s (ASYNC_REQUEST_REDIS_URL) is unreachable (%s): %r",
                     _without_password(self.redis_url), what, exc)
        return StoreUnavailableError(f"the operation store (Redis) is unavailable; {what}")

    # -- web side ----------------------------------------------------------------------------
    async def accept(self, task_id: str, owner: str, endpoint: str, method: str,
                     body_aside: bytes | None = None) -> None:
        """Record an operation before it is published; StoreUnavailableError if Redis is down."""
        try:
            async with self.aclient().pipeline(transaction=True) as pipe:
                pipe.hset(op_key(task_id), mapping={
                    "owner": owner, "endpoint": endpoint, "method": method,
                    "state": "pending", "created_at": repr(time.time()),
                })
                pipe.expire(op_key(task_id), self.expires_sec)
                if body_aside is not None:
                    pipe.set(body_key(task_id), seal(body_aside, self.secret),
                             ex=self.expires_sec)
                await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            raise self._unavailable("nothing was queued, retry later", exc) from exc

    async def forget(self, task_id: str) -> None:
        """Undo `accept` after a failed publish, so nothing is left half-done."""
        try:
            await self.aclient().delete(op_key(task_id), body_key(task_id))
        except (redis.RedisError, OSError):
            logger.warning("could not remove the record of unqueued task %s", task_id)

    # -- reading -----------------------------------------------------------------------------
    def get(self, task_id: str) -> Operation | None:
        """The operation, or None when unknown or expired; StoreUnavailableError when Redis is
        down."""
        try:
            raw = self.client.hgetall(op_key(task_id))
        except (redis.RedisError, OSError) as exc:
            raise self._unavailable("retry later", exc) from exc
        return Operation.from_hash(task_id, raw, self.secret) if raw else None  # type: ignore[arg-type]

    def owner(self, task_id: str) -> str | None:
        """The recorded owner of a task (retried while Redis is down), None when unknown."""
        raw = self._retry(lambda: self.client.hget(op_key(task_id), "owner"), "read owner")
        return raw.decode() if raw else None

    def load_body(self, task_id: str) -> bytes | None:
        """A body stored aside, or None when it has expired."""
        sealed: bytes | None = self._retry(lambda: self.client.get(body_key(task_id)),
                                           "load body")
        return None if sealed is None else unseal(sealed.decode("ascii"), self.secret)

    # -- worker side -------------------------------------------------------------------------
    def claim(self, task_id: str, worker: str) -> Claim:
        """Claim an operation for one run, atomically, so a redelivery never runs it twice at once.

        - Not running: we take its lease: `run`, or `resume` when an earlier run had taken it
          and vanished without finishing (attempt > 1); the caller decides whether a resumed
          request may run again.
        - Finished: `done` with its stored result (or `failed` with its error).
        - Running elsewhere (lease alive): wait until that run ends or its lease expires.
        - `unknown`: no record (withdrawn after a failed publish, or expired).
        """
        if self._claim_script is None:
            self._claim_script = self.client.register_script(_CLAIM)
        while True:
            action, attempts, owner, payload = self._retry(
                lambda: self._claim_script(
                    keys=[op_key(task_id), lease_key(task_id)],
                    args=[worker, int(self.lease_sec * 1000), repr(time.time())]),
                "claim task")
            action = action.decode() if isinstance(action, bytes) else action
            owner = owner.decode() if isinstance(owner, bytes) else owner
            payload = payload.decode() if isinstance(payload, bytes) else payload
            if action == "busy":  # poll until that run ends or its lease expires
                time.sleep(0.1)
                continue
            if action == "run":
                return Claim("resume" if int(attempts) > 1 else "run", owner, int(attempts))
            if action == "done":
                return Claim("done", owner, int(attempts),
                             result=json.loads(unseal(payload, self.secret)))
            if action == "failed":
                return Claim("failed", owner, int(attempts), error=payload)
            return Claim("unknown")

    def renew(self, task_id: str, worker: str) -> None:
        """Extend the lease of a run we hold (called by a heartbeat while replaying)."""
        try:
            self.client.pexpire(lease_key(task_id), int(self.lease_sec * 1000))
        except (redis.RedisError, OSError):
            logger.warning("could not renew the lease of task %s (Redis down?)", task_id)

    def finish(self, task_id: str, result: dict[str, Any]) -> None:
        """Record a completed run with its result; retried until Redis takes it."""
        self._end(task_id, {"state": "completed",
                            "result": seal(json.dumps(result).encode(), self.secret)})

    def fail(self, task_id: str, error: str) -> None:
        """Record a failed run (timeout, interrupted, the app could not be loaded, ...)."""
        self._end(task_id, {"state": "failed", "error": error[:300]})

    def _end(self, task_id: str, fields: dict[str, str]) -> None:
        record = {**fields, "finished_at": repr(time.time())}

        def write() -> None:
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(op_key(task_id), mapping=record)  # type: ignore[arg-type]
            pipe.expire(op_key(task_id), self.expires_sec)
            pipe.delete(lease_key(task_id), body_key(task_id))
            pipe.execute()

        self._retry(write, "store the outcome", deadline_sec=600)

    def _retry(self, call: Any, what: str, deadline_sec: float = 120) -> Any:
        try:
            return retry(call, what=f"{what} (Redis)", errors=UNREACHABLE,
                         deadline_sec=deadline_sec)
        except UNREACHABLE as exc:
            raise self._unavailable(what, exc) from exc


_store: OperationStore | None = None


def get_store() -> OperationStore:
    """The process-wide store built from the settings."""
    global _store
    from async_request.settings import get_settings

    settings = get_settings()
    if _store is None or (_store.redis_url, _store.secret) != (settings.redis_url,
                                                              settings.secret_key):
        _store = OperationStore(settings.redis_url, settings.result_expires_sec,
                                secret=settings.secret_key)
    return _store
