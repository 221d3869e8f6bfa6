"""The per-owner event log on a real Redis: numbered, in order, bounded, gaps reported."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis
import redis.asyncio as aredis

from async_request.events import EventLog, parse_after

pytestmark = pytest.mark.integration


def test_events_are_numbered_per_owner_and_read_back_after_a_seq(redis_url: str) -> None:
    log = EventLog(max_length=1000, ttl_sec=60)
    client = redis.Redis.from_url(redis_url)
    alice, bob = f"user:alice-{uuid.uuid4()}", f"user:bob-{uuid.uuid4()}"
    seqs = [log.append(client, alice, {"task_id": f"t{i}", "status": "pending"}).seq
            for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    assert log.append(client, bob, {"task_id": "b", "status": "pending"}).seq == 1

    async def read(owner: str, after: int) -> list[tuple[int, str]]:
        async with aredis.Redis.from_url(redis_url) as aclient:
            backlog = await log.since(aclient, owner, after)
            assert not backlog.gap and backlog.last == (5 if owner == alice else 1)
            return [(e.seq, e.data["task_id"]) for e in backlog.events]

    assert asyncio.run(read(alice, 2)) == [(3, "t2"), (4, "t3"), (5, "t4")]
    assert asyncio.run(read(alice, 5)) == []
    assert asyncio.run(read(bob, 0)) == [(1, "b")]


def test_a_trimmed_log_or_a_number_from_an_old_counter_is_a_gap(redis_url: str) -> None:
    log = EventLog(max_length=10, ttl_sec=60)
    client = redis.Redis.from_url(redis_url)
    owner = f"user:carol-{uuid.uuid4()}"
    for i in range(300):
        log.append(client, owner, {"task_id": f"t{i}", "status": "pending"})

    async def backlog(after: int) -> tuple[bool, list[int]]:
        async with aredis.Redis.from_url(redis_url) as aclient:
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
