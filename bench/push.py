#!/usr/bin/env python3
"""Send → event over the three push transports, side by side: WebSocket, SSE, long-poll.

One private stack (tools.stack.private_stack: own tansu, Redis DB 9, the sample on SQLite,
uvicorn, one prefork worker `-c 2`) and three users, one per transport, each listening the way
its clients do: a WebSocket subscribed with a ticket, an event stream (`GET .../events/` with
the Bearer token), and for long-poll a `GET .../<id>/?wait=30` loop after the 202. Operations
(`GET /api/v1/orders/`, deferred) are sent one at a time, the transports taking turns in a
shuffled order each step, so all three meet the same machine at the same moments.

Send → event = from just before the request is sent to the moment its `completed` event (WS
data frame, SSE event, or the long-poll's 200) is read. Per round: p50 / p99 per transport;
then the median and the range of the rounds' p50 and p99.

    .venv/bin/python bench/push.py [--ops 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._stats import median_range, percentile  # noqa: E402
from bench.pipeline import step  # noqa: E402
from tools.stack import private_stack  # noqa: E402

RESULTS = "/api/v1/async_background_response/"
TRANSPORTS = ("websocket", "sse", "long-poll")


class Arrivals:
    """When each operation's `completed` event reached its listener (a future per task id:
    the event may come before the 202 is read)."""

    def __init__(self) -> None:
        self._futures: dict[str, asyncio.Future[float]] = {}

    def _future(self, task_id: str) -> asyncio.Future[float]:
        return self._futures.setdefault(task_id, asyncio.get_running_loop().create_future())

    def heard(self, data: dict[str, Any]) -> None:
        if data.get("status") == "completed" and not self._future(data["task_id"]).done():
            self._future(data["task_id"]).set_result(time.monotonic())

    async def when(self, task_id: str) -> float:
        return await asyncio.wait_for(self._future(task_id), 60)


async def listen_ws(url: str, arrivals: Arrivals, ready: asyncio.Event) -> None:
    async with websockets.connect(url, open_timeout=30, max_queue=None) as ws:
        assert json.loads(await ws.recv()) == {"type": "subscribed"}
        ready.set()
        async for text in ws:
            frame = json.loads(text)
            if frame.get("type") == "data":
                arrivals.heard(json.loads(frame["data"]))


async def listen_sse(http: httpx.AsyncClient, token: str, arrivals: Arrivals,
                     ready: asyncio.Event) -> None:
    async with http.stream("GET", f"{RESULTS}events/",
                           headers={"authorization": f"Bearer {token}"},
                           timeout=httpx.Timeout(30, read=None)) as stream:
        stream.raise_for_status()
        ready.set()
        async for line in stream.aiter_lines():
            if line.startswith("data: "):
                arrivals.heard(json.loads(line.removeprefix("data: ")))


async def send(http: httpx.AsyncClient, token: str) -> str:
    response = await http.get("/api/v1/orders/", headers={
        "authorization": f"Bearer {token}", "x-async-request": "true"})
    response.raise_for_status()
    return str(response.json()["meta"]["async_request_id"])


async def measure(base: str, tokens: dict[str, str], ops: int, seed: int) -> dict[str, list[float]]:
    """One round: `ops` operations per transport, interleaved; send → event in ms."""
    arrivals = {name: Arrivals() for name in ("websocket", "sse")}
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        minted = await http.post(f"{RESULTS}tickets/",
                                 headers={"authorization": f"Bearer {tokens['websocket']}"})
        minted.raise_for_status()
        ws_url = (base.replace("http://", "ws://", 1) + "/ws/?ticket="
                  + quote(minted.json()["ticket"]))
        ready = {name: asyncio.Event() for name in arrivals}
        listeners = [
            asyncio.create_task(listen_ws(ws_url, arrivals["websocket"], ready["websocket"])),
            asyncio.create_task(listen_sse(http, tokens["sse"], arrivals["sse"], ready["sse"]))]
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in ready.values())), 30)

        async def pushed(name: str) -> float:
            started = time.monotonic()
            task_id = await send(http, tokens[name])
            return (await arrivals[name].when(task_id) - started) * 1000

        async def long_polled() -> float:
            started = time.monotonic()
            task_id = await send(http, tokens["long-poll"])
            while True:
                answer = await http.get(f"{RESULTS}{task_id}/?wait=30", headers={
                    "authorization": f"Bearer {tokens['long-poll']}"})
                if answer.status_code == 200:
                    return (time.monotonic() - started) * 1000
                answer.raise_for_status()

        runs: dict[str, Callable[[], Awaitable[float]]] = {
            "websocket": lambda: pushed("websocket"), "sse": lambda: pushed("sse"),
            "long-poll": long_polled}
        order, shuffle = list(TRANSPORTS), random.Random(seed)
        ms: dict[str, list[float]] = {name: [] for name in TRANSPORTS}
        for _ in range(ops):
            shuffle.shuffle(order)
            for name in order:
                ms[name].append(await runs[name]())
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
    return ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=200, help="operations per transport per round")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rounds: list[dict[str, list[float]]] = []
    with private_stack("bench-push", redis_db=9) as stack:
        tokens = {}
        for name in TRANSPORTS:
            user = "bench_" + name.replace("-", "_")
            stack.create_user(user, "bench")
            tokens[name] = stack.issue_token(user)
        web = stack.start_web()
        stack.start_worker()
        asyncio.run(measure(web.url, tokens, 5, seed=-1))  # warm-up: imports, pools, caches
        for run in range(args.repeat):
            step(f"round {run + 1}/{args.repeat}: {args.ops} operations per transport")
            rounds.append(asyncio.run(measure(web.url, tokens, args.ops, seed=run)))
    rows = [f"| send → completed event ({args.ops} per transport × {args.repeat} rounds, "
            "interleaved) | p50 ms, median (range) | p99 ms, median (range) | "
            "per round p50 / p99 |", "|---|---|---|---|"]
    for name in TRANSPORTS:
        p50s = [percentile(r[name], 50) for r in rounds]
        p99s = [percentile(r[name], 99) for r in rounds]
        (m50, lo50, hi50), (m99, lo99, hi99) = median_range(p50s), median_range(p99s)
        per_round = ", ".join(f"{a:.1f} / {b:.1f}" for a, b in zip(p50s, p99s, strict=True))
        rows.append(f"| {name} | {m50:.1f} ({lo50:.1f}–{hi50:.1f}) | "
                    f"{m99:.1f} ({lo99:.1f}–{hi99:.1f}) | {per_round} |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
