"""The per-owner event log on a real Redis: numbered, in order, bounded, gaps reported."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis
import redis.asyncio as aredis

from async_request.events import EventLog, Relay, parse_after

pytestmark = pytest.mark.integration


def test_events_are_numbered_per_owner_and_read_back_after_a_seq(local_redis_url: str) -> None:
    log = EventLog(max_length=1000, ttl_sec=60)
    client = redis.Redis.from_url(local_redis_url)
    alice, bob = f"user:alice-{uuid.uuid4()}", f"user:bob-{uuid.uuid4()}"
    seqs = [log.append(client, alice, f"t{i}", {"task_id": f"t{i}", "status": "pending"})
            for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    assert log.append(client, bob, "b", {"task_id": "b", "status": "pending"}) == 1

    async def read(owner: str, after: int) -> list[tuple[int, str]]:
        async with aredis.Redis.from_url(local_redis_url) as aclient:
            backlog = await log.since(aclient, owner, after)
            assert not backlog.gap and backlog.last == (5 if owner == alice else 1)
            return [(e.seq, e.data["task_id"]) for e in backlog.events]

    assert asyncio.run(read(alice, 2)) == [(3, "t2"), (4, "t3"), (5, "t4")]
    assert asyncio.run(read(alice, 5)) == []
    assert asyncio.run(read(bob, 0)) == [(1, "b")]


def test_a_trimmed_log_or_a_number_from_an_old_counter_is_a_gap(local_redis_url: str) -> None:
    log = EventLog(max_length=10, ttl_sec=60)
    client = redis.Redis.from_url(local_redis_url)
    owner = f"user:carol-{uuid.uuid4()}"
    for i in range(300):
        log.append(client, owner, f"t{i}", {"task_id": f"t{i}", "status": "pending"})

    async def backlog(after: int) -> tuple[bool, list[int]]:
        async with aredis.Redis.from_url(local_redis_url) as aclient:
            found = await log.since(aclient, owner, after)
            return found.gap, [e.seq for e in found.events]

    gap, seqs = asyncio.run(backlog(0))
    assert gap and seqs == sorted(seqs) and seqs[-1] == 300 and len(seqs) < 300
    assert asyncio.run(backlog(299)) == (False, [300])
    assert asyncio.run(backlog(10_000)) == (True, [])


@pytest.mark.parametrize(("value", "parsed"), [(5, 5), ("17", 17), (" 3 ", 3), (0, 0),
                                               (-1, None), ("x", None), (True, None),
                                               (None, None), (2.5, None)])
def test_parse_after(value: object, parsed: int | None) -> None:
    assert parse_after(value) == parsed


def test_a_state_is_logged_once_per_operation_progress_every_time(local_redis_url: str) -> None:
    log = EventLog(max_length=1000, ttl_sec=60)
    client = redis.Redis.from_url(local_redis_url)
    owner, task_id = f"user:dan-{uuid.uuid4()}", str(uuid.uuid4())
    client.hset(f"async_request:op:{task_id}", "state", "running")
    client.expire(f"async_request:op:{task_id}", 60)
    done = {"task_id": task_id, "status": "completed"}
    first = log.append(client, owner, task_id, done, once="completed")
    assert log.append(client, owner, task_id, done, once="completed") == first  # redelivered
    tick = {"task_id": task_id, "status": "running", "progress": {"current": 1}}
    assert log.append(client, owner, task_id, tick) == first + 1
    assert log.append(client, owner, task_id, tick) == first + 2


def test_a_relay_gives_each_seq_once_in_any_arrival_order() -> None:
    relay = Relay(floor=5)
    assert [relay.fresh(seq) for seq in (3, 5, 7, 6, 7, None, None, 8)] == [
        False, False, True, True, False, True, True, True]
