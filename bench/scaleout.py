#!/usr/bin/env python3
"""Scale-out: throughput of an I/O-bound route with 1, 2 and 4 worker processes on 4 partitions.

The route (`GET /bench/io/`, bench/_scaleout_app.py, the workers' replay target) waits
`--ms` milliseconds (50) and records which worker ran it. Per round and worker count
(rounds rotate the order of the counts, so machine noise hits all of them alike):

1. start the workers at once (`celery worker -P <pool> -c <concurrency>`, prefetch as
   configured: `worker_prefetch_multiplier` 1) and wait until the group has given every one of
   them a partition (from the workers' logs);
2. warm up (2 requests per worker), then send `--per-worker` × workers async requests from
   `--clients` concurrent clients through the web app (202s);
3. wait until every request ran, plus `--settle` seconds for late duplicates; stop the workers
   (SIGTERM).

Prints a table: workers, requests/s (requests / (last end − first 202); and over the middle
80 % of the end times, without start and tail), each worker's share of the requests,
duplicates (runs beyond one per request), missing requests, and the ratio to one worker
(medians of the rounds, ranges in brackets). A private stack per invocation (tansu or one
Apache Kafka node, `--broker`), Redis DB 22 for the stack and 23 for the route's records.

    .venv/bin/python bench/scaleout.py [--broker tansu|apache] [--repeat 3] [--workers 1,2,4]
                                       [--per-worker 100] [--ms 50] [--concurrency 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._stats import median_range  # noqa: E402
from tools.services import redis_url_with_db  # noqa: E402
from tools.stack import CELERY_APP, CeleryProcess, Stack, private_stack  # noqa: E402

PATH = "/bench/io/"
STACK_DB, RECORD_DB = 22, 23
PARTITIONS = 4
GROUP = "bench-scaleout"


def step(what: str) -> None:
    print(f"… {time.strftime('%H:%M:%S')} {what}", file=sys.stderr, flush=True)


@dataclass
class Outcome:
    """One burst against `workers` worker processes."""

    workers: int
    rate: float  # requests / (last end - first 202)
    middle_rate: float  # over the middle 80 % of end times
    shares: list[int]  # requests run by each worker (sorted, largest first)
    duplicates: int
    missing: int
    partitions: list[int] = field(default_factory=list)  # partitions per worker, at start
    finish: list[float] = field(default_factory=list)  # each worker's last end - first 202, s


ASSIGNED = re.compile(r"partitions of this member of group '[^']*': (.*)$", re.M)


def partitions_of(worker: CeleryProcess) -> int:
    """Partitions the worker holds now: its transport's last assignment line (INFO)."""
    found = ASSIGNED.findall(worker.text())
    return 0 if not found or found[-1].strip() == "none" else len(found[-1].split())


def wait_assigned(workers: list[CeleryProcess], timeout: float = 90) -> list[int]:
    """Wait until every worker holds a partition and together all of them (the group is
    stable and the members of the previous count are gone); partitions per worker.

    From the workers' logs: tansu's DescribeGroups lists no members."""
    deadline = time.monotonic() + timeout
    seen: list[int] = []
    while time.monotonic() < deadline:
        seen = [partitions_of(w) for w in workers]
        if all(seen) and sum(seen) == PARTITIONS:
            return seen
        time.sleep(0.1)
    raise RuntimeError(f"{len(workers)} workers: partitions {seen} after {timeout:.0f}s")


def start_workers(stack: Stack, count: int, pool: str, concurrency: int) -> list[CeleryProcess]:
    """`count` workers spawned at once; returns when each logged `ready.`."""
    workers = []
    for _ in range(count):
        name = stack.unique_name("worker")
        args = ["worker", "-l", "INFO", "-P", pool, "-c", str(concurrency),
                "-n", f"{name}@%h", "--without-mingle", "--without-gossip"]
        worker = CeleryProcess.start(name, CELERY_APP, args, stack.log_dir / f"{name}.log",
                                     stack.env(), cwd=stack.root)
        stack.services.append(worker)
        workers.append(worker)
    for worker in workers:
        worker.wait_ready(120, interval=0.1)
    return workers


async def send(base: str, token: str, run: str, ids: range, ms: float,
               clients: int) -> list[float]:
    """Async requests for `ids` from `clients` concurrent clients; the 202 times."""
    accepted: list[float] = []
    todo = iter(ids)
    headers = {"authorization": f"Bearer {token}", "x-async-request": "true"}

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            for i in todo:
                response = await http.get(PATH, params={"run": run, "i": i, "ms": ms},
                                          headers=headers)
                if response.status_code != 202:
                    raise RuntimeError(f"request {i}: {response.status_code} {response.text}")
                accepted.append(time.time())

    await asyncio.gather(*(client() for _ in range(clients)))
    return accepted


def runs(records: redis.Redis, run: str) -> list[tuple[int, int, int, float, float]]:
    """The route's records of `run`: (i, pid, parent pid, start, end)."""
    return [tuple(json.loads(raw)) for raw in records.lrange(f"scaleout:{run}", 0, -1)]


