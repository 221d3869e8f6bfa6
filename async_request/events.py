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
(`Backlog.gap`) and gets the current state of its operations instead (`resume.py`, which both
transports use for their catch-up).
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio as aredis

from async_request.auth import Owner
from async_request.layers import TELL_FUNCTION, Tell
from async_request.records import events_key, op_key, seq_key

#: How long the sequence counter lives after the last event (well past the log itself).
SEQ_KEEP_SEC = 30 * 86400
#: At most this many events per catch-up call (a client with more asks again).
MAX_CATCH_UP = 1000

#: The append as a Lua function, for this module's APPEND and for the store's scripts that
#: log an event in the same call as the state change (`_store_scripts.CLAIM`, `TERMINAL`):
#: one round trip per change instead of two. Returns the seq. With a once-field
#: (`ev:<state>`), an event already logged for this operation is not logged again: its first
#: seq is returned.
APPEND_FUNCTION = """
local function append_event(seq_key, log_key, op_key, event, max_length, log_ttl, seq_ttl, once)
  if once ~= '' then
    local first = redis.call('HGET', op_key, once)
    if first then return tonumber(first) end
  end
  local seq = redis.call('INCR', seq_key)
  redis.call('XADD', log_key, 'MAXLEN', '~', max_length, seq .. '-0', 'e', event)
  redis.call('EXPIRE', log_key, log_ttl)
  redis.call('EXPIRE', seq_key, seq_ttl)
  if once ~= '' and redis.call('EXISTS', op_key) == 1 then
    redis.call('HSET', op_key, once, seq)
  end
  return seq
end
"""

#: KEYS seq, log, op; ARGV event JSON, max length, log ttl sec, seq ttl sec, once-field.
APPEND = APPEND_FUNCTION + """
return append_event(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
"""

#: APPEND, then the event sent to the owner's channel-layer group (`layers.TELL_FUNCTION`):
#: KEYS as APPEND's, then the group; ARGV as APPEND's, then `Tell.spec` and now. Returns
#: {seq, told}.
APPEND_TELL = APPEND_FUNCTION + TELL_FUNCTION + """
local seq = append_event(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
return {seq, tell_group(KEYS[4], ARGV[6], seq, ARGV[7])}
"""


@dataclass(frozen=True)
class Append:
    """One event to append, as the arguments of `append_event`: the owner's counter and log
    (KEYS of the calling script) and the event with the log's sizes (its ARGV); with `tell`,
    also its live send, for the script to run once logged (`layers.Fold`)."""

    owner: str
    keys: tuple[str, str]
    args: tuple[str, int, int, int, str]
    tell: Tell | None = None


@dataclass(frozen=True)
class Logged:
    """What a store call did with the `Append` it was given: the event's seq (None: not
    logged, as when the stored owner is not the one named; the caller logs it for the stored
    one) and whether the same call also sent it live (then nobody sends it again)."""

    seq: int | None = None
    told: bool = False


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

    def entry(self, owner: Owner | str, task_id: str, data: dict[str, Any],
              once: str | None = None) -> Append:
        """The append of an event of `task_id` to `owner`'s log, for a script to run."""
        return Append(str(owner), (seq_key(str(owner)), events_key(str(owner))),
                      (json.dumps(data), self.max_length, self.ttl_sec, SEQ_KEEP_SEC,
                       f"ev:{once}" if once else ""))

    def _call(self, owner: Owner | str, task_id: str, data: dict[str, Any],
              once: str | None) -> tuple[Any, ...]:
        entry = self.entry(owner, task_id, data, once)
        return (APPEND, 3, *entry.keys, op_key(task_id), *entry.args)

    def append(self, client: redis.Redis, owner: Owner | str, task_id: str,
               data: dict[str, Any], *, once: str | None = None) -> int:
        """Append an event of `task_id` (sync: the worker); its seq. `once`: see APPEND."""
        return int(client.eval(*self._call(owner, task_id, data, once)))

    async def aappend(self, client: aredis.Redis, owner: Owner | str, task_id: str,
                      data: dict[str, Any], *, once: str | None = None) -> int:
        """Append an event of `task_id` (async: the web app); its seq."""
        return int(await client.eval(*self._call(owner, task_id, data, once)))

    async def aappend_and_tell(self, client: aredis.Redis, owner: Owner | str, task_id: str,
                               data: dict[str, Any], tell: Tell, *,
                               once: str | None = None) -> Logged:
        """`aappend`, and the event sent live in the same call (`layers.Fold`: the web app's
        `pending`, the worker's progress; one round trip instead of three)."""
        entry = self.entry(owner, task_id, data, once)
        seq, told = await client.eval(APPEND_TELL, 4, *entry.keys, op_key(task_id),
                                      tell.group_key, *entry.args, tell.spec,
                                      repr(time.time()))
        return Logged(int(seq), bool(int(told)))

    async def since(self, client: aredis.Redis, owner: Owner | str, after: int) -> Backlog:
        """The owner's events with a seq above `after`, oldest first (at most MAX_CATCH_UP)."""
        rows: list[tuple[bytes, dict[bytes, bytes]]] = await client.xrange(  # type: ignore[assignment]
            events_key(str(owner)), f"{after + 1}-0", "+", count=MAX_CATCH_UP)
        last = int(await client.get(seq_key(str(owner))) or 0)
        events = [Event(int(entry_id.split(b"-")[0]), json.loads(fields[b"e"]))
                  for entry_id, fields in rows]
        first = events[0].seq if events else last + 1
        # A gap: entries after `after` were trimmed or expired, or `after` is from a counter
        # that has since expired (higher than any number given now).
        gap = after > last or (after < last and first > after + 1)
        return Backlog(events, gap=gap, last=last)


class Relay:
    """What one subscriber (a socket, an event stream) was given: each seq at most once.

    `floor`: the client said it has everything up to it (its `after`). `sent`: the seqs sent
    since, so a live event that the catch-up already gave is dropped. Not "drop below the
    highest sent": the web app's and the worker's events reach the layer in either order.
    """

    def __init__(self, floor: int = 0, memory: int = 10_000) -> None:
        self.floor = floor
        self._sent: set[int] = set()
        self._order: deque[int] = deque()
        self._memory = memory

    def fresh(self, seq: int | None) -> bool:
        """True (and remembered) when `seq` was not given yet; events without one always are."""
        if seq is None:
            return True
        if seq <= self.floor or seq in self._sent:
            return False
        self._sent.add(seq)
        self._order.append(seq)
        if len(self._order) > self._memory:
            self._sent.discard(self._order.popleft())
        return True


def parse_after(value: Any) -> int | None:
    """A client's `after` / `Last-Event-ID`: a non-negative integer, else None (ignored)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def event_log() -> EventLog:
    """The event log as the settings size it."""
    from async_request.settings import get_settings

    settings = get_settings()
    return EventLog(settings.event_log_length, settings.event_log_sec)
