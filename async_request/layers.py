"""A channels_redis layer whose `group_send` takes two Redis round trips instead of four, and
whose receive takes one instead of four while messages wait.

channels_redis 4's `group_send` makes four calls: ZREMRANGEBYSCORE (the group's expired
members), ZRANGE (its members), a pipeline of ZREMRANGEBYSCORE (each channel's expired
messages), then a Lua script that adds the message where there is capacity. Every update a
worker pushes (running, then the outcome) and the web app's `pending` go through it, and in a
profile of the worker it was 12 % of the samples. Here the first two are one Lua call and the
last two another: the same keys, the same expiry, group expiry and capacity rules and the same
message per channel (with its `__asgi_channel__`), so every channels_redis layer, this one or
the stock one, receives what it sends. With several hosts (sharding) it is channels_redis' own.

    CHANNEL_LAYERS = {"default": {
        "BACKEND": "async_request.layers.RedisChannelLayer",
        "CONFIG": {...},   # what channels_redis.core.RedisChannelLayer takes
    }}

It builds on channels_redis' helpers for the key names and the per-channel messages
(`_group_key`, `_map_channel_keys_to_connection`), tested with channels-redis 4.2 and 4.3.

**Receive.** channels_redis receives each message in four calls (an EVAL that puts the
backup queue back, BZPOPMIN, ZADD into the backup, and after delivery ZPOPMIN of the backup);
a web process with many sockets receives three messages per operation, and in a profile of
the web server under a burst that was a quarter of its samples. For a process-local channel
(every consumer's own, `specific.<id>!`, which only this process reads) `POP` does the first
three in one call, and the delivered message's backup entry is dropped by the next `POP`
instead of a call of its own; BZPOPMIN waits only when the channel is empty. The backup
guarantee stays: a receive cancelled after the pop leaves its message in the backup, and the
next receive puts it back.

**Folded sends.** A worker's `running` and outcome events are each logged by the store's
script that makes the change (`_store_scripts.CLAIM`, `TERMINAL`), the web app's `pending`
and the worker's progress by `events.APPEND_TELL`. When this layer lives in
the store's Redis (one host, the same URL), sends msgpack without encryption and has no
per-channel capacities, `Fold.tell` turns the event into arguments for `TELL_FUNCTION`, which
that same script runs: the group's members, the expiry and capacity rules and the message
above, in the round trip that changes the state instead of two more. The script adds the
`seq` it just logged and each key's `__asgi_channel__` to the msgpack map it is given. Any
other layer (the stock one, sharded, encrypted, in-memory) is told by `group_send` as before.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import msgpack
from channels_redis.core import RedisChannelLayer as _RedisChannelLayer
from channels_redis.serializers import MsgPackSerializer
from redis.connection import parse_url

logger = logging.getLogger(__name__)

#: KEYS group; ARGV oldest score kept. The group's live members.
MEMBERS = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

#: KEYS the channels; ARGV their messages, their capacities, now, message expiry sec. Drops
#: each channel's expired messages, then adds the message where there is room. Returns how
#: many channels were over capacity.
SEND = """
local n = #KEYS
local now, expiry = tonumber(ARGV[2 * n + 1]), tonumber(ARGV[2 * n + 2])
local over = 0
for i = 1, n do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, math.floor(now) - expiry)
  if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[n + i]) then
    redis.call('ZADD', KEYS[i], now, ARGV[i])
    redis.call('EXPIRE', KEYS[i], expiry)
  else
    over = over + 1
  end
