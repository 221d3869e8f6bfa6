"""async_request.layers.RedisChannelLayer on a real Redis: what its two-call group_send sends,
the stock channels_redis layer receives, with the same expiry and capacity rules."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from channels_redis.core import RedisChannelLayer as StockLayer

from async_request.layers import RedisChannelLayer

pytestmark = pytest.mark.integration


def layers(local_redis_url: str, **config: object) -> tuple[RedisChannelLayer, StockLayer]:
    prefix = f"asgi-{uuid.uuid4().hex[:8]}"
    return (RedisChannelLayer(hosts=[local_redis_url], prefix=prefix, **config),
            StockLayer(hosts=[local_redis_url], prefix=prefix, **config))


def test_group_send_reaches_every_member_as_the_stock_layer_reads_it(local_redis_url: str) -> None:
    async def scenario() -> None:
        ours, stock = layers(local_redis_url)
        local, plain = await stock.new_channel(), "plain-channel"
        await stock.group_add("owners", local)
        await stock.group_add("owners", plain)
        await ours.group_send("owners", {"type": "async_request.task", "seq": 1})
        assert await stock.receive(local) == {"type": "async_request.task", "seq": 1}
        assert await stock.receive(plain) == {"type": "async_request.task", "seq": 1}
        await ours.group_send("nobody", {"type": "x"})  # an empty group: nothing to do
        await ours.flush()
        await stock.flush()

    asyncio.run(scenario())


def test_capacity_and_group_expiry_hold(local_redis_url: str) -> None:
    async def scenario() -> None:
        ours, stock = layers(local_redis_url, capacity=2, group_expiry=60)
        channel = await stock.new_channel()
        await stock.group_add("full", channel)
        for seq in range(3):  # the third is over the channel's capacity: dropped
            await ours.group_send("full", {"type": "t", "seq": seq})
        assert [(await stock.receive(channel))["seq"] for _ in range(2)] == [0, 1]
        # A member added longer ago than group_expiry is dropped, not sent to.
        stale = await stock.new_channel()
        connection = stock.connection(0)
        await connection.zadd(stock._group_key("full"), {stale: int(time.time()) - 120})
        await ours.group_send("full", {"type": "t", "seq": 9})
        members = await connection.zrange(stock._group_key("full"), 0, -1)
        assert [m.decode() for m in members] == [channel]
        assert (await stock.receive(channel))["seq"] == 9
        await ours.flush()
        await stock.flush()

    asyncio.run(scenario())
