#!/usr/bin/env python3
"""Benchmark of the operation lifecycle (issue 10): reads, added cost per operation, cancel.

Prints three tables, each measured on a fresh private stack (tools.stack.private_stack: own
tansu, Redis DB 7, the sample on SQLite, uvicorn, one Celery worker):

1. **Reads** (this tree): 16 concurrent clients reading the status of random completed
   operations, then the first page of their owner's list (`?limit=50`): p50 / p99 latency and
   reads per second, over `--repeat` rounds (median of the rounds' p50 and p99, range of p50).
2. **Cost per operation**, this tree beside `--baseline REV` (a revision before the lifecycle,
   e.g. 449bf9c), interleaved round by round: a burst of `--burst` async `GET /api/v1/orders/`
   from 16 clients; the worker's CPU ms per request (its process tree, from /proc) and the Redis
   commands per request (`INFO commandstats` of the stack's Redis before and after, all
   commands: operation store, channel layer, Celery), with the commands that changed most.
3. **Cancel latency** (this tree): a running `GET /api/v1/analytics/slow/?seconds=30` is
   cancelled with DELETE; the time from sending the DELETE to the owner's `cancelled` frame on
   its WebSocket, and to the status reading `cancelled`.

    .venv/bin/python bench/lifecycle.py [--repeat 3] [--reads 2000] [--burst 500]
                                        [--cancels 20] [--baseline REV]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import redis
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._cpu import ms_per_request, sample  # noqa: E402
from bench._stats import median_range, percentile  # noqa: E402
from bench.pipeline import Target, burst, checkout, git, running_stack, step  # noqa: E402
from tools.soak import RESULTS  # noqa: E402
from tools.stack import RESULTS_PATH  # noqa: E402

ORDERS = "/api/v1/orders/"
SLOW = "/api/v1/analytics/slow/?seconds=30"


def _auth(target: Target, deferred: bool = False) -> dict[str, str]:
    headers = {"authorization": f"Bearer {target.token}"}
    if deferred:
        headers["x-async-request"] = "true"
    return headers


def _until(http: httpx.Client, target: Target, task_id: str, states: set[str],
           timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        state = http.get(RESULTS.format(task_id), headers=_auth(target)).json().get("state")
        if state in states or time.monotonic() > deadline:
            return str(state)
        time.sleep(0.02)


# -- 1. reads -------------------------------------------------------------------------------

def seed(target: Target, count: int) -> list[str]:
    """`count` completed operations of the bench user."""
    with httpx.Client(base_url=target.base, timeout=30) as http:
        ids = [http.get(ORDERS, headers=_auth(target, True)).json()["meta"]["async_request_id"]
               for _ in range(count)]
        for task_id in ids:
            assert _until(http, target, task_id, {"completed"}) == "completed", task_id
    return ids


def reads(target: Target, urls: list[str], clients: int) -> tuple[list[float], float]:
    """Each URL read once, by `clients` concurrent clients; (latencies ms, reads/s)."""
    latencies: list[float] = []

    async def client(share: list[str]) -> None:
        async with httpx.AsyncClient(base_url=target.base, timeout=30) as http:
            for url in share:
                t0 = time.perf_counter()
                response = await http.get(url, headers=_auth(target))
                latencies.append((time.perf_counter() - t0) * 1000)
                assert response.status_code == 200, (url, response.status_code)

    async def run_all() -> None:
        await asyncio.gather(*(client(urls[i::clients]) for i in range(clients)))

    t0 = time.perf_counter()
    asyncio.run(run_all())
    return latencies, len(urls) / (time.perf_counter() - t0)


def read_table(args: argparse.Namespace) -> list[str]:
    rows: dict[str, list[tuple[float, float, float]]] = {"status": [], "list": []}
    with running_stack(ROOT, args) as target:
        step(f"reads: seeding {args.seed} operations")
        ids = seed(target, args.seed)
        for run in range(args.repeat):
            step(f"reads: round {run + 1}/{args.repeat}")
            status_urls = [RESULTS.format(random.choice(ids)) for _ in range(args.reads)]
            list_urls = [f"{RESULTS_PATH}?limit=50"] * (args.reads // 4)
            for name, urls in (("status", status_urls), ("list", list_urls)):
                latencies, rate = reads(target, urls, args.clients)
                rows[name].append((percentile(latencies, 50), percentile(latencies, 99), rate))
    out = [f"### Reads, {args.clients} concurrent clients, {args.seed} operations of one owner",
           "", "| read | p50 ms | p99 ms | reads/s |", "|---|---|---|---|"]
    for name, label in (("status", "status of one operation"),
                        ("list", "list, first page of 50")):
        p50 = median_range([r[0] for r in rows[name]])
        p99 = median_range([r[1] for r in rows[name]])
        rate = median_range([r[2] for r in rows[name]])
        out.append(f"| {label} | {p50[0]:.1f} ({p50[1]:.1f}–{p50[2]:.1f}) | {p99[0]:.1f} | "
                   f"{rate[0]:.0f} ({rate[1]:.0f}–{rate[2]:.0f}) |")
    return out


# -- 2. cost per operation ------------------------------------------------------------------

def commandstats(url: str) -> Counter[str]:
    client = redis.Redis.from_url(url)
    try:
        info: dict[str, Any] = client.info("commandstats")
    finally:
        client.close()
    return Counter({name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in info.items()})


def cost_round(root: Path, args: argparse.Namespace, label: str) -> dict[str, Any]:
    step(f"cost: {label}")
    with running_stack(root, args) as target:
        redis_url = target.redis_url
        seed(target, 20)  # warm: imports, connections, the first rebalance
        before, cpu_before = commandstats(redis_url), sample(target.probes)
        outcome = burst(target, args.burst, args.clients)
        after, cpu_after = commandstats(redis_url), sample(target.probes)
    done = outcome["completed"] or 1
    commands = after - before
    cpu = ms_per_request(cpu_before, cpu_after, done)
    measured = [ms for ms in cpu.values() if ms is not None]
    return {"worker_ms": cpu.get("worker"), "total_ms": sum(measured) if measured else None,
            "commands": sum(commands.values()) / done,
            "by_command": {name: calls / done for name, calls in commands.items()},
            "lost": outcome["lost"]}


def cost_table(args: argparse.Namespace) -> list[str]:
    current: list[dict[str, Any]] = []
    baseline: list[dict[str, Any]] = []
    with checkout(args.baseline) as path:
        for run in range(args.repeat):
            order = [(ROOT, current, "current"), (path, baseline, "baseline")]
            for root, rounds, name in order if run % 2 == 0 else order[::-1]:
                rounds.append(cost_round(root, args, f"round {run + 1}/{args.repeat}, {name}"))
    rev = git("rev-parse", "--short", args.baseline)
    head = git("rev-parse", "--short", "HEAD")

    def fig(rounds: list[dict[str, Any]], key: str) -> tuple[float, float, float]:
        return median_range([r[key] for r in rounds if r[key] is not None] or [float("nan")])

    out = [f"### Cost per operation: {args.burst} async `GET {ORDERS}` from {args.clients} "
           f"clients, current ({head}) beside baseline ({rev})", "",
           "| per request | baseline | current | current / baseline |", "|---|---|---|---|"]
    for key, label in (("worker_ms", "worker CPU ms"), ("total_ms", "all server processes, "
                                                         "CPU ms"),
                       ("commands", "Redis commands")):
        b, c = fig(baseline, key), fig(current, key)
        out.append(f"| {label} | {b[0]:.2f} ({b[1]:.2f}–{b[2]:.2f}) | "
                   f"{c[0]:.2f} ({c[1]:.2f}–{c[2]:.2f}) | {c[0] / b[0]:.2f}× |")
    names: Counter[str] = Counter()
    for rounds in (current, baseline):
        for r in rounds:
            names.update(r["by_command"].keys())
    out += ["", "| Redis command, calls per request | baseline | current |", "|---|---|---|"]

    def per(rounds: list[dict[str, Any]], name: str) -> float:
        values = sorted(r["by_command"].get(name, 0.0) for r in rounds)
        return values[len(values) // 2]

    for name in sorted(names, key=lambda n: -(per(current, n) + per(baseline, n))):
        b, c = per(baseline, name), per(current, name)
        if max(b, c) >= 0.05:
            out.append(f"| {name} | {b:.2f} | {c:.2f} |")
    lost = sum(r["lost"] for r in current + baseline)
    out.append(f"\nlost in all bursts: {lost}")
    return out


# -- 3. cancel latency ----------------------------------------------------------------------

def cancel_table(args: argparse.Namespace) -> list[str]:
    to_frame: list[float] = []
    to_state: list[float] = []
    with running_stack(ROOT, args) as target:
        frames: dict[str, float] = {}
        stop = threading.Event()
        ready = threading.Event()

        def listen() -> None:
            with connect(target.ws_url) as ws:
                ws.recv(timeout=10)
                ready.set()
                while not stop.is_set():
                    try:
                        raw = ws.recv(timeout=0.5)
                    except TimeoutError:
                        continue
                    data = json.loads(json.loads(raw)["data"])
                    if data.get("status") == "cancelled":
                        frames[data["task_id"]] = time.perf_counter()

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        ready.wait(10)
        with httpx.Client(base_url=target.base, timeout=30) as http:
            for i in range(args.cancels):
                step(f"cancel {i + 1}/{args.cancels}")
                task_id = http.get(SLOW, headers=_auth(target, True)).json()["meta"][
                    "async_request_id"]
                assert _until(http, target, task_id, {"running"}) == "running"
                time.sleep(random.uniform(0.05, 0.5))  # not in step with the lease's beat
                t0 = time.perf_counter()
                assert http.delete(RESULTS.format(task_id), headers=_auth(target)).status_code \
                    in (200, 202)
                assert _until(http, target, task_id, {"cancelled"}) == "cancelled"
                to_state.append((time.perf_counter() - t0) * 1000)
                deadline = time.monotonic() + 10
                while task_id not in frames and time.monotonic() < deadline:
                    time.sleep(0.005)
                to_frame.append((frames.get(task_id, float("nan")) - t0) * 1000)
        stop.set()
        listener.join(5)
    out = [f"### Cancel latency of a running route ({args.cancels} cancels, one at a time)", "",
           "| DELETE → | p50 ms | p99 ms | min–max ms |", "|---|---|---|---|"]
    for label, values in (("`cancelled` frame on the owner's socket", to_frame),
                          ("status reads `cancelled`", to_state)):
        out.append(f"| {label} | {percentile(values, 50):.0f} | {percentile(values, 99):.0f} | "
                   f"{min(values):.0f}–{max(values):.0f} |")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=300, help="operations to read")
    parser.add_argument("--reads", type=int, default=2000, help="status reads per round")
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--cancels", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=2, help="worker pool size")
    parser.add_argument("--baseline", metavar="REV",
                        help="the revision to compare the cost per operation with")
    parser.add_argument("--only", choices=("reads", "cost", "cancel"))
    args = parser.parse_args()
    tables: list[list[str]] = []
    if args.only in (None, "reads"):
        tables.append(read_table(args))
    if args.only in (None, "cost"):
        if args.baseline is None:
            parser.error("the cost table needs --baseline REV (or pick --only reads|cancel)")
        tables.append(cost_table(args))
    if args.only in (None, "cancel"):
        tables.append(cancel_table(args))
    print("\n\n".join("\n".join(table) for table in tables))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
