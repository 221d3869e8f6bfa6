"""The sweep: publish again the accepted operations that no worker claimed within a deadline.

The 202 is a promise, and the broker can break it: tansu keeps messages in memory, so a
SIGKILLed broker forgets every message no worker had taken yet. The store keeps what a new
message needs (the sealed envelope, `async_request:envelope:<id>`, until the run completes),
and `async_request:pending` lists the operations accepted and not yet claimed, scored by
their accept time (`_store_scripts.ACCEPT` adds, any `CLAIM` removes, as do terminal writes,
cancels and `forget`).

Each worker's main process runs one `Sweeper` thread (started on `worker_ready`, like the
webhook `Deliverer`). Every `interval` seconds it tries to take the sweep lease
(`SET NX PX interval`), so one sweep acts per interval whatever the number of workers; the
holder reads at most `batch` ids overdue by ASYNC_REQUEST_REPUBLISH_AFTER_SEC
(`ZRANGEBYSCORE ... LIMIT`: the cost follows the due batch, not the set's size), publishes
each again with the same task id and to the lane its record names (`lanes.resolve`)
through `Dispatcher.send` (the claim makes a second
delivery harmless: it finds the operation running or done), and moves its score to now, so
it is published again only after another deadline. An id whose record or envelope is gone,
or that is no longer pending, just leaves the set.

The price: an operation that waits in the queue longer than the deadline (a deep backlog) is
published twice; its second delivery costs a claim. Set the deadline above the longest wait
you expect in the queue; 0 turns the sweep off.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis

from async_request._background import Loop
from async_request.dispatch import Dispatcher
from async_request.envelope import RequestEnvelope
from async_request.exceptions import EnqueueError, EnvelopeError, TooLargeError
from async_request.lanes import resolve
from async_request.records import PENDING, PREFIX, envelope_key, op_key
from async_request.store import OperationStore

logger = logging.getLogger(__name__)

#: The lease one sweep holds for its interval.
LEASE_KEY = f"{PREFIX}:sweep:lease"
#: Ids read per sweep at most: a sweep's cost stays bounded whatever the backlog.
BATCH = 100


def interval_for(deadline_sec: float) -> float:
    """How often a sweep runs for a deadline: a third of it, between 0.5 and 10 seconds."""
    return min(10.0, max(0.5, deadline_sec / 3))


class Sweeper(Loop):
    """One worker process's sweep loop over the pending set (see the module docstring)."""

    thread_name = "sweep"

    def __init__(self, store: OperationStore, dispatcher: Dispatcher, *, deadline_sec: float,
                 secret: str, interval: float | None = None, batch: int = BATCH,
                 name: str = "sweeper") -> None:
        if deadline_sec <= 0:
            raise ValueError(f"deadline_sec must be > 0, got {deadline_sec}")
        super().__init__(interval_for(deadline_sec) if interval is None else interval)
        self.store = store
        self.dispatcher = dispatcher
        self.deadline_sec = deadline_sec
        self.secret = secret
        self.batch = batch
        self.name = name

    def tick(self) -> int | None:
        return self.sweep()

    def sweep(self, now: float | None = None) -> int | None:
        """One sweep: None when another sweeper holds this interval, else how many ids were
        published again."""
        now = time.time() if now is None else now
        client = self.store.client
        if not client.set(LEASE_KEY, self.name, nx=True, px=max(1, int(self.interval * 1000))):
            return None
        due: list[bytes] = client.zrangebyscore(  # type: ignore[assignment]
            PENDING, "-inf", repr(now - self.deadline_sec), start=0, num=self.batch)
        published = 0
        try:
            for raw in due:
                published += self._republish(client, raw.decode(), now)
        except EnqueueError:  # the broker is still down: the next sweep tries again
            logger.info("sweep: the broker did not take a message; trying again in %.1fs",
                        self.interval)
        if published:
            logger.info("sweep: published %d unclaimed operations again (older than %ss)",
                        published, self.deadline_sec)
        return published

    def _republish(self, client: redis.Redis, task_id: str, now: float) -> bool:
        raw_state, raw_lane = client.hmget(op_key(task_id), ["state", "lane"])
        wire = client.get(envelope_key(task_id))
        if raw_state != b"pending" or wire is None:
            client.zrem(PENDING, task_id)  # claimed meanwhile, ended, withdrawn or expired
            return False
        try:
            sealed = dict(json.loads(wire))
            envelope = RequestEnvelope.from_dict(sealed, self.secret)  # still opens: checked
            stored = raw_lane.decode() if isinstance(raw_lane, bytes) else None
            lane = resolve(self.dispatcher.settings, stored,
                           envelope.method, envelope.path)
            self.dispatcher.send(envelope, secret=self.secret, lane=lane, sealed=sealed)
        except (EnvelopeError, TooLargeError) as exc:  # can never be published: leave it
            logger.warning("sweep: task %s cannot be published again: %s", task_id, exc)
            client.zrem(PENDING, task_id)
            return False
        # XX: a worker that claimed it meanwhile took it out; do not put it back.
        client.zadd(PENDING, {task_id: now}, xx=True)
        return True


_sweeper: Sweeper | None = None


def start_sweeper(sender: Any = None, **_: Any) -> None:
    """Celery `worker_ready`: sweep from this worker (unless ASYNC_REQUEST_REPUBLISH_AFTER_SEC
    is 0)."""
    global _sweeper
    from async_request.settings import get_settings
    from async_request.store import get_store

    settings = get_settings()
    if settings.republish_after_sec <= 0:
        return
    name = str(getattr(sender, "hostname", "") or "sweeper")
    _sweeper = Sweeper(get_store(), Dispatcher(), deadline_sec=settings.republish_after_sec,
                       secret=settings.secret_key, name=name)
    _sweeper.start()


def stop_sweeper(**_: Any) -> None:
    """Celery `worker_shutdown`: stop the loop."""
    if _sweeper is not None:
        _sweeper.stop()
