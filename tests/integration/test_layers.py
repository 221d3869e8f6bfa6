"""async_request.layers.RedisChannelLayer on a real Redis: what its two-call group_send sends,
and what the store's scripts send for it (`layers.Fold`), the stock channels_redis layer
receives, with the same expiry and capacity rules."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid

import pytest
from channels_redis.core import RedisChannelLayer as StockLayer

from async_request.auth import Owner
from async_request.events import Append, EventLog, Logged
from async_request.layers import Fold, RedisChannelLayer
from async_request.notifications import event_data, group_for, layer_message
from async_request.store import OperationStore

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


# Folded sends: the store's CLAIM and TERMINAL scripts tell the owner's group themselves.

def folded(local_redis_url: str, **config: object) -> tuple[OperationStore, Fold, StockLayer]:
    ours, stock = layers(local_redis_url, **config)
    store = OperationStore(local_redis_url, expires_sec=60, secret="s" * 32, lease_sec=5)
    return store, Fold(ours, local_redis_url), stock


def entry(fold: Fold, owner: str, task_id: str, status: str, named: str | None = None,
          error: str | None = None) -> Append:
    """What notifications.logged builds, with this test's layer."""
    named = named or owner
    log = EventLog(max_length=1000, ttl_sec=60)
    base = log.entry(named, task_id, event_data(task_id, status, error=error), once=status)
    tell = fold.tell(group_for(Owner.parse(named)), layer_message(task_id, status, error=error))
    assert tell is not None
    return dataclasses.replace(base, tell=tell)


def test_claim_and_outcome_send_their_events_in_the_same_call(local_redis_url: str) -> None:
    store, fold, stock = folded(local_redis_url)
    owner, task_id = f"user:fold-{uuid.uuid4()}", str(uuid.uuid4())
    asyncio.run(store.accept(task_id, owner, "/api/x/", "GET"))

    async def listen() -> tuple[str, str]:
        local, plain = await stock.new_channel(), f"plain-{uuid.uuid4().hex}"
        for channel in (local, plain):
            await stock.group_add(group_for(Owner.parse(owner)), channel)
        return local, plain

    local, plain = asyncio.run(listen())
    claim = store.claim(task_id, "w1", entry(fold, owner, task_id, "running"))
    assert (claim.action, claim.seq, claim.told) == ("run", 1, True)
    ended = store.fail(task_id, "boom", entry(fold, owner, task_id, "failed", error="boom"))
    assert ended == Logged(2, True)

    async def received() -> list[dict[str, object]]:
        return [await stock.receive(channel) for channel in (local, plain, local, plain)]

    running = {"type": "async_request.task", "task_id": task_id, "status": "running",
               "action": "async_request", "seq": 1}
    failed = {**running, "status": "failed", "seq": 2, "error": "boom"}
    assert asyncio.run(received()) == [running, running, failed, failed]


def test_a_claim_for_another_owner_is_not_sent_and_a_failed_send_changes_nothing(
        local_redis_url: str) -> None:
    store, fold, _ = folded(local_redis_url)
    owner, task_id = f"user:fold-{uuid.uuid4()}", str(uuid.uuid4())
    asyncio.run(store.accept(task_id, owner, "/api/x/", "GET"))
    forged = f"user:forged-{uuid.uuid4()}"
    claim = store.claim(task_id, "w1", entry(fold, owner, task_id, "running", named=forged))
    assert (claim.action, claim.seq, claim.told) == ("run", None, False)
    # A group key that is not a sorted set: the send fails, the outcome is stored and logged.
    store.client.set(fold.layer._group_key(group_for(Owner.parse(owner))), "not a zset")
    ended = store.finish(task_id, {"status": 200}, entry(fold, owner, task_id, "completed"))
    assert ended == Logged(1, False)
    operation = store.get(task_id)
    assert operation is not None and operation.state == "completed"


