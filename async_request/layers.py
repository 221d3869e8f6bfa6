"""A channels_redis layer whose `group_send` takes two Redis round trips instead of four.

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
"""

from __future__ import annotations

import logging
import time
from typing import Any

from channels_redis.core import RedisChannelLayer as _RedisChannelLayer

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


class RedisChannelLayer(_RedisChannelLayer):  # type: ignore[misc]
    """channels_redis' layer with a two-call `group_send` (see the module docstring)."""

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
