#!/usr/bin/env python3
"""Where the worker's CPU goes: one burst of `bench/pipeline.py` under py-spy.

Starts the same private stack as `bench/pipeline.py` (the sample on uvicorn, one worker),
samples the worker and its pool children with py-spy (`--gil`: only the thread holding the
GIL, so threads parked in C are not counted as busy) while a burst of async requests runs,
and prints the functions with the largest share of the samples, inclusive (the function and
what it calls) and by self time, plus the /proc CPU per request of each process.
`--process web` samples the web server (uvicorn) instead, without the worker's categories.

    .venv/bin/pip install py-spy
    .venv/bin/python bench/profile.py [--burst 600] [--pool prefork] [--concurrency 2]
                                      [--process worker|web] [--raw prof.txt] [--top 40]
    .venv/bin/python bench/profile.py --report prof.txt     # the tables of a kept profile
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pipeline import burst, running_stack  # noqa: E402


def frames(line: str) -> tuple[list[str], int]:
    """A py-spy raw line (`a;b;c count`) as its frames, outermost first, and its count."""
    stack, _, count = line.rpartition(" ")
    return [f for f in stack.split(";") if f], int(count)


def short(frame: str) -> str:
    """`function (path:line)` as `function (module-ish path)`, without the line."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/async_request/", "/sample_project/", "/lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1] if marker != "/async_request/" \
                else "async_request/" + where.split(marker, 1)[1]
            break
    return f"{name} ({where})"


#: Where a sample goes: the first category any of whose patterns is in one of its frames, in
#: this order (so a Redis call inside group_send counts as group_send, not as the store).
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("notification group_send (channel layer)", ("group_send",)),
    ("Django ORM + auth (sync_to_async thread)", ("SyncToAsync", "thread_handler")),
    ("the replay through the ASGI app", ("replay.<locals>.run",)),
    ("our store + event log (Redis scripts)", ("claim (async_request", "_end (async_request",
                                               "record (async_request", "renew (async_request")),
    ("execute: the rest (unseal, seal, publish)", ("execute (async_request",)),
    ("Celery task events", ("EventDispatcher",)),
    ("Celery task machinery in the child (trace)", ("fast_trace_task", "trace_task")),
    ("prefork hand-off (pipes, pickle)", ("ResultHandler", "send_job", "schedule_writes",
                                          "Worker.workloop", "_recv_message")),
    ("Celery main: receive, strategy, request, ack", ("task_message_handler", "Request.",
                                                      "on_task_received")),
    ("our Kafka transport + kombu", ("transport/", "kombu/")),
    ("asyncio loop (other)", ("_run_once",)),
]


def categories(raw: Path) -> list[str]:
    """The samples of a raw py-spy profile by CATEGORIES: share and samples."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, count = frames(line)
        total += count
        names = [short(f) for f in stack]
        counts[next((title for title, patterns in CATEGORIES
                     if any(p in n for p in patterns for n in names)), "other")] += count
    out = [f"samples: {total}", "", "| where | share | samples |", "|---|---|---|"]
    out += [f"| {title} | {counts[title] / total:.1%} | {counts[title]} |"
            for title in [*(t for t, _ in CATEGORIES), "other"]]
    return out


def report(raw: Path, top: int) -> list[str]:
    """The top inclusive and self entries of a raw py-spy profile."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    by_process: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, count = frames(line)
        total += count
        if stack and stack[0].startswith("process "):
            by_process[stack[0].split(":")[0]] += count
            stack = stack[1:]
        named = [short(f) for f in stack if not f.startswith("thread ")]
        for name in set(named):
            inclusive[name] += count
        if named:
            own[named[-1]] += count
    out = [f"samples: {total}", "", "| process | share |", "|---|---|"]
    out += [f"| {name} | {n / total:.1%} |" for name, n in by_process.most_common()]
    out += ["", "| inclusive | share |", "|---|---|"]
    out += [f"| {name} | {n / total:.1%} |" for name, n in inclusive.most_common(top)]
    out += ["", "| self | share |", "|---|---|"]
    out += [f"| {name} | {n / total:.1%} |" for name, n in own.most_common(top)]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", type=int, default=600)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--pool", default="prefork")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--broker", choices=("tansu", "apache"), default="tansu",
                        help="the stack's broker: tansu, or one Apache Kafka node")
    parser.add_argument("--process", choices=("worker", "web"), default="worker",
                        help="the process to sample")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--raw", type=Path, help="keep py-spy's raw output here")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--report", type=Path, metavar="RAW",
                        help="only print the tables of an earlier --raw profile")
    args = parser.parse_args()
    if args.report:
        print("\n".join([*categories(args.report), "", *report(args.report, args.top)]))
        return 0
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    raw = args.raw or Path(tempfile.mkdtemp(prefix="profile-")) / f"{args.process}.txt"
    with running_stack(ROOT, args) as target:
        warm = burst(target, 50, 4)  # imports, connections, the lifespan: not in the profile
        sampled = next(p.pid for p in target.probes if p.name == args.process)
        spy_proc = subprocess.Popen(
            [spy, "record", "--subprocesses", "--gil", "-r", str(args.rate),
             "--format", "raw", "-o", str(raw), "-p", str(sampled)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2)  # py-spy attaches
        result = burst(target, args.burst, args.clients)
        spy_proc.send_signal(2)
        spy_proc.wait(30)
    print(f"warm-up lost: {warm['lost']}; burst: {result['completed']} completed, "
          f"{result['completed_per_s']:.0f}/s (slowed by the sampler), lost {result['lost']}")
    print("CPU ms/request: " + ", ".join(f"{k} {v:.2f}" for k, v in result["cpu_ms"].items()
                                         if v is not None))
    tables = report(raw, args.top)
    print("\n".join([*categories(raw), "", *tables] if args.process == "worker" else tables))
    print(f"raw profile: {raw}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
