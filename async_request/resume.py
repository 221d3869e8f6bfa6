"""One subscriber's catch-up after a reconnect, for both transports (WebSocket and SSE).

A client says the last seq it has (`after`). When the owner's event log (`events.py`) still
holds everything that followed, the catch-up is those events, in order, each once
(`events.Relay`). When it does not (the log was trimmed to ASYNC_REQUEST_EVENT_LOG_LENGTH,
expired after ASYNC_REQUEST_EVENT_LOG_SEC, or the counter itself restarted), replaying the
rest would tell a story with holes in it, so the catch-up is instead:

1. a `Gap(after, last, dropped)`: events were dropped (`dropped` of them, when known);
2. one snapshot per operation the client may have lost track of: the operation's current
   state in the event shape (`task_id`, `status`, `action`, `progress`, `error`), with
   `"snapshot": true` and `"seq": last`, the gap's `last`. Every snapshot carries that same
   seq: a client resumes after it (nothing at or below it will come), and applies each
   snapshot without de-duplicating it by seq (it is a state, not an event).

Which operations: the ones the remaining log mentions, and the owner's SNAPSHOT_SCAN newest
(the owner's index is sorted by creation), of those the ones still live (pending, running)
and the ones whose terminal event came after `after` (the operation's record keeps the seq
of its first event of each state, `ev:<state>`, so that is one field read, not a log scan).
Oldest first. An owner with more than SNAPSHOT_SCAN operations in flight re-reads the list
endpoint for the rest, as the gap says.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aredis

from async_request.auth import Owner
from async_request.events import MAX_CATCH_UP, Event, Relay, event_log
from async_request.notifications import event_data
from async_request.records import (
    SUMMARY_FIELDS,
    TERMINAL_STATES,
    Operation,
    op_key,
    owner_key,
)
from async_request.results.status import progress_body
from async_request.store import get_store

#: How many of the owner's newest operations a snapshot looks at (besides those the log names).
SNAPSHOT_SCAN = 100
_EVENT_FIELDS = tuple(f"ev:{state}" for state in sorted(TERMINAL_STATES))


@dataclass(frozen=True)
class Gap:
    """Events after `after` are gone: `dropped` of them (None when unknown), up to `last`."""

    after: int
    last: int
    dropped: int | None

    def as_dict(self) -> dict[str, Any]:
        """The gap frame's members (`type` aside)."""
        body: dict[str, Any] = {"after": self.after, "last": self.last}
        if self.dropped is not None:
            body["dropped"] = self.dropped
        return body


class CatchUp:
    """What one subscriber missed after `after`; iterate `frames()`, then read `last`, `count`.

    Redis errors propagate: each transport says "unavailable" in its own way.
    """

    def __init__(self, owner: Owner, after: int, relay: Relay) -> None:
        self.owner, self.after, self.relay = owner, after, relay
        #: The owner's seq when the log was read: everything up to it has been accounted for.
        self.last = 0
        #: Data frames yielded (events and snapshots).
        self.count = 0

    async def frames(self) -> AsyncIterator[Gap | Event]:
        """The gap and snapshots, or the missed events; each event at most once."""
        log, client = event_log(), get_store().aclient()
        self.relay.floor = max(self.relay.floor, self.after)
        after = self.after
        while True:
            backlog = await log.since(client, self.owner, after)
            self.last = backlog.last
            if backlog.gap and after == self.after:
                first = backlog.events[0].seq if backlog.events else backlog.last + 1
                gone = first - self.after - 1 if self.after <= backlog.last else None
                yield Gap(self.after, backlog.last, gone)
                mentioned = [event.data.get("task_id") for event in backlog.events]
                # Read after `last` was: a change in between shows in the snapshot, and its
                # live event (seq above `last`) is still delivered. An `after` from an older
                # counter must not stay the floor: today's numbers are all below it.
                self.relay.floor = (backlog.last if self.after > backlog.last
                                    else max(self.relay.floor, backlog.last))
                for snapshot in await self._snapshots(client, mentioned, backlog.last):
                    self.count += 1
                    yield snapshot
                return
            for event in backlog.events:
                if self.relay.fresh(event.seq):
                    self.count += 1
                    yield event
            if len(backlog.events) < MAX_CATCH_UP:
                return
            after = backlog.events[-1].seq

    async def _snapshots(self, client: aredis.Redis, mentioned: list[Any],
                         last: int) -> list[Event]:
        newest: list[bytes] = await client.zrevrange(  # type: ignore[assignment]
            owner_key(str(self.owner)), 0, SNAPSHOT_SCAN - 1)
        task_ids = list(dict.fromkeys(
            [tid for tid in mentioned if isinstance(tid, str)]
            + [member.decode() for member in newest]))
        pipe = client.pipeline(transaction=False)
        for task_id in task_ids:
            pipe.hmget(op_key(task_id), (*SUMMARY_FIELDS, *_EVENT_FIELDS))
        rows = await pipe.execute()
        secret = get_store().secret
        found: list[Operation] = []
        for task_id, values in zip(task_ids, rows, strict=True):
            fields = dict(zip((*SUMMARY_FIELDS, *_EVENT_FIELDS), values, strict=True))
            raw = {name.encode(): value for name, value in fields.items()
                   if value is not None and name in SUMMARY_FIELDS}
            if not raw:
                continue  # expired
            operation = Operation.from_hash(task_id, raw, secret)
            if operation.owner != str(self.owner):
                continue  # never another owner's, whatever the log or index says
            if operation.terminal and not self._ended_since(fields.get(
                    f"ev:{operation.state}"), last):
                continue
            found.append(operation)
        found.sort(key=lambda operation: operation.created_at)
        return [Event(last, {**event_data(
            operation.task_id, operation.state, progress_body(operation.progress),
            error=operation.error if operation.terminal else None), "snapshot": True})
            for operation in found]

    def _ended_since(self, recorded: bytes | None, last: int) -> bool:
        """True when the terminal event's seq is one the client cannot have had."""
        if recorded is None:
            return False  # ended before the log knew it: nothing the client missed
        # `after` above `last`: the client's number is from a counter that has since expired,
        # so every seq of today's counter is news to it.
        return self.after > last or int(recorded) > self.after