end
return over
"""


#: `tell_group(group_key, spec, seq, now)`: `group_send` inside a store script, after it logged
#: the event as `seq` (`Fold.tell` packs `spec`: the channels' key prefix, the group's and the
#: messages' expiry, the capacity, the serializer's random prefix, the event's entry count and
#: its msgpack entries). Run under pcall: a failure changes nothing the script did before it;
#: returns 1 when sent (also to an empty group), 0 when the caller should send it itself.
TELL_FUNCTION = """
local function tell_group(group_key, spec, seq, now)
  local ok = pcall(function()
    local prefix, group_expiry, expiry, capacity, noise, count, entries =
      unpack(cmsgpack.unpack(spec))
    now = tonumber(now)
    redis.call('ZREMRANGEBYSCORE', group_key, 0, math.floor(now) - group_expiry)
    local by_key, order = {}, {}
    for _, name in ipairs(redis.call('ZRANGE', group_key, 0, -1)) do
      local bang = string.find(name, '!', 1, true)
      local key = prefix .. (bang and string.sub(name, 1, bang) or name)
      if not by_key[key] then by_key[key] = {}; order[#order + 1] = key end
      table.insert(by_key[key], name)
    end
    local tail = cmsgpack.pack('seq', seq)
    for _, key in ipairs(order) do
      redis.call('ZREMRANGEBYSCORE', key, 0, math.floor(now) - expiry)
      if redis.call('ZCOUNT', key, '-inf', '+inf') < capacity then
        redis.call('ZADD', key, now, noise .. string.char(128 + count + 2) .. entries .. tail
                   .. cmsgpack.pack('__asgi_channel__', by_key[key]))
        redis.call('EXPIRE', key, expiry)
      end
    end
  end)
  if ok then return 1 end
  return 0
end
"""

#: A fixmap holds up to 15 entries; the script adds two (`seq`, `__asgi_channel__`).
_MAX_ENTRIES = 13


@dataclass(frozen=True)
class Tell:
    """One event's `group_send`, for a store script to run (`TELL_FUNCTION`)."""

    group_key: bytes
    spec: bytes


class Fold:
    """Whether a layer's sends can run inside the store's scripts, and their arguments."""

    def __init__(self, layer: Any, redis_url: str) -> None:
        self.layer = layer
        self.redis_url = redis_url
        self.able = _foldable(layer, redis_url)

    def tell(self, group: str, message: dict[str, Any]) -> Tell | None:
        """`message` (without its `seq`) sent to `group` by the script that logs it; None when
        this layer cannot be folded or the message is not a small map."""
        if not self.able or len(message) > _MAX_ENTRIES or "seq" in message:
            return None
        layer = self.layer
        length = layer._serializer.random_prefix_length
        noise = random.getrandbits(8 * length).to_bytes(length, "big") if length else b""
        entries = msgpack.packb(message)[1:]  # without the fixmap's header byte
        spec = msgpack.packb([layer.prefix, int(layer.group_expiry), int(layer.expiry),
                              int(layer.capacity), noise, len(message), entries],
                             use_bin_type=False)  # raw strings: what cmsgpack reads
        return Tell(layer._group_key(group), spec)


def _foldable(layer: Any, redis_url: str) -> bool:
    """This module's layer on the store's one Redis, msgpack unencrypted, one capacity."""
    if not isinstance(layer, RedisChannelLayer) or layer.ring_size != 1:
        return False
    serializer = layer._serializer
    if type(serializer) is not MsgPackSerializer or serializer.crypter is not None:
        return False
    if layer.channel_capacity:
        return False
    address = layer.hosts[0].get("address")
    if not isinstance(address, str) or set(layer.hosts[0]) - {
            "address", "socket_timeout", "max_connections", "socket_connect_timeout",
            "health_check_interval", "retry_on_timeout"}:
        return False
    where = ("host", "port", "db", "path", "username", "password")
    try:
        ours, theirs = parse_url(redis_url), parse_url(address)  # type: ignore[no-untyped-call]
    except ValueError:
        return False
    defaults = {"host": "localhost", "port": 6379, "db": 0}
    return all(ours.get(name, defaults.get(name)) == theirs.get(name, defaults.get(name))
               for name in where)


#: KEYS a process-local channel, its backup; ARGV how many delivered messages the backup
#: still holds (their clean-up was deferred to this call), the message expiry sec. Drops
#: those, puts the rest back (a receive cancelled before it delivered), then moves the oldest
#: message into the backup and returns it; false when the channel is empty. The backup
#: expires like a message: a process that stops receiving leaves nothing behind for good.
POP = """
if tonumber(ARGV[1]) > 0 then redis.call('ZPOPMIN', KEYS[2], ARGV[1]) end
local backed_up = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for i = #backed_up, 1, -2 do
  redis.call('ZADD', KEYS[1], backed_up[i], backed_up[i - 1])
end
redis.call('DEL', KEYS[2])
local popped = redis.call('ZPOPMIN', KEYS[1])
if #popped == 0 then return false end
redis.call('ZADD', KEYS[2], popped[2], popped[1])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return popped[1]
"""


class RedisChannelLayer(_RedisChannelLayer):  # type: ignore[misc]
    """channels_redis' layer with a two-call `group_send` and a one-call receive (see the
    module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Per process-local channel key: messages delivered whose backup entry is not yet
        #: dropped (the next POP drops them).
        self._delivered: dict[str, int] = {}

    async def _brpop_with_clean(self, index: int, channel: str, timeout: float) -> Any:
        """channels_redis' receive step (restore the backup, pop a message into it) in one
        call when a message waits on a process-local channel; blocks on BZPOPMIN only when
        none does."""
        if not channel.endswith("!"):
            return await super()._brpop_with_clean(index, channel, timeout)
        backup = self._backup_channel_name(channel)
        connection = self.connection(index)
        # Taken before the call and not given back on an error: if Redis ran POP but its
        # answer was lost, giving it back would drop the message POP just moved; not giving
        # it back at worst delivers one message twice (frames carry a seq; clients dedupe).
        delivered = self._delivered.pop(channel, 0)
        member = await connection.eval(POP, 2, channel, backup, delivered, int(self.expiry))
        if member:
            return member
        result = await connection.bzpopmin(channel, timeout=timeout)
        if result is None:
            return None
        _, member, score = result
        pipe = connection.pipeline(transaction=False)
        pipe.zadd(backup, {member: float(score)})
        pipe.expire(backup, int(self.expiry))
        await pipe.execute()
        return member

    async def _clean_receive_backup(self, index: int, channel: str) -> None:
        """Drop a delivered message's backup entry: for a process-local channel in the next
        POP (no call of its own), else as channels_redis does."""
        if not channel.endswith("!"):
            await super()._clean_receive_backup(index, channel)
            return
        self._delivered[channel] = self._delivered.get(channel, 0) + 1

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Send `message` to every channel of `group`."""
        if self.ring_size != 1:
            await super().group_send(group, message)
            return
        self.require_valid_group_name(group)  # raises TypeError naming a bad one
        connection = self.connection(0)
        names = await connection.eval(MEMBERS, 1, self._group_key(group),
                                      int(time.time()) - self.group_expiry)
        if not names:
            return
        by_connection, messages, capacities = self._map_channel_keys_to_connection(
            [name.decode("utf8") for name in names], message)
        keys = by_connection[0]
        over = await connection.eval(
            SEND, len(keys), *keys, *(messages[key] for key in keys),
            *(capacities[key] for key in keys), time.time(), int(self.expiry))
        if over:
            logger.info("%s of %s channels over capacity in group %s", over, len(names), group)
