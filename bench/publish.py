"""Publishing the replay task from the web process: from the event loop against Celery's
`send_task` in an executor thread (what `Dispatcher.enqueue` did before, and still does as
its fallback), on a tansu broker of its own, interleaved in one invocation.

    .venv/bin/python bench/publish.py [--rounds 5] [--count 1000]

Per path: the time `enqueue` takes until the broker acknowledged (p50, what the 202 waits
for) and this process' CPU per publish (all its threads: the loop, the executor, librdkafka's),
median [min-max] of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.services import free_port, start_tansu  # noqa: E402

SECRET = "s" * 32


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=1000, help="publishes per path and round")
    args = parser.parse_args()
    broker = start_tansu(port=free_port())
    os.environ["BS_KAFKA_BOOTSTRAP_SERVERS"] = broker.url
    os.environ["BS_ENV_FILE"] = "/nonexistent"
    try:
        return run(args.rounds, args.count)
    finally:
        broker.stop()


def run(rounds: int, count: int) -> int:
    from async_request.dispatch import Dispatcher
    from async_request.envelope import RequestEnvelope

    dispatcher = Dispatcher()

    def envelope() -> RequestEnvelope:
        return RequestEnvelope(
            task_id=str(uuid.uuid4()), owner="user:1", method="GET", path="/api/v1/orders/",
            raw_path=b"/api/v1/orders/", query_string=b"",
            headers=(("authorization", "Bearer " + "x" * 150),), body=b"")

    async def from_loop(one: RequestEnvelope) -> None:
        await dispatcher.enqueue(one, secret=SECRET)

    async def send_task_in_thread(one: RequestEnvelope) -> None:
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: dispatcher.send(one, secret=SECRET))

    paths: dict[str, Callable[[RequestEnvelope], Awaitable[None]]] = {
        "from the event loop (enqueue)": from_loop,
        "send_task in an executor thread": send_task_in_thread,
    }

    async def measure(path: Callable[[RequestEnvelope], Awaitable[None]], n: int
                      ) -> tuple[float, float]:
        sent = [envelope() for _ in range(n)]
        times: list[float] = []
        cpu = time.process_time()
        for one in sent:
            started = time.perf_counter()
            await path(one)
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1e3, (time.process_time() - cpu) / n * 1e3

    async def rounds_of_all() -> dict[str, list[tuple[float, float]]]:
        for path in paths.values():  # warm-up: topics, connections, caches
            await measure(path, 200)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in paths}
        for number in range(rounds):
            order = list(paths.items())
            if number % 2:
                order.reverse()
            for name, path in order:
                results[name].append(await measure(path, count))
        return results

    results = asyncio.run(rounds_of_all())
    print(f"\n{count} sequential publishes per path and round, {rounds} rounds, tansu\n")
    print("| path | until acknowledged, p50 ms | process CPU per publish, ms |")
    print("|---|---|---|")
    for name, figures in results.items():
        print(f"| {name} | {spread([f[0] for f in figures])} | "
              f"{spread([f[1] for f in figures])} |")
    loop, thread = (results[name] for name in paths)
    print(f"\nratio loop/thread: latency {ratio(loop, thread, 0):.2f}, "
          f"CPU {ratio(loop, thread, 1):.2f}")
    return 0


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} [{min(values):.3f}–{max(values):.3f}]"


def ratio(a: list[tuple[float, float]], b: list[tuple[float, float]], index: int) -> float:
    return statistics.median(x[index] for x in a) / statistics.median(x[index] for x in b)


if __name__ == "__main__":
    raise SystemExit(main())
