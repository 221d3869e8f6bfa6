#!/usr/bin/env python3
"""Benchmark of lanes (async_request/lanes.py): the default lane's latency, with and without a
flood of the slow lane, side by side in one invocation.

One private stack (its own tansu, Redis database 17): the sample's web app, whose worker
replays into tests/integration/limits_app.py, ASYNC_REQUEST_LANES sending `GET /test/sleep/`
to the lane `slow`, and two workers of one process each: `celery worker -Q <default queue>`
(prefork, -c 1) and `-Q <default queue>.slow` (solo). A quick request is `POST /test/echo/`
with `X-Async-Request: true` and `Prefer: wait=30`: its latency is send → the route's own
answer (accepted, queued, run by a worker, stored, waited for), sequential.

Each round measures both sides, in alternating order (quiet first in odd rounds, flooded first
in even ones):
- quiet: `--quick` quick requests with the slow lane idle;
- flooded: `--flood` requests of `GET /test/sleep/?seconds=<--sleep>` first (the slow lane's
  worker runs one, the others wait in its queue: no worker is free for that lane), then the
  same `--quick` quick requests; then the flood is cancelled and drained.

Then, once, what lanes prevent: `--shared-flood` requests of `POST /test/sleep-post/` (a route
ASYNC_REQUEST_LANES leaves on the default lane) of `--shared-sleep` seconds, and one quick
request right after them: its wait is the flood's, as for every route before lanes.

The table gives, per side, the median over rounds of each round's p50 and p99 (nearest rank,
bench/_stats.py) with the range (min–max) of the rounds' p50, and how many of the flood were
still waiting when the quick requests were done (they must not have run on the default lane).

    .venv/bin/python bench/lanes.py [--repeat 5] [--quick 100] [--flood 20] [--sleep 60]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._stats import median_range, percentile  # noqa: E402
from tools.soak import RESULTS  # noqa: E402
from tools.stack import private_stack  # noqa: E402

QUICK = "/test/echo/"
SLOW = "/test/sleep/"
UNLISTED_SLOW = "/test/sleep-post/"
LANES = [f"GET ^{SLOW}$ slow"]


def step(what: str) -> None:
    print(f"… {time.strftime('%H:%M:%S')} {what}", file=sys.stderr, flush=True)


def quick_requests(http: httpx.Client, token: str, n: int) -> list[float]:
    """`n` quick requests one after the other (plus 3 not counted); ms from send to answer."""
    headers = {"authorization": f"Bearer {token}", "x-async-request": "true",
               "prefer": "wait=30"}
    out: list[float] = []
    for i in range(n + 3):
        t0 = time.perf_counter()
        response = http.post(QUICK, headers=headers, content=b"q")
        elapsed = (time.perf_counter() - t0) * 1000
        assert response.status_code == 200, (response.status_code, response.text)
        if i >= 3:
            out.append(elapsed)
    return out


def states(http: httpx.Client, token: str, ids: list[str]) -> list[str]:
    auth = {"authorization": f"Bearer {token}"}
    return [str(http.get(RESULTS.format(task_id), headers=auth).json()["state"])
            for task_id in ids]


def flooded(http: httpx.Client, token: str, args: argparse.Namespace) -> tuple[list[float], int]:
    """The quick requests while the slow lane holds `--flood` long tasks; (ms, still waiting)."""
    auth = {"authorization": f"Bearer {token}"}
    flood = [http.get(f"{SLOW}?seconds={args.sleep}",
                      headers={**auth, "x-async-request": "true"}).json()["meta"]
             ["async_request_id"] for _ in range(args.flood)]
    deadline = time.monotonic() + 60
    # The slow lane's worker is busy with one of them (any: they spread over partitions).
    while "running" not in states(http, token, flood):
        if time.monotonic() > deadline:
            raise SystemExit("the slow lane's worker never started the flood")
        time.sleep(0.1)
    try:
        ms = quick_requests(http, token, args.quick)
        waiting = states(http, token, flood).count("pending")
    finally:
        for task_id in flood:
            http.delete(RESULTS.format(task_id), headers=auth)
    deadline = time.monotonic() + 120
    while set(states(http, token, flood)) != {"cancelled"}:
        if time.monotonic() > deadline:
            raise SystemExit("the flood was not cancelled within 120 s")
        time.sleep(0.2)
    return ms, waiting


def shared(http: httpx.Client, token: str, count: int, seconds: float) -> float:
    """ms of one quick request sent right after `count` slow ones on its own (default) lane."""
    headers = {"authorization": f"Bearer {token}", "x-async-request": "true"}
    ids = [http.post(f"{UNLISTED_SLOW}?seconds={seconds}", headers=headers).json()["meta"]
           ["async_request_id"] for _ in range(count)]
    [ms] = quick_requests_after(http, token)
    deadline = time.monotonic() + count * seconds + 60
    while set(states(http, token, ids)) != {"completed"}:
        if time.monotonic() > deadline:
            raise SystemExit("the shared flood did not complete")
        time.sleep(0.2)
    return ms


def quick_requests_after(http: httpx.Client, token: str) -> list[float]:
    headers = {"authorization": f"Bearer {token}", "x-async-request": "true",
               "prefer": "wait=30"}
    t0 = time.perf_counter()
    response = http.post(QUICK, headers=headers, content=b"q")
    elapsed = (time.perf_counter() - t0) * 1000
    if response.status_code == 202:  # not done within the wait: poll for its end
        task_id = response.json()["meta"]["async_request_id"]
        while states(http, token, [task_id]) != ["completed"]:
            time.sleep(0.05)
        elapsed = (time.perf_counter() - t0) * 1000
    return [elapsed]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", type=int, default=100)
    parser.add_argument("--flood", type=int, default=20)
    parser.add_argument("--sleep", type=float, default=60)
    parser.add_argument("--shared-flood", type=int, default=5)
    parser.add_argument("--shared-sleep", type=float, default=2)
    args = parser.parse_args()

    sides: dict[str, list[list[float]]] = {"quiet": [], "flooded": []}
    waiting: list[int] = []
    with private_stack("bench-lanes", redis_db=17) as stack:
        stack.extra_env.update({
            "BS_ASYNC_REQUEST_ASGI_APP": "tests.integration.limits_app:application",
            "BS_ASYNC_REQUEST_LANES": json.dumps(LANES),
            "BS_ASYNC_REQUEST_REPUBLISH_AFTER_SEC": "0",  # the flood waits on purpose
            "BS_ASYNC_REQUEST_CANCEL_GRACE_SEC": "1",
            "BS_ASYNC_REQUEST_MAX_WAIT_SEC": "30"})
        topic = stack.extra_env["BS_KAFKA_TOPIC_ASYNC_BG"]
        stack.create_user("bench", "bench")
        token = stack.issue_token("bench")
        web = stack.start_web()
        stack.start_worker("prefork", 1, ("-Q", topic))
        stack.start_worker("solo", 1, ("-Q", f"{topic}.slow"))
        with httpx.Client(base_url=web.url, timeout=60) as http:
            quick_requests(http, token, 20)  # warm both the topic and the worker
            for run in range(args.repeat):
                order = ("quiet", "flooded") if run % 2 == 0 else ("flooded", "quiet")
                for side in order:
                    step(f"round {run + 1}/{args.repeat}: {side}")
                    if side == "quiet":
                        sides[side].append(quick_requests(http, token, args.quick))
                    else:
                        ms, still = flooded(http, token, args)
                        sides[side].append(ms)
                        waiting.append(still)
            step("the same kind of flood on the default lane")
            behind = shared(http, token, args.shared_flood, args.shared_sleep)
    print(f"default lane, {args.quick} sequential quick requests per round (POST {QUICK}, "
          f"Prefer: wait=30), {args.repeat} rounds; flood: {args.flood} × GET "
          f"{SLOW}?seconds={args.sleep:g} on the lane `slow` (1 worker)\n")
    print("| default lane | p50 ms, median (min–max) of rounds | p99 ms, median of rounds |")
    print("|---|---|---|")
    for side, rounds in sides.items():
        p50 = median_range([percentile(r, 50) for r in rounds])
        p99 = statistics.median(percentile(r, 99) for r in rounds)
        print(f"| {side} | {p50[0]:.1f} ({p50[1]:.1f}–{p50[2]:.1f}) | {p99:.1f} |")
    print(f"\nflood still waiting in the slow lane when the quick requests were done: "
          f"{min(waiting)}–{max(waiting)} of {args.flood} (one running on its worker)")
    print(f"without a lane of its own: {args.shared_flood} × POST {UNLISTED_SLOW}?seconds="
          f"{args.shared_sleep:g} on the default lane, then one quick request: "
          f"{behind:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