def test_capacity_holds_for_folded_sends(local_redis_url: str) -> None:
    store, fold, stock = folded(local_redis_url, capacity=1)
    owner = f"user:fold-{uuid.uuid4()}"
    channel = asyncio.run(stock.new_channel())
    asyncio.run(stock.group_add(group_for(Owner.parse(owner)), channel))
    for _ in range(2):  # the second claim's event is over the channel's capacity: dropped
        task_id = str(uuid.uuid4())
        asyncio.run(store.accept(task_id, owner, "/api/x/", "GET"))
        assert store.claim(task_id, "w1", entry(fold, owner, task_id, "running")).told
    key = stock.prefix + stock.non_local_name(channel)
    assert store.client.zcard(key) == 1


@pytest.mark.parametrize("config, url", [
    ({}, "redis://127.0.0.1:1/0"),                     # another Redis
    ({"symmetric_encryption_keys": ["k" * 32]}, ""),   # encrypted messages
    ({"channel_capacity": {"http.*": 5}}, ""),          # capacities per channel
])
def test_only_a_plain_layer_on_the_store_redis_is_folded(
        local_redis_url: str, config: dict[str, object], url: str) -> None:
    ours, stock = layers(local_redis_url, **config)
    assert not Fold(ours, url or local_redis_url).able
    assert not Fold(stock, local_redis_url).able
    assert Fold(layers(local_redis_url)[0], local_redis_url).able
    assert Fold(ours, url or local_redis_url).tell("g", {"type": "t"}) is None


def test_the_web_apps_pending_is_logged_and_sent_in_one_call(local_redis_url: str) -> None:
    store, fold, stock = folded(local_redis_url)
    owner, task_id = f"anon:fold-{uuid.uuid4()}", str(uuid.uuid4())
    log = EventLog(max_length=1000, ttl_sec=60)

    async def scenario() -> tuple[Logged, dict[str, object]]:
        channel = await stock.new_channel()
        await stock.group_add(group_for(Owner.parse(owner)), channel)
        tell = fold.tell(group_for(Owner.parse(owner)), layer_message(task_id, "pending"))
        assert tell is not None
        done = await log.aappend_and_tell(store.aclient(), owner, task_id,
                                          event_data(task_id, "pending"), tell, once="pending")
        return done, await stock.receive(channel)

    done, message = asyncio.run(scenario())
    assert done == Logged(1, True)
    assert message == {"type": "async_request.task", "task_id": task_id, "status": "pending",
                       "action": "async_request", "seq": 1}


# Receive: one call per message while messages wait on a process-local channel.

def test_our_receive_gets_every_message_in_order_and_leaves_no_backup(
        local_redis_url: str) -> None:
    async def scenario() -> None:
        ours, stock = layers(local_redis_url)
        first, second = await ours.new_channel(), await ours.new_channel()
        await stock.group_add("g", first)
        for seq in range(5):
            await stock.group_send("g", {"type": "t", "seq": seq})
            await stock.send(second, {"type": "t", "seq": 10 + seq})
        assert [(await ours.receive(first))["seq"] for _ in range(5)] == list(range(5))
        assert [(await ours.receive(second))["seq"] for _ in range(5)] == list(range(10, 15))
        key = ours.prefix + ours.non_local_name(first)
        connection = ours.connection(0)
        assert await connection.zcard(key) == 0
        # The last delivered message's backup entry goes with the next receive's call.
        await stock.send(first, {"type": "t", "seq": 99})
        assert (await ours.receive(first))["seq"] == 99
        assert await connection.zcard(ours._backup_channel_name(key)) == 1
        assert 0 < await connection.ttl(ours._backup_channel_name(key)) <= ours.expiry
        await ours.flush()
        await stock.flush()

    asyncio.run(scenario())


def test_a_receive_cancelled_while_waiting_loses_nothing(local_redis_url: str) -> None:
    async def scenario() -> None:
        ours, stock = layers(local_redis_url)
        channel = await ours.new_channel()
        waiting = asyncio.ensure_future(ours.receive(channel))
        await asyncio.sleep(0.2)  # blocked in BZPOPMIN on the empty channel
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        await stock.send(channel, {"type": "t", "seq": 1})
        await stock.send(channel, {"type": "t", "seq": 2})
        got = [(await asyncio.wait_for(ours.receive(channel), 10))["seq"] for _ in range(2)]
        assert got == [1, 2]
        await ours.flush()
        await stock.flush()

    asyncio.run(scenario())
