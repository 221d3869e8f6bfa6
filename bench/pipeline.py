#!/usr/bin/env python3
"""Benchmark of the whole pipeline: the sample on a real ASGI server (uvicorn) with one worker.

Prints a table:
- time-to-202 of `GET /api/v1/orders/` with `X-Async-Request: true`, next to the same request
  without the header (interleaved, so both see the same machine load);
- end to end: send → WebSocket notification, sequential;
- 1000 async requests from 16 concurrent clients: accepted/s, completed/s, lost.

Each measurement is repeated (`--repeat`); the table gives the median of the runs' p50 and p99
and the range (min–max) of the runs' p50. It starts its own tansu broker and uses Redis
(`REDIS_URL` when it answers, else its own), database 7, flushed first.

    .venv/bin/python bench/pipeline.py [--repeat 3] [--seq 200] [--e2e 100] [--burst 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._stats import median_range, percentile  # noqa: E402
from tools.soak import RESULTS  # noqa: E402
from tools.stack import private_stack  # noqa: E402

PATH = "/api/v1/orders/"


def time_to_202(base: str, token: str, n: int) -> tuple[list[float], list[float]]:
    """Interleaved sync and async requests; returns (sync ms, async ms)."""
    sync_ms: list[float] = []
    async_ms: list[float] = []
    auth = {"authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, timeout=30) as http:
        for i in range(n + 10):
            t0 = time.perf_counter()
            assert http.get(PATH, headers=auth).status_code == 200
            t1 = time.perf_counter()
            assert http.get(PATH, headers={**auth, "x-async-request": "true"}).status_code == 202
            t2 = time.perf_counter()
            if i >= 10:  # warm-up
                sync_ms.append((t1 - t0) * 1000)
                async_ms.append((t2 - t1) * 1000)
    return sync_ms, async_ms


def end_to_end(base: str, ws_url: str, token: str, n: int) -> list[float]:
    """Send → WebSocket notification, one at a time; returns ms."""
    out: list[float] = []
    auth = {"authorization": f"Bearer {token}", "x-async-request": "true"}
    with connect(f"{ws_url}?token={token}") as ws, httpx.Client(base_url=base, timeout=30) as http:
        ws.recv(timeout=10)
        for i in range(n + 5):
            t0 = time.perf_counter()
            task_id = http.get(PATH, headers=auth).json()["meta"]["async_request_id"]
            while True:
                data = json.loads(json.loads(ws.recv(timeout=60))["data"])
                if data["task_id"] == task_id:
                    break
            if i >= 5:
                out.append((time.perf_counter() - t0) * 1000)
    return out


def burst(base: str, ws_url: str, token: str, total: int, clients: int,
          timeout: float = 60) -> dict[str, float]:
    """`total` async requests from `clients` concurrent clients; count what comes back."""
    done: dict[str, float] = {}
    ready = threading.Event()

    def listen() -> None:
        with connect(f"{ws_url}?token={token}", max_size=None) as ws:
            ws.recv(timeout=10)
            ready.set()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not stop.is_set():
                try:
                    frame = ws.recv(timeout=1)
                except TimeoutError:
                    continue
                data = json.loads(json.loads(frame)["data"])
                done[data["task_id"]] = time.perf_counter()

    stop = threading.Event()
    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    ready.wait(10)
    accepted: list[str] = []
    refused = 0

    async def client(count: int) -> None:
        nonlocal refused
        auth = {"authorization": f"Bearer {token}", "x-async-request": "true"}
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            for _ in range(count):
                response = await http.get(PATH, headers=auth)
                if response.status_code == 202:
                    accepted.append(response.json()["meta"]["async_request_id"])
                else:
                    refused += 1

    async def run_clients() -> None:
        share = [total // clients + (1 if i < total % clients else 0) for i in range(clients)]
        await asyncio.gather(*(client(n) for n in share))

    t0 = time.perf_counter()
    asyncio.run(run_clients())
    t_accepted = time.perf_counter() - t0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not set(accepted) <= done.keys():
        time.sleep(0.2)
    stop.set()
    listener.join(5)
    completed = [done[t] for t in accepted if t in done]
    t_completed = (max(completed) - t0) if completed else float("nan")
    unnotified = lost = 0
    with httpx.Client(base_url=base, timeout=30) as http:  # no notification: is there a result?
        for task_id in (t for t in accepted if t not in done):
            state = http.get(RESULTS.format(task_id),
                             headers={"authorization": f"Bearer {token}"}).json().get("state")
            if state in ("completed", "failed"):
                unnotified += 1
            else:
                lost += 1
    return {"accepted": len(accepted), "refused": refused,
            "accepted_per_s": len(accepted) / t_accepted,
            "completed": len(completed), "completed_per_s": len(completed) / t_completed,
            "unnotified": unnotified, "lost": lost}


def summarize(name: str, runs: list[list[float]]) -> str:
    p50, low, high = median_range([percentile(r, 50) for r in runs])
    p99 = median_range([percentile(r, 99) for r in runs])[0]
    return (f"| {name} | {p50:.2f} | {p99:.2f} | {low:.2f}–{high:.2f} "
            f"| {len(runs)} × {len(runs[0])} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seq", type=int, default=200)
    parser.add_argument("--e2e", type=int, default=100)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=2, help="worker pool size")
    args = parser.parse_args()

    rows: list[str] = []
    with private_stack("bench-pipeline", redis_db=7) as stack:
        stack.create_user("bench", "bench")
        token = stack.issue_token("bench")
        web = stack.start_web()
        stack.start_worker(concurrency=args.concurrency)
        base = web.url
        ws_url = base.replace("http://", "ws://") + "/ws/"
        sync_runs: list[list[float]] = []
        async_runs: list[list[float]] = []
        e2e_runs: list[list[float]] = []
        bursts: list[dict[str, float]] = []
        step: Callable[[str], None] = lambda what: print(f"… {what}", file=sys.stderr, flush=True)  # noqa: E731
        for run in range(args.repeat):
            step(f"run {run + 1}/{args.repeat}: time-to-202")
            sync_ms, async_ms = time_to_202(base, token, args.seq)
            sync_runs.append(sync_ms)
            async_runs.append(async_ms)
            step(f"run {run + 1}/{args.repeat}: end to end")
            e2e_runs.append(end_to_end(base, ws_url, token, args.e2e))
            step(f"run {run + 1}/{args.repeat}: burst of {args.burst}")
            bursts.append(burst(base, ws_url, token, args.burst, args.clients))
        rows += ["| measurement (ms) | p50 (median of runs) | p99 (median of runs) "
                 "| p50 range | runs × n |",
                 "|---|---|---|---|---|",
                 summarize(f"GET {PATH} without the header (route runs)", sync_runs),
                 summarize(f"GET {PATH} with X-Async-Request: time to 202", async_runs),
                 summarize("send → WebSocket notification (end to end)", e2e_runs)]
        rows += ["", f"| burst: {args.burst} requests, {args.clients} clients | accepted/s "
                     "| completed/s | result but no notification | lost | refused |",
                 "|---|---|---|---|---|---|"]
        for i, b in enumerate(bursts, 1):
            rows.append(f"| run {i} | {b['accepted_per_s']:.0f} | {b['completed_per_s']:.0f} | "
                        f"{b['unnotified']:.0f} | {b['lost']:.0f} | {b['refused']:.0f} |")
        med = {k: statistics.median(b[k] for b in bursts)
               for k in ("accepted_per_s", "completed_per_s")}
        rows.append(f"| median | {med['accepted_per_s']:.0f} | {med['completed_per_s']:.0f} | "
                    f"{sum(b['unnotified'] for b in bursts):.0f} total | "
                    f"{sum(b['lost'] for b in bursts):.0f} total | "
                    f"{sum(b['refused'] for b in bursts):.0f} total |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
