#!/usr/bin/env python3
"""Benchmark of one sweep (async_request/sweep.py): what it costs as the pending set grows.

A sweep takes its lease, reads at most a batch (100) of ids overdue by the deadline with one
`ZRANGEBYSCORE ... LIMIT`, and for each due id reads its state and envelope, publishes it and
moves its score. Its cost should follow the due batch, not the set's size. For each row the
pending set holds `N` ids accepted just now (not yet due), plus `due` overdue operations
(records and sealed envelopes written by `OperationStore.accept`); the dispatcher only counts
(publishing is the broker's cost, measured in bench/transport.py). Per sweep: the Redis
commands it sent (`INFO stats` total_commands_processed before and after, less the INFO
itself) and its wall time, median and range (min–max) over `--sweeps` sweeps; between two
sweeps (not timed) the lease is dropped and the due ones are made due again.
Redis: `REDIS_URL` when it answers, else a private redis-server; db 6, flushed first.

    .venv/bin/python bench/sweep.py [--sweeps 50]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._stats import median_range  # noqa: E402

SECRET = "b" * 32
DEADLINE_SEC = 30.0


def commands(client: object) -> int:
    return int(client.info("stats")["total_commands_processed"])  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sweeps", type=int, default=50)
    args = parser.parse_args()

    from async_request.dispatch import Dispatcher
    from async_request.envelope import RequestEnvelope
    from async_request.records import PENDING
    from async_request.store import OperationStore
    from async_request.sweep import LEASE_KEY, Sweeper
    from tools.services import ensure_redis, redis_url_with_db

    class Counter(Dispatcher):
        sent = 0

        def send(self, envelope: RequestEnvelope, *, secret: str,
                 lane: str = "default") -> None:
            Counter.sent += 1

    redis_service = ensure_redis()
    try:
        store = OperationStore(redis_url_with_db(redis_service.url, 6), 3600, secret=SECRET)
        client = store.client
        print("| pending ids (not due) | due | Redis commands per sweep | ms per sweep "
              "(median, min–max) |")
        print("|---|---|---|---|")
        for pending, due in ((0, 0), (1_000, 0), (10_000, 0), (10_000, 100)):
            client.flushdb()
            now = time.time()
            for start in range(0, pending, 1000):
                client.zadd(PENDING, {str(uuid.uuid4()): now
                                      for _ in range(min(1000, pending - start))})
            overdue = []
            for _ in range(due):
                task_id = str(uuid.uuid4())
                envelope = RequestEnvelope(
                    task_id=task_id, owner="user:bench-sweep", method="GET",
                    path="/api/v1/orders/", raw_path=b"/api/v1/orders/", query_string=b"",
                    headers=(("authorization", "Bearer " + "x" * 200),), body=b"")
                asyncio.run(store.accept(task_id, "user:bench-sweep", envelope.path, "GET",
                                         envelope=envelope.to_dict(SECRET)))
                overdue.append(task_id)
            sweeper = Sweeper(store, Counter(), deadline_sec=DEADLINE_SEC, secret=SECRET,
                              interval=10)
            sent, times = [], []
            for _ in range(args.sweeps):
                client.delete(LEASE_KEY)
                if overdue:
                    client.zadd(PENDING, {task_id: now - 2 * DEADLINE_SEC
                                          for task_id in overdue})
                before = commands(client)
                started = time.perf_counter()
                published = sweeper.sweep()
                times.append((time.perf_counter() - started) * 1000)
                sent.append(commands(client) - before - 1)
                assert published == due, (published, due)
            med, low, high = median_range(times)
            print(f"| {pending:,} | {due} | {median_range(sent)[0]:g} | "
                  f"{med:.2f} ({low:.2f}–{high:.2f}) |")
    finally:
        redis_service.stop()


if __name__ == "__main__":
    main()
