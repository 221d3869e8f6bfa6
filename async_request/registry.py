"""The task registry in Redis: who owns a task, its body when too big for Kafka, and its run state.

Keys (all expire after ASYNC_REQUEST_RESULT_EXPIRES_SEC):

- `async_request:task:<id>`  hash {owner, endpoint, method, accepted_at}: written before the
  task is published, so the results endpoint can check the owner of a task still in the queue;
- `async_request:body:<id>`  request bodies above ASYNC_REQUEST_INLINE_BODY_BYTES;
- `async_request:run:<id>`   the run state that makes replays idempotent (see `claim`);
- `async_request:attempts:<id>` how many runs have claimed the task.

Why not Celery's result backend alone: it stores only what a task returns, keyed by id, with no
owner before the task ends and no atomic "claim"; these few keys add exactly that.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import redis
import redis.asyncio as aredis

from async_request.exceptions import RegistryUnavailableError

logger = logging.getLogger(__name__)
T = TypeVar("T")

PREFIX = "async_request"


def task_key(task_id: str) -> str:
    return f"{PREFIX}:task:{task_id}"


def body_key(task_id: str) -> str:
    return f"{PREFIX}:body:{task_id}"


def run_key(task_id: str) -> str:
    return f"{PREFIX}:run:{task_id}"


def attempts_key(task_id: str) -> str:
    return f"{PREFIX}:attempts:{task_id}"


@dataclass(frozen=True)
class Claim:
    """Outcome of `Registry.claim`: run it, or reuse what an earlier run left."""

    action: Literal["run", "resume", "done", "failed"]
    attempt: int = 0
    result: dict[str, Any] | None = None
    error: str | None = None


class Registry:
    """Redis-backed task registry; sync methods for workers, async ones for the web app."""

    def __init__(self, redis_url: str, expires_sec: int, *, lease_sec: float = 6.0) -> None:
        self.redis_url = redis_url
        self.expires_sec = expires_sec
        self.lease_sec = lease_sec
        self._sync: redis.Redis | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aredis.Redis] = (
            weakref.WeakKeyDictionary()
        )

    # -- clients -----------------------------------------------------------------------------
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

    # -- web side ----------------------------------------------------------------------------
    async def accept(self, task_id: str, owner: str, endpoint: str, method: str,
                     body_aside: bytes | None = None) -> None:
        """Record a task before it is published; raise RegistryUnavailableError if Redis is down."""
        try:
            async with self.aclient().pipeline(transaction=True) as pipe:
                pipe.hset(task_key(task_id), mapping={
                    "owner": owner, "endpoint": endpoint, "method": method,
                    "accepted_at": repr(time.time()),
                })
                pipe.expire(task_key(task_id), self.expires_sec)
                if body_aside is not None:
                    pipe.set(body_key(task_id), body_aside, ex=self.expires_sec)
                await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            raise RegistryUnavailableError(f"Redis at {self.redis_url} is unreachable") from exc

    async def forget(self, task_id: str) -> None:
        """Undo `accept` after a failed publish, so nothing is left half-done."""
        try:
            await self.aclient().delete(task_key(task_id), body_key(task_id))
        except (redis.RedisError, OSError):
            logger.warning("could not remove registry entry of unqueued task %s", task_id)

    # -- reading -----------------------------------------------------------------------------
    def entry(self, task_id: str) -> dict[str, str] | None:
        """The registry entry of a task, or None when unknown or expired."""
        raw = self.client.hgetall(task_key(task_id))
        if not raw:
            return None
        return {k.decode(): v.decode() for k, v in raw.items()}  # type: ignore[union-attr]

    def known(self, task_id: str) -> bool:
        """True while the task's registry entry exists (retried while Redis is down)."""
        return bool(self._retry(lambda: self.client.exists(task_key(task_id)), "check task"))

    def load_body(self, task_id: str) -> bytes | None:
        """A body stored aside, or None when it has expired."""
        return self._retry(lambda: self.client.get(body_key(task_id)), "load body")  # type: ignore[return-value]

    def run_state(self, task_id: str) -> dict[str, Any] | None:
        """The run record of a task, if any."""
        raw = self.client.get(run_key(task_id))
        return json.loads(raw) if raw else None

    # -- worker side -------------------------------------------------------------------------
    def claim(self, task_id: str, worker: str, *, wait_sec: float) -> Claim:
        """Claim a task for one run, atomically, so a redelivered task never runs twice at once.

        - No run record: we take it (SET NX with a lease): `run`, or `resume` when an earlier
          run had taken it and vanished without finishing (its lease expired); the caller
          decides whether a resumed request may run again.
        - A finished run: `done` with its stored result (or `failed` with its error).
        - A run in progress elsewhere (lease alive): wait up to `wait_sec` for it, then as above.
        """
        deadline = time.monotonic() + wait_sec
        while True:
            record = self._retry(lambda: self.client.get(run_key(task_id)), "read run state")
            if record:
                state = json.loads(record)
                if state.get("state") == "done":
                    return Claim("done", result=state.get("result"))
                if state.get("state") == "failed":
                    return Claim("failed", error=state.get("error"))
                if time.monotonic() < deadline:
                    time.sleep(0.25)
                    continue
            taken = self._retry(lambda: self._take(task_id, worker), "claim task")
            if not taken:
                time.sleep(0.05)
                continue
            attempt = int(self._retry(lambda: self._incr_attempts(task_id), "count attempts"))
            return Claim("resume" if attempt > 1 else "run", attempt=attempt)

    def _take(self, task_id: str, worker: str) -> bool:
        running = json.dumps({"state": "running", "worker": worker, "since": time.time()})
        return bool(self.client.set(run_key(task_id), running, nx=True,
                                    px=int(self.lease_sec * 1000)))

    def _incr_attempts(self, task_id: str) -> int:
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(attempts_key(task_id))
        pipe.expire(attempts_key(task_id), self.expires_sec)
        return int(pipe.execute()[0])

    def renew(self, task_id: str, worker: str) -> None:
        """Extend the lease of a run we hold (called by a heartbeat while replaying)."""
        try:
            self.client.pexpire(run_key(task_id), int(self.lease_sec * 1000))
        except (redis.RedisError, OSError):
            logger.warning("could not renew the lease of task %s (Redis down?)", task_id)

    def finish(self, task_id: str, result: dict[str, Any]) -> None:
        """Record a finished run with its result; retried until Redis takes it."""
        record = json.dumps({"state": "done", "result": result})
        self._retry(lambda: self.client.set(run_key(task_id), record, ex=self.expires_sec),
                    "store run result", deadline_sec=600)
        self._retry(lambda: self.client.delete(body_key(task_id)), "drop stored body",
                    deadline_sec=60)

    def fail(self, task_id: str, error: str) -> None:
        """Record a run that must not be retried (interrupted, undecodable)."""
        record = json.dumps({"state": "failed", "error": error})
        self._retry(lambda: self.client.set(run_key(task_id), record, ex=self.expires_sec),
                    "store run failure", deadline_sec=600)

    def _retry(self, call: Callable[[], T], what: str, deadline_sec: float = 120) -> T:
        """Run a Redis call, retrying with backoff while Redis is unreachable."""
        deadline = time.monotonic() + deadline_sec
        delay = 0.2
        while True:
            try:
                return call()
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                if time.monotonic() >= deadline:
                    raise RegistryUnavailableError(f"{what}: Redis unreachable") from exc
                logger.warning("%s: Redis unreachable, retrying in %.1fs", what, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry built from the settings."""
    global _registry
    from async_request.settings import get_settings

    settings = get_settings()
    if _registry is None or _registry.redis_url != settings.redis_url:
        _registry = Registry(settings.redis_url, settings.result_expires_sec)
    return _registry