def wait_runs(records: redis.Redis, run: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len({r[0] for r in runs(records, run)}) >= count:
            return
        time.sleep(0.1)


def burst(stack: Stack, base: str, token: str, records: redis.Redis,
          workers: list[CeleryProcess], args: argparse.Namespace) -> Outcome:
    """Warm up, then one burst of `--per-worker` × workers requests; count what ran where."""
    n = len(workers)
    warm = f"warm-{uuid.uuid4().hex[:8]}"
    asyncio.run(send(base, token, warm, range(2 * n), args.ms, min(args.clients, 2 * n)))
    wait_runs(records, warm, 2 * n, 60)
    run = uuid.uuid4().hex[:12]
    total = args.per_worker * n
    accepted = asyncio.run(send(base, token, run, range(total), args.ms, args.clients))
    wait_runs(records, run, total, 60 + total * args.ms / 1000)
    time.sleep(args.settle)
    found = runs(records, run)
    pids = {w.process.pid: index for index, w in enumerate(workers) if w.process is not None}
    by_worker: Counter[int] = Counter()
    last: dict[int, float] = {}
    for _, pid, ppid, _, end in found:
        index = pids.get(pid, pids.get(ppid, -1))
        by_worker[index] += 1
        last[index] = max(last.get(index, end), end)
    ends = sorted(r[4] for r in found)
    distinct = {r[0] for r in found}
    if not ends:
        raise RuntimeError(f"{n} workers: no request ran; logs in {stack.log_dir}")
    low, high = ends[len(ends) // 10], ends[(len(ends) * 9) // 10]
    middle = sum(1 for e in ends if low < e <= high)
    return Outcome(
        workers=n, rate=len(distinct) / (ends[-1] - min(accepted)),
        middle_rate=middle / (high - low) if high > low else float("nan"),
        shares=[by_worker.get(i, 0) for i in range(n)] + (
            [by_worker[-1]] if by_worker.get(-1) else []),
        duplicates=len(found) - len(distinct), missing=total - len(distinct),
        finish=[round(last.get(i, float("nan")) - min(accepted), 2) for i in range(n)])


def fmt(values: list[float], digits: int = 1) -> str:
    med, low, high = median_range(values)
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} [{low:.{digits}f}–{high:.{digits}f}]"


def table(outcomes: list[Outcome], counts: list[int]) -> list[str]:
    base = [o for o in outcomes if o.workers == counts[0]]
    base_rate = sorted(o.rate for o in base)[len(base) // 2] if base else float("nan")
    base_mid = sorted(o.middle_rate for o in base)[len(base) // 2] if base else float("nan")
    rows = ["| workers | requests/s | requests/s, middle 80 % | per-worker shares, % (each "
            "round) | partitions per worker | duplicates | missing | ratio to 1 worker | "
            "ratio, middle 80 % |",
            "|---|---|---|---|---|---|---|---|---|"]
    for count in counts:
        mine = [o for o in outcomes if o.workers == count]
        if not mine:
            continue
        shares = "; ".join("/".join(f"{100 * s / max(1, sum(o.shares)):.0f}" for o in [o]
                                    for s in o.shares) for o in mine)
        parts = "; ".join("/".join(map(str, o.partitions)) for o in mine)
        rows.append(
            f"| {count} | {fmt([o.rate for o in mine])} | {fmt([o.middle_rate for o in mine])} "
            f"| {shares} | {parts} | {sum(o.duplicates for o in mine)} "
            f"| {sum(o.missing for o in mine)} "
            f"| {fmt([o.rate / base_rate for o in mine], 2)} "
            f"| {fmt([o.middle_rate / base_mid for o in mine], 2)} |")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=("tansu", "apache"), default="tansu")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    parser.add_argument("--per-worker", type=int, default=100,
                        help="requests per worker in each burst")
    parser.add_argument("--ms", type=float, default=50, help="how long the route waits")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--pool", default="prefork")
    parser.add_argument("--concurrency", type=int, default=1, help="pool size per worker")
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds to wait for duplicates after the last request ran")
    parser.add_argument("--json", type=Path, help="also write the outcomes as JSON lines")
    args = parser.parse_args()
    counts = [int(c) for c in args.workers.split(",")]

    outcomes: list[Outcome] = []
    env = {"BS_ASYNC_REQUEST_ASGI_APP": "bench._scaleout_app:application",
           "BS_KAFKA_TOPIC_PARTITIONS": str(PARTITIONS)}
    with private_stack(GROUP, redis_db=STACK_DB, broker=args.broker, extra_env=env) as stack:
        record_url = redis_url_with_db(stack.redis_url, RECORD_DB)
        stack.extra_env["SCALEOUT_REDIS_URL"] = record_url
        records = redis.Redis.from_url(record_url)
        records.flushdb()
        stack.create_user("bench", "bench")
        token = stack.issue_token("bench")
        web = stack.start_web()
        for round_ in range(args.repeat):
            shift = round_ % len(counts)
            for count in counts[shift:] + counts[:shift]:
                step(f"round {round_ + 1}/{args.repeat}: {count} worker(s)")
                workers = start_workers(stack, count, args.pool, args.concurrency)
                try:
                    partitions = wait_assigned(workers)
                    outcome = burst(stack, web.url, token, records, workers, args)
                    outcome.partitions = partitions
                    outcomes.append(outcome)
                    print(json.dumps(outcome.__dict__), file=sys.stderr, flush=True)
                finally:
                    for worker in workers:
                        worker.process and worker.process.send_signal(15)
                    for worker in workers:
                        stack.stop_service(worker)
        records.close()
    if args.json:
        args.json.write_text("".join(json.dumps(o.__dict__) + "\n" for o in outcomes))
    print(f"\n{args.broker}: {args.repeat} round(s), route waits {args.ms:g} ms, "
          f"{args.per_worker} requests per worker from {args.clients} clients, "
          f"{PARTITIONS} partitions, -P {args.pool} -c {args.concurrency}; "
          f"median [min–max]. Python {sys.version.split()[0]}, {os.cpu_count()} cores.\n")
    print("\n".join(table(outcomes, counts)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
