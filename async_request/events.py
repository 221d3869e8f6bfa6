"""The owner's event log: every change of an operation, numbered per owner, kept in Redis.

Why: the channel layer is at-most-once. A frame sent while the owner's socket reconnects, or
past channels_redis' capacity, is gone. So every event (accepted, started, progress, and the
terminal state) is first appended here, in one Lua call: the owner's sequence number is
incremented and the event added under the stream id `<seq>-0` to a Redis stream capped at
ASYNC_REQUEST_EVENT_LOG_LENGTH entries that expires ASYNC_REQUEST_EVENT_LOG_SEC after its last
event. Then it is pushed live, carrying its `seq`. A client that reconnects says the last seq
it has (WebSocket `{"action": "resume", "after": n}` or `?after=n`, SSE `Last-Event-ID`) and
`since()` hands back what followed, in order; then the live stream goes on, and anything with
a seq the client already has is dropped.

The counter outlives the log (SEQ_KEEP_SEC), so numbers never restart under a client that
holds an old one; a client whose `after` is older than the log's first entry is told so
(`Backlog.gap`) and reads the list endpoint to catch up instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio as aredis

from async_request.records import events_key, seq_key

#: How long the sequence counter lives after the last event (well past the log itself).
SEQ_KEEP_SEC = 30 * 86400
#: At most this many events per catch-up call (a client with more asks again).
MAX_CATCH_UP = 1000

#: KEYS seq, log; ARGV event JSON, max length, log ttl sec, seq ttl sec. Returns the seq.
APPEND = """
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], seq .. '-0', 'e', ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return seq
"""


@dataclass(frozen=True)
class Event:
    """One numbered event: `data` is the frame's JSON object (task_id, status, action, ...)."""

    seq: int
    data: dict[str, Any]

    def as_json(self) -> str:
        """The event as the `data` string of a frame (with its `seq`)."""
        return json.dumps({**self.data, "seq": self.seq})


@dataclass(frozen=True)
class Backlog:
    """What a client missed after `after`: the events in order; `gap` when some are gone."""

    events: list[Event] = field(default_factory=list)
    gap: bool = False
    last: int = 0


@dataclass(frozen=True)
class EventLog:
    """Appends and reads the per-owner logs of one Redis."""

    max_length: int
    ttl_sec: int

    def _args(self, data: dict[str, Any]) -> list[Any]:
        return [json.dumps(data), self.max_length, self.ttl_sec, SEQ_KEEP_SEC]

    def append(self, client: redis.Redis, owner: str, data: dict[str, Any]) -> Event:
        """Append an event (sync: the worker); the event with its seq."""
        seq = client.eval(APPEND, 2, seq_key(owner), events_key(owner), *self._args(data))
        return Event(int(seq), data)

    async def aappend(self, client: aredis.Redis, owner: str, data: dict[str, Any]) -> Event:
        """Append an event (async: the web app); the event with its seq."""
        seq = await client.eval(APPEND, 2, seq_key(owner), events_key(owner),
                                *self._args(data))
        return Event(int(seq), data)

    async def since(self, client: aredis.Redis, owner: str, after: int) -> Backlog:
        """The owner's events with a seq above `after`, oldest first (at most MAX_CATCH_UP)."""
        rows: list[tuple[bytes, dict[bytes, bytes]]] = await client.xrange(  # type: ignore[assignment]
            events_key(owner), f"{after + 1}-0", "+", count=MAX_CATCH_UP)
        last = int(await client.get(seq_key(owner)) or 0)
        events = [Event(int(entry_id.split(b"-")[0]), json.loads(fields[b"e"]))
                  for entry_id, fields in rows]
        first = events[0].seq if events else last + 1
        # A gap: entries after `after` were trimmed or expired, or `after` is from a counter
        # that has since expired (higher than any number given now).
        gap = after > last or (after < last and first > after + 1)
        return Backlog(events, gap=gap, last=last)


def parse_after(value: Any) -> int | None:
    """A client's `after` / `Last-Event-ID`: a non-negative integer, else None (ignored)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None
