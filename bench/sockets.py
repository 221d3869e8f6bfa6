"""1,000 WebSockets at once, each waiting for its own operation: all subscribed, all notified?

Plain script: `python bench/sockets.py [--sockets 1000] [--repeat 1]`. It starts a private stack
(its own tansu, Redis DB 13, uvicorn, one prefork worker with 2 processes), then per round:

1. opens N sockets at once, each authenticating with its own random anonymous channel in its
   first message (`{"type": "auth", "channel": ...}`), and counts `subscribed` answers and
   failures (the channel layer's connection pool used to refuse past ~100);
2. sends one async request per socket (`GET /api/v1/health/` with `X-Async-Request: <its
   channel>`, 32 at a time) and waits until every socket heard `completed` for its own id;
3. reports connect time, notified count, notifications per second (first send to last
   notification), frames that reached a socket they were not for (must be 0), and the web
   process's RSS before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._stats import median_range, percentile  # noqa: E402
from tools.stack import private_stack  # noqa: E402


async def open_socket(url: str, channel: str) -> tuple[Any, float]:
    start = time.monotonic()
    ws = await websockets.connect(url, open_timeout=60, max_queue=None)
    await ws.send(json.dumps({"type": "auth", "channel": channel}))
    frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
    if frame != {"type": "subscribed"}:
        await ws.close()
        raise RuntimeError(f"not subscribed: {frame}")
    return ws, time.monotonic() - start


async def round_trip(base: str, sockets: int) -> dict[str, float]:
    ws_url = base.replace("http://", "ws://", 1) + "/ws/"
    channels = ["bench_" + secrets.token_urlsafe(16) for _ in range(sockets)]
    started = time.monotonic()
    opened = await asyncio.gather(*(open_socket(ws_url, c) for c in channels),
                                  return_exceptions=True)
    connect_sec = time.monotonic() - started
    live = [(c, o[0]) for c, o in zip(channels, opened, strict=True)
            if not isinstance(o, BaseException)]
    connect_times = [o[1] for o in opened if not isinstance(o, BaseException)]
    failed = sockets - len(live)
    ids: dict[str, str] = {}
    received: dict[str, list[str]] = {channel: [] for channel, _ in live}
    heard: dict[str, float] = {}

    async def listen(channel: str, ws: Any) -> None:
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("type") != "data":
                continue
            data = json.loads(frame["data"])
            if data["status"] in ("pending", "running"):
                continue  # the operation's earlier events: count its outcome only
            received[channel].append(data["task_id"])
            if data["status"] == "completed":
                heard.setdefault(channel, time.monotonic())

    listeners = [asyncio.create_task(listen(c, ws)) for c, ws in live]
    limit = asyncio.Semaphore(32)
    sent_at = time.monotonic()
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        async def send(channel: str) -> None:
            async with limit:
                response = await http.get("/api/v1/health/", headers={"X-Async-Request": channel})
                response.raise_for_status()
                ids[channel] = response.json()["meta"]["async_request_id"]

        await asyncio.gather(*(send(c) for c, _ in live))
    # A notification may arrive before its 202 is read: wait until every socket has its own id.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not all(
            ids.get(channel) in got for channel, got in received.items()):
        await asyncio.sleep(0.05)
    for task in listeners:
        task.cancel()
    last = max(heard.values(), default=sent_at)
    notified = sum(1 for channel, got in received.items() if ids.get(channel) in got)
    wrong = sum(1 for channel, got in received.items() for t in got if t != ids.get(channel))
    for _, ws in live:
        await ws.close()
    return {"sockets": sockets, "subscribed": len(live), "failed": failed,
            "connect_s": connect_sec, "connect_p50_ms": 1000 * percentile(connect_times, 50)
            if connect_times else 0.0,
            "notified": notified, "wrong": wrong,
            "notifications_per_s": notified / max(last - sent_at, 1e-9)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    rows: list[dict[str, float]] = []
    with private_stack("bench-sockets", redis_db=13) as stack:
        web = stack.start_web()
        stack.start_worker()
        process = psutil.Process(web.process.pid)  # type: ignore[union-attr]
        for _ in range(args.repeat):
            before = process.memory_info().rss / 2**20
            row = asyncio.run(round_trip(web.url, args.sockets))
            row["web_rss_before_mib"] = before
            row["web_rss_after_mib"] = process.memory_info().rss / 2**20
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n| measure ({args.sockets} sockets, {len(rows)} round(s)) | median (min-max) |")
    print("|---|---|")
    for key in rows[0]:
        median, low, high = median_range([row[key] for row in rows])
        print(f"| {key} | {median:.1f} ({low:.1f}-{high:.1f}) |")


if __name__ == "__main__":
    main()
