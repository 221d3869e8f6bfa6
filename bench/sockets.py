"""1,000 WebSockets at once, each waiting for its own operation: all subscribed, all notified?

Plain script: `python bench/sockets.py [--sockets 1000] [--repeat 1] [--baseline REV]`. Each
round starts a fresh private stack (its own tansu, Redis DB 13, uvicorn, one prefork worker with
2 processes); with `--baseline`, the tree at REV (a temporary git worktree) gets a round of its
own beside each round of this tree, the order alternating. Per round:

1. opens N sockets at once, each authenticating with its own random anonymous channel in its
   first message (`{"type": "auth", "channel": ...}`), and counts `subscribed` answers and
   failures (the channel layer's connection pool used to refuse past ~100);
2. sends one async request per socket (`GET /api/v1/health/` with `X-Async-Request: <its
   channel>`, 32 at a time) and waits until every socket heard `completed` for its own id,
   or no frame came for QUIET_SEC; the sockets still waiting then resume from their event
   log (`{"action": "resume", "after": 0}`), as a client that lost a frame does: a live frame
   is at most once (channels_redis drops what exceeds its `capacity`, and the capacity is
   per web process, shared by all its sockets);
3. reports connect time, notified count (live), recovered by the resume, never notified,
   notifications per second (first send to last live notification), frames that reached a
   socket they were not for (must be 0), the web process's RSS before and after, and what
   the event log (events.py, always on) holds afterwards: how many owners' logs and events
   (each socket is an owner of its own; every operation is three events: pending, running,
   completed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis
import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._stats import median_range, percentile  # noqa: E402
from bench.pipeline import checkout, current_label, git, step  # noqa: E402
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

    last_frame = [time.monotonic()]

    async def listen(channel: str, ws: Any) -> None:
        while True:
            frame = json.loads(await ws.recv())
            last_frame[0] = time.monotonic()
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
    def missing() -> list[str]:
        return [channel for channel, got in received.items() if ids.get(channel) not in got]

    # A notification may arrive before its 202 is read: wait until every socket has its own
    # id, or until no frame came for QUIET_SEC (the channel layer dropped some: see below).
    while missing() and time.monotonic() - last_frame[0] < QUIET_SEC:
        await asyncio.sleep(0.05)
    last = max(heard.values(), default=sent_at)
    notified = sockets - failed - len(missing())
    # The sockets still waiting ask the event log, as a client does after a lost frame.
    lost, sockets_of = missing(), dict(live)
    for channel in lost:
        await sockets_of[channel].send(json.dumps({"action": "resume", "after": 0}))
    deadline = time.monotonic() + 60
    while missing() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    for task in listeners:
        task.cancel()
    wrong = sum(1 for channel, got in received.items() for t in got if t != ids.get(channel))
    for _, ws in live:
        await ws.close()
    return {"sockets": sockets, "subscribed": len(live), "failed": failed,
            "connect_s": connect_sec, "connect_p50_ms": 1000 * percentile(connect_times, 50)
            if connect_times else 0.0,
            "notified": notified, "recovered_by_resume": len(lost) - len(missing()),
            "never_notified": len(missing()), "wrong": wrong,
            "notifications_per_s": notified / max(last - sent_at, 1e-9)}


#: No frame on any socket for this long: the ones still waiting will not hear it live.
QUIET_SEC = 15.0


def event_logs(redis_url: str) -> tuple[int, int]:
    """(owners with an event log, events in them) in the stack's Redis database."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter("async_request:events:*", count=1000))
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.xlen(key)
        return len(keys), sum(pipe.execute())
    finally:
        client.close()


def one_round(root: Path, sockets: int) -> dict[str, float]:
    """A fresh private stack of the tree at `root`, one round on it."""
    with private_stack("bench-sockets", redis_db=13, root=root) as stack:
        web = stack.start_web()
        stack.start_worker()
        process = psutil.Process(web.process.pid)  # type: ignore[union-attr]
        before = process.memory_info().rss / 2**20
        row = asyncio.run(round_trip(web.url, sockets))
        row["web_rss_before_mib"] = before
        row["web_rss_after_mib"] = process.memory_info().rss / 2**20
        row["event_logs"], row["events_logged"] = event_logs(stack.redis_url)
        return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--baseline", metavar="REV",
                        help="also run the tree at REV (a git worktree), rounds alternating")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    with contextlib.ExitStack() as trees:
        roots = {current_label(): ROOT}
        if args.baseline:
            rev = git("rev-parse", "--short", args.baseline)
            roots[f"baseline ({rev})"] = trees.enter_context(checkout(args.baseline))
        rows: dict[str, list[dict[str, float]]] = {label: [] for label in roots}
        for run in range(args.repeat):
            order = list(roots) if run % 2 == 0 else list(roots)[::-1]
            for label in order:
                step(f"round {run + 1}/{args.repeat}, {label}: {args.sockets} sockets")
                rows[label].append(one_round(roots[label], args.sockets))
                print(json.dumps({"tree": label, **rows[label][-1]}), flush=True)
    labels = list(rows)
    print(f"\n| measure ({args.sockets} sockets, {args.repeat} round(s), a fresh stack each) | "
          + " | ".join(f"{label}: median (min-max)" for label in labels) + " |")
    print("|---|" + "---|" * len(labels))
    for key in rows[labels[0]][0]:
        cells = []
        for label in labels:
            median, low, high = median_range([row.get(key, 0.0) for row in rows[label]])
            cells.append(f"{median:.1f} ({low:.1f}-{high:.1f})")
        print(f"| {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
