#!/usr/bin/env python3
"""Benchmark of `report_progress`: the worker CPU one call costs, the throttled writes included.

A worker's step (`execution.execute`: claim → replay → store → notify) runs in this process
against a real Redis and channels' in-memory layer, replaying a raw ASGI route in two shapes,
each with and without progress reports, interleaved in the same run (round 1 with then
without, round 2 without then with, ...):

- `tight`: a loop of `--calls` iterations (100,000), each one `report_progress` call: what a
  call costs by itself;
- `paced`: `--paced` iterations 1 ms apart (asyncio.sleep), each reporting: a route reporting
  every millisecond for about two seconds, with the writes its progress causes.

CPU is this process's (`time.process_time()`: the replay, the process loop's thread and the
lease thread that writes the progress), and Redis's when this script started it (bench/_cpu.py).
CPU per call = (CPU with reports − CPU without) / calls. The table gives the median and range
(min–max) over `--rounds` rounds, and the frames (`running` + progress) the owner got per run:
one per progress write (the last write of a run is stored, not sent). µs per frame (paced):
the extra CPU of a run less its calls at the tight per-call median, per frame; `--interval
0.01` makes the writes, not the calls, dominate `paced`, so that figure is one write's cost.
Redis: `REDIS_URL` when it answers (then not measured), else a private redis-server; db 9,
flushed first.

    .venv/bin/python bench/progress.py [--rounds 5] [--calls 100000] [--paced 2000]
                                       [--interval 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._cpu import tree_cpu_seconds  # noqa: E402
from bench._stats import median_range  # noqa: E402

OWNER = "user:bench-progress"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """`/<tight|paced>/<report|plain>/<n>`: n iterations, reporting progress or not."""
    from async_request.progress import report_progress

    await receive()
    _, shape, mode, count = scope["path"].split("/")
    n = int(count)
    if shape == "tight" and mode == "report":
        for i in range(n):
            report_progress(scope, i, n)
    elif shape == "tight":
        for _ in range(n):
            pass
    else:
        for i in range(n):
            if mode == "report":
                report_progress(scope, i, n, "paced")
            await asyncio.sleep(0.001)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def configure(redis_url: str, interval: float) -> None:
    os.environ.update({"BS_ASYNC_REQUEST_REDIS_URL": redis_url,
                       "BS_ASYNC_REQUEST_ASGI_APP": "bench.progress:app",
                       "BS_ASYNC_REQUEST_SECRET_KEY": "bench-progress-secret",
                       "BS_ASYNC_REQUEST_PROGRESS_INTERVAL_SEC": str(interval)})
    import django
    from django.conf import settings

    # A capacity above the frames of a run: the layer drops what does not fit, uncounted.
    settings.configure(CHANNEL_LAYERS={"default": {
        "BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 100_000}}})
    django.setup()


def one_run(path: str, channel: str) -> tuple[float, int]:
    """Replay `path` once as a worker does; (CPU seconds of this process, frames heard)."""
    from channels.layers import channel_layers

    from async_request.envelope import RequestEnvelope
    from async_request.execution import execute
    from async_request.settings import get_settings
    from async_request.store import get_store

    store, task_id = get_store(), str(uuid.uuid4())
    asyncio.run(store.accept(task_id, OWNER, path, "GET"))
    scope = {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""}
    envelope = RequestEnvelope.from_scope(scope, b"", task_id=task_id, owner=OWNER).to_dict(
        get_settings().secret_key)
    start = time.process_time()
    summary = execute(envelope, task_id=task_id, worker="bench")
    cpu = time.process_time() - start
    if summary["status"] != 200:
        raise RuntimeError(f"{path}: {summary}")
    layer = channel_layers["default"]

    async def drain() -> int:
        frames = 0
        while True:
            try:
                message = await asyncio.wait_for(layer.receive(channel), 0.05)
            except TimeoutError:
                return frames
            frames += message.get("status") == "running"

    return cpu, asyncio.run(drain())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--paced", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args()

    from tools.services import ensure_redis, redis_url_with_db

    redis_service = ensure_redis()
    try:
        url = redis_url_with_db(redis_service.url, 9)
        configure(url, args.interval)
        import redis

        redis.Redis.from_url(url).flushdb()
        redis_pid = redis_service.process.pid if redis_service.process else None

        from channels.layers import channel_layers

        from async_request.auth import Owner
        from async_request.notifications import group_for

        layer = channel_layers["default"]

        async def subscribe() -> str:
            channel = await layer.new_channel()
            await layer.group_add(group_for(Owner.parse(OWNER)), channel)
            return channel

        channel = asyncio.run(subscribe())
        shapes = {"tight": args.calls, "paced": args.paced}
        results: dict[tuple[str, str], list[tuple[float, float, int]]] = {
            (shape, mode): [] for shape in shapes for mode in ("report", "plain")}
        one_run(f"/tight/report/{1000}", channel)  # warm up: imports, scripts, connections
        for round_no in range(args.rounds):
            modes = ("report", "plain") if round_no % 2 == 0 else ("plain", "report")
            for shape, n in shapes.items():
                for mode in modes:
                    redis_before = tree_cpu_seconds(redis_pid) if redis_pid else 0.0
                    cpu, frames = one_run(f"/{shape}/{mode}/{n}", channel)
                    redis_cpu = (tree_cpu_seconds(redis_pid) - redis_before) if redis_pid else 0.0
                    results[(shape, mode)].append((cpu, redis_cpu, frames))
            print(f"… round {round_no + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    finally:
        redis_service.stop()

    print(f"report_progress: {args.rounds} rounds, interval {args.interval:g} s, "
          f"Redis {'measured' if redis_pid else 'external, not measured'}\n")
    print("| route | calls/run | worker CPU ms/run without | with | worker CPU µs per call "
          "| µs per frame | Redis CPU ms/run with (without) | frames/run |")
    print("|---|---|---|---|---|---|---|---|")
    call_us = 0.0
    for shape, n in shapes.items():
        plain, report = results[(shape, "plain")], results[(shape, "report")]
        per_call = [(r[0] - p[0]) * 1e6 / n for r, p in zip(report, plain, strict=True)]
        med, low, high = median_range(per_call)
        without = median_range([p[0] * 1000 for p in plain])[0]
        with_ = median_range([r[0] * 1000 for r in report])[0]
        redis_with = median_range([r[1] * 1000 for r in report])[0]
        redis_without = median_range([p[1] * 1000 for p in plain])[0]
        frames = median_range([float(r[2]) for r in report])[0]
        redis_cell = f"{redis_with:.1f} ({redis_without:.1f})" if redis_pid else "n/a"
        if shape == "tight":
            call_us, frame_cell = med, "–"
        else:
            extra_us = (with_ - without) * 1000 - n * call_us
            frame_cell = f"{extra_us / frames:.0f}" if frames else "–"
        print(f"| {shape} | {n} | {without:.1f} | {with_:.1f} | {med:.2f} ({low:.2f}–{high:.2f}) "
              f"| {frame_cell} | {redis_cell} | {frames:g} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
