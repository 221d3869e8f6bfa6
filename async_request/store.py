"""The operation store in Redis: the one record of a deferred request, from 202 to its outcome.

Every reader (the results endpoint, the WebSocket status query, the notifications) reads this
record, and only the worker writes its outcome; Celery's result backend is not used for replays
(`ignore_result`). Keys, all expiring after ASYNC_REQUEST_RESULT_EXPIRES_SEC:

- `async_request:op:<id>` hash, the operation: `owner`, `method`, `endpoint`, `state`
  (pending → running → completed | failed), `created_at`, `started_at`, `finished_at` (epoch
  seconds), `attempts`, `worker`, `progress` (the route's latest `progress.Progress` as JSON,
  written only while it runs), and at the end `result` (the ReplayResult as JSON, sealed:
  response bodies carry issued tokens and personal data) or `error` (one line, never a
  traceback). Written before the task is published, so the owner of a task still in the queue
  is known. An anonymous owner is a keyed hash of its channel name, never the name.
- `async_request:lease:<id>` the worker that runs it, with a lease of `lease_sec` that the run
  renews; a run whose worker died loses its lease, so a redelivery can tell "died" from "busy".
- `async_request:body:<id>` request bodies above ASYNC_REQUEST_INLINE_BODY_BYTES (the Kafka
  message carries a reference), sealed; and `async_request:envelope:<id>` the captured request
  (the wire envelope, its headers, query and body sealed). Both are what a re-run replays:
  deleted when the run completes, kept with the record when it failed or was cancelled. The
  envelope has its own key, not a field of the op hash, because a status read takes the whole
  hash.
- `async_request:inflight:<owner hash>` sorted set of the owner's operations not yet finished,
  scored by their expiry deadline: ASYNC_REQUEST_MAX_INFLIGHT_PER_OWNER counts it at accept
  (`_store_scripts.ACCEPT`), terminal writes leave it.
- `async_request:pending` sorted set of the operations accepted and not yet claimed, scored
  by their accept (or last re-publish) time: `sweep.py` re-publishes those nobody claimed
  within ASYNC_REQUEST_REPUBLISH_AFTER_SEC (a broker that lost its messages). Any claim, a
  terminal write, a cancel and `forget` take an operation out.
- pub/sub channel `async_request:done:<id>`: told the final state when the operation ends (in
  the outcome's own script, `_store_scripts.TERMINAL`), so a waiter (`wait_terminal`,
  `Prefer: wait=N`) sleeps on a subscription instead of polling the hash.

Why a claim at all (`claim`): a redelivered task (a worker killed mid-run, a rebalance) must not
run twice at once, and a finished one must hand back its outcome instead of running again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio as aredis

from async_request import _store_scripts
from async_request._retry import retry
from async_request.cancel_watch import CHANNEL as CANCELS_CHANNEL
from async_request.events import Append, Logged
from async_request.exceptions import StoreUnavailableError, TooManyInFlightError
from async_request.progress import Progress
from async_request.records import (
    CANCELLED_ERROR,
    GONE_SEC,
    PENDING,
    SUMMARY_FIELDS,
    WEBHOOKS_DUE,
    Claim,
    Operation,
    body_key,
    done_channel,
    envelope_key,
    gone_key,
    inflight_key,
    lease_key,
    op_key,
    owner_key,
)
from async_request.seal import seal, unseal

logger = logging.getLogger(__name__)

#: Errors that mean "Redis is not reachable now" (retried), as opposed to a wrong command.
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, OSError)
#: A claim of an operation that runs elsewhere polls again after this long.
CLAIM_POLL_SEC = 0.1
#: How long an outcome's write is retried while Redis is unreachable.
END_DEADLINE_SEC = 600


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=f"***@{parts.hostname}:{parts.port or 6379}"))


class OperationStore:
    """Redis-backed operation records; sync methods for workers, async ones for the web app."""

    def __init__(self, redis_url: str, expires_sec: int, *, secret: str,
                 lease_sec: float = 6.0) -> None:
        self.redis_url = redis_url
        self.expires_sec = expires_sec
        self.secret = secret
        self.lease_sec = lease_sec
        self._sync: redis.Redis | None = None
        self._scripts: dict[str, Any] = {}
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
                     body_aside: bytes | None = None, *, envelope: dict[str, Any] | None = None,
                     rerun_of: str | None = None, max_inflight: int = 0,
                     callback: str | None = None, lane: str | None = None) -> None:
        """Record an operation before it is published, with its captured `envelope` (the wire
        dict) for a re-run; StoreUnavailableError if Redis is down, TooManyInFlightError when
        `owner` already has `max_inflight` operations not finished (0: no cap)."""
        now = time.time()
        fields = {"owner": owner, "endpoint": endpoint, "method": method, "state": "pending",
                  "created_at": repr(now), "expires_at": repr(now + self.expires_sec)}
        if rerun_of:
            fields["rerun_of"] = rerun_of
        if lane:  # a re-run and the sweep publish it to the same lane (lanes.py)
            fields["lane"] = lane
        if callback:  # sealed: a callback URL may carry its receiver's token
            fields["callback"] = seal(callback.encode(), self.secret)
        keys = [op_key(task_id), gone_key(task_id), owner_key(owner), inflight_key(owner),
                body_key(task_id), envelope_key(task_id), PENDING]
        args: list[Any] = [
            task_id, owner, repr(now), self.expires_sec, GONE_SEC, max_inflight,
            op_key(""), "" if body_aside is None else seal(body_aside, self.secret),
            "" if envelope is None else json.dumps(envelope),
            *(item for pair in fields.items() for item in pair)]
        try:
            held = await self.aclient().eval(_store_scripts.ACCEPT, len(keys), *keys, *args)
        except (redis.RedisError, OSError) as exc:
            raise self._unavailable("nothing was queued, retry later", exc) from exc
        if int(held):
            raise TooManyInFlightError(
                f"you have {int(held)} operations not finished yet, the most "
                f"ASYNC_REQUEST_MAX_INFLIGHT_PER_OWNER allows ({max_inflight}); nothing was "
                "queued, retry when some have ended")

    async def forget(self, task_id: str) -> None:
        """Undo `accept` after a failed publish, so nothing is left half-done."""
        try:
            client = self.aclient()
            owner = await client.hget(op_key(task_id), "owner")
            if isinstance(owner, bytes):
                await client.zrem(inflight_key(owner.decode()), task_id)
            await client.zrem(PENDING, task_id)
            await client.delete(op_key(task_id), body_key(task_id), gone_key(task_id),
                                envelope_key(task_id))
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

    async def aget(self, task_id: str) -> Operation | None:
        """`get` from async code."""
        try:
            raw = await self.aclient().hgetall(op_key(task_id))
        except (redis.RedisError, OSError) as exc:
            raise self._unavailable("retry later", exc) from exc
        return Operation.from_hash(task_id, raw, self.secret) if raw else None  # type: ignore[arg-type]

    async def wait_terminal(self, task_id: str, timeout: float) -> Operation | None:
        """The operation once it has ended, waiting up to `timeout` seconds; None if it has not
        (or is unknown). StoreUnavailableError when Redis cannot be reached."""
        found = await self.wait_until(task_id, timeout, lambda op: op.terminal)
        return found if found is not None and found.terminal else None

    async def wait_until(self, task_id: str, timeout: float,
                         done: Callable[[Operation], bool]) -> Operation | None:
        """The operation as soon as `done(operation)` holds, or as it is after `timeout`
        seconds; None when unknown. StoreUnavailableError when Redis cannot be reached.

        Subscribes to its `done` channel first (the worker publishes `running` at its claim
        and the outcome at its end) and only then reads the record: a change published
        between the two is either in the record or in the subscription. The subscription's
        connection goes back to the pool when this returns or is cancelled.
        """
        deadline = time.monotonic() + timeout
        pubsub = self.aclient().pubsub()
        try:
            await pubsub.subscribe(done_channel(task_id))
            while True:
                operation = await self.aget(task_id)
                if operation is None or done(operation):
                    return operation
                # Wait for the message in slices below the client's socket timeout; a slice
                # ends at once when the message comes, so this is no polling of the record.
                while (left := deadline - time.monotonic()) > 0:
                    message = await pubsub.get_message(ignore_subscribe_messages=True,
                                                       timeout=min(left, 1.0))
                    if message is not None:
                        break
                else:
                    return operation
        except (redis.RedisError, OSError) as exc:
            raise self._unavailable("cannot wait for the outcome", exc) from exc
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]

    def load_body(self, task_id: str) -> bytes | None:
        """A body stored aside, or None when it has expired."""
        sealed: bytes | None = self._retry(lambda: self.client.get(body_key(task_id)),
                                           "load body")
        return None if sealed is None else unseal(sealed.decode("ascii"), self.secret)

    def load_envelope(self, task_id: str) -> dict[str, Any] | None:
        """The captured request (wire envelope dict) of an operation, or None when not kept."""
        try:
            raw = self.client.get(envelope_key(task_id))
        except (redis.RedisError, OSError) as exc:
            raise self._unavailable("retry later", exc) from exc
        return None if raw is None else dict(json.loads(raw))

    # -- worker side -------------------------------------------------------------------------
    def claim(self, task_id: str, worker: str, event: Append | None = None) -> Claim:
        """Claim an operation for one run, atomically, so a redelivery never runs it twice at once.

        - Not running: we take its lease: `run`, or `resume` when an earlier run had taken it
          and vanished without finishing (attempt > 1); the caller decides whether a resumed
          request may run again. `event` (its `running` event) is logged in the same call when
          its owner is the stored one: `Claim.seq` is its seq, else None.
        - Finished: `done` with its stored result (or `failed` with its error).
        - Running elsewhere (lease alive): wait until that run ends or its lease expires.
        - `unknown`: no record (withdrawn after a failed publish, or expired).
        """
        keys, args = self.claim_call(task_id, worker, event)
        while True:
            args[2] = repr(time.time())
            claim = self.claim_answer(self._retry(
                lambda: self._script("CLAIM")(keys=keys, args=args), "claim task"))
            if claim is not None:
                return claim
            time.sleep(CLAIM_POLL_SEC)  # busy: poll until that run ends or its lease expires

    def claim_call(self, task_id: str, worker: str,
                   event: Append | None) -> tuple[list[str | bytes], list[Any]]:
        """The CLAIM script's keys and args (args[2], the time, is set on each try)."""
        keys: list[str | bytes] = [op_key(task_id), lease_key(task_id), PENDING]
        args: list[Any] = [worker, int(self.lease_sec * 1000), "", done_channel(task_id),
                           task_id]
        if event is not None:
            keys += event.keys
            args += [event.owner, *event.args]
            if event.tell is not None:
                keys.append(event.tell.group_key)
                args.append(event.tell.spec)
        return keys, args

    def claim_answer(self, answer: Any) -> Claim | None:
        """The Claim a CLAIM answer means; None for `busy` (the caller polls again)."""
        action, attempts, owner, payload, seq, told = (
            item.decode() if isinstance(item, bytes) else item for item in answer)
        if action == "busy":
            return None
        if action == "run":
            return Claim("resume" if int(attempts) > 1 else "run", owner, int(attempts),
                         seq=int(seq) or None, told=bool(int(told)))
        if action == "done":
            return Claim("done", owner, int(attempts),
                         result=json.loads(unseal(payload, self.secret)))
        if action == "failed":
            return Claim("failed", owner, int(attempts), error=payload)
        if action == "cancelled":
            return Claim("cancelled", owner, int(attempts), error=payload)
        return Claim("unknown")

    def _script(self, name: str) -> Any:
        if name not in self._scripts:
            self._scripts[name] = self.client.register_script(getattr(_store_scripts, name))
        return self._scripts[name]

    def renew(self, task_id: str, worker: str) -> bool:
        """Extend the lease of a run we hold; True when its owner asked to cancel it."""
        try:
            asked = self._script("RENEW")(keys=[op_key(task_id), lease_key(task_id)],
                                          args=[int(self.lease_sec * 1000)])
        except (redis.RedisError, OSError):
            logger.warning("could not renew the lease of task %s (Redis down?)", task_id)
            return False
        return bool(asked)

    def progress(self, task_id: str, worker: str, progress: Progress) -> bool:
        """Record the progress of a run we hold; False when it is not running (or Redis is down)."""
        try:
            written = self._script("PROGRESS")(keys=[op_key(task_id)],
                                               args=[worker, progress.to_json()])
        except (redis.RedisError, OSError):
            # Progress is advisory: a missed write is superseded by the next one or the outcome.
            logger.warning("could not record the progress of task %s (Redis down?)", task_id)
            return False
        return bool(written)

    def cancel(self, task_id: str, owner: str) -> str:
        """Cancel an operation of `owner`; its state afterwards (see _store_scripts.CANCEL)."""
        try:
            state = self._script("CANCEL")(
                keys=[op_key(task_id), lease_key(task_id), inflight_key(owner), WEBHOOKS_DUE,
                      PENDING],
                args=[owner, repr(time.time()), CANCELLED_ERROR, task_id, CANCELS_CHANNEL])
        except (redis.RedisError, OSError) as exc:
            raise self._unavailable("retry later", exc) from exc
        state = state.decode() if isinstance(state, bytes) else str(state)
        if state == "cancelled":  # ended here, not by a worker: tell the waiters
            try:
                self.client.publish(done_channel(task_id), state)
            except (redis.RedisError, OSError):  # cancelled all the same; waiters time out
                logger.warning("could not tell the waiters of task %s it was cancelled",
                               task_id)
        return state

    def gone(self, task_id: str, owner: str) -> bool:
        """True when `owner` had this operation and it has expired (answer 410, not 404)."""
        try:
            recorded = self.client.get(gone_key(task_id))
        except (redis.RedisError, OSError) as exc:
            raise self._unavailable("retry later", exc) from exc
        return isinstance(recorded, bytes) and recorded.decode() == owner

    def page(self, owner: str, *, after: tuple[float, str] | None, limit: int,
             states: frozenset[str] | None) -> tuple[list[Operation], tuple[float, str] | None]:
        """The owner's operations, newest first, after the cursor `after`; and the next cursor.

        Reads the owner's index in slices about the page's size and scans at most ten pages'
        worth per call (a rare state filter then returns a short page and a cursor), so the
        cost follows the page, not how many operations exist; index entries whose operation
        expired are pruned on the way.
        """
        index, last, scanned = owner_key(owner), after, 0
        found: list[Operation] = []
        try:
            while len(found) < limit and scanned < 10 * limit:
                high = "+inf" if last is None else repr(last[0])
                raw_rows: list[tuple[bytes, float]] = self.client.zrevrangebyscore(  # type: ignore[assignment]
                    index, high, "-inf", start=0, num=limit + 10, withscores=True)
                rows = [(float(score), member.decode()) for member, score in raw_rows]
                rows = [row for row in rows if last is None or row < last]
                if not rows:
                    return found, None
                pipe = self.client.pipeline(transaction=False)
                for _, member in rows:
                    pipe.hmget(op_key(member), SUMMARY_FIELDS)
                stale = []
                for (score, member), values in zip(rows, pipe.execute(), strict=True):
                    scanned, last = scanned + 1, (score, member)
                    raw = {name.encode(): value for name, value
                           in zip(SUMMARY_FIELDS, values, strict=True) if value is not None}
                    if not raw:
                        stale.append(member)
                        continue
                    operation = Operation.from_hash(member, raw, self.secret)
                    if states is None or operation.state in states:
                        found.append(operation)
                        if len(found) == limit:
                            break
                if stale:
                    self.client.zrem(index, *stale)
        except (redis.RedisError, OSError) as exc:
            raise self._unavailable("retry later", exc) from exc
        return found, last

    def finish(self, task_id: str, result: dict[str, Any],
               event: Append | None = None) -> Logged:
        """Record a completed run with its result; retried until Redis takes it. With `event`
        (its terminal event), logged (and with its `tell` sent) in the same call, see _end."""
        return self._end(task_id, self.completed_fields(result, self.secret), event)

    def fail(self, task_id: str, error: str, event: Append | None = None) -> Logged:
        """Record a failed run (timeout, interrupted, the app could not be loaded, ...); `event`
        as in `finish`."""
        return self._end(task_id, {"state": "failed", "error": error[:300]}, event)

    def webhook_target(self, task_id: str) -> tuple[str, Operation, int] | None:
        """(callback URL, operation, tries so far) of an ended operation with a callback."""
        operation = self.get(task_id)
        if operation is None or not operation.terminal or not operation.callback:
            return None
        return operation.callback, operation, operation.webhook_tries

    def webhook_tried(self, task_id: str, tries: int, outcome: str) -> None:
        """Note a webhook try on the operation (tries, the last outcome)."""
        self.client.hset(op_key(task_id), mapping={"webhook_tries": tries,
                                                   "webhook_outcome": outcome[:200]})

    def cancelled(self, task_id: str, reason: str, event: Append | None = None) -> Logged:
        """Record a run that was stopped (its owner cancelled it, or Flower revoked it);
        `event` as in `finish`."""
        return self._end(task_id, {"state": "cancelled", "error": reason[:300]}, event)

    def _end(self, task_id: str, fields: dict[str, str], event: Append | None) -> Logged:
        """The terminal write (`_store_scripts.TERMINAL`); what became of `event`.

        When the stored owner is not the one `event` names (or there is no event), its
        in-flight slot is given back here and the caller logs the event for the stored owner.
        """
        keys, args = self.end_call(task_id, fields, event)

        def write() -> Logged:
            logged, owner = self.end_answer(self._script("TERMINAL")(keys=keys, args=args))
            if owner and logged.seq is None:
                self.client.zrem(inflight_key(owner), task_id)
            return logged

        ended: Logged = self._retry(write, "store the outcome", deadline_sec=END_DEADLINE_SEC)
        return ended

    def end_call(self, task_id: str, fields: dict[str, str],
                 event: Append | None) -> tuple[list[str | bytes], list[Any]]:
        """The TERMINAL script's keys and args for the outcome `fields` and `event`."""
        now = time.time()
        record = {**fields, "finished_at": repr(now), "expires_at": repr(now + self.expires_sec)}
        keys: list[str | bytes] = [op_key(task_id), gone_key(task_id), lease_key(task_id),
                                   body_key(task_id), envelope_key(task_id), WEBHOOKS_DUE,
                                   PENDING]
        args: list[Any] = [fields["state"], repr(now), self.expires_sec, GONE_SEC, task_id,
                           done_channel(task_id)]
        if event is None:
            args += [""] * 7
        else:
            keys += [inflight_key(event.owner), *event.keys]
            args += [event.owner, *event.args, b""]
            if event.tell is not None:
                keys.append(event.tell.group_key)
                args[-1] = event.tell.spec
        args += [item for pair in record.items() for item in pair]
        return keys, args

    @staticmethod
    def end_answer(answer: Any) -> tuple[Logged, str]:
        """(what became of the event, stored owner) of a TERMINAL answer; not logged when the
        stored owner is another (the caller then gives its in-flight slot back, see `_end`)."""
        seq, owner, told = answer
        return (Logged(int(seq) or None, bool(int(told))),
                owner.decode() if isinstance(owner, bytes) else str(owner))

    @staticmethod
    def completed_fields(result: dict[str, Any], secret: str) -> dict[str, str]:
        """The outcome fields of a completed run (its result sealed)."""
        return {"state": "completed", "result": seal(json.dumps(result).encode(), secret)}

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
