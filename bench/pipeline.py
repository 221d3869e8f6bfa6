#!/usr/bin/env python3
"""Benchmark of the whole pipeline: the sample on a real ASGI server (uvicorn) with one worker.

Prints a table:
- time-to-202 of `GET /api/v1/orders/` with `X-Async-Request: true`, next to the same request
  without the header (interleaved, so both see the same machine load);
- end to end: send → WebSocket notification, sequential;
- 1000 async requests from 16 concurrent clients: accepted/s, completed/s, lost, and the CPU
  milliseconds per completed request of each server process over the burst (from /proc, see
  bench/_cpu.py): web server (uvicorn), worker (Celery main process + pool), broker (tansu),
  Redis, database (PostgreSQL with DATABASE_URL; SQLite has no server), and their sum, and
  beside it this script's own (the measuring clients share the cores);
- then `--idle` seconds with nothing sent: the worker's and the broker's CPU, % of one core;
- then `--trickle` seconds of one async request every `--trickle-every` seconds (a worker that
  is neither busy nor idle): the worker's and the broker's CPU, % of one core, and the send →
  WebSocket p50 of those requests.

Each measurement is repeated (`--repeat`); the table gives the median of the runs' p50 and p99
and the range (min–max) of the runs' p50. It starts its own tansu broker and uses Redis
(`REDIS_URL` when it answers, which it then cannot measure, else its own), database 7, flushed
first. The sample's database is a fresh SQLite file, or `DATABASE_URL` when set. `--broker
apache`: one Apache Kafka node (tools/apache_kafka.py) instead of tansu.

`--baseline REV` measures a checkout of REV (a temporary `git worktree`, removed at the end)
in the same invocation, interleaved with the current tree: round 1 current then baseline,
round 2 baseline then current, ... Each round starts a fresh stack whose processes run that
tree's code (`celery_app.py`, `sample_project/`, `async_request/`); the measuring client is
always this one. A comparison table with the ratios current/baseline follows the details.

    .venv/bin/python bench/pipeline.py [--repeat 3] [--seq 200] [--e2e 100] [--burst 1000]
                                       [--pool prefork] [--idle 15] [--baseline REV]
                                       [--pools asyncio:32,prefork:2,threads:8]
                                       [--trickle 20 --trickle-every 0.5] [--broker apache]

`--pools` measures the current tree once per pool (`pool:concurrency`; `asyncio` is ours,
async_request/pool.py), interleaved with each other and with `--baseline` (which runs `--pool`
and `--concurrency`), and prints each against the baseline (or against the first pool).
`--databases sqlite,postgresql://...` runs each pool on each database, interleaved too (the
SQLite against PostgreSQL ratio from one invocation).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._cpu import Probe, ms_per_request, postgres_probe, sample  # noqa: E402
from bench._report import Round, Tree, comparison, details  # noqa: E402
from tools.services import Service  # noqa: E402
from tools.soak import RESULTS  # noqa: E402
from tools.stack import Stack, private_stack  # noqa: E402

PATH = "/api/v1/orders/"
#: The frames that end an operation (a tree with the event log also sends pending, running).
TERMINAL = frozenset({"completed", "failed", "cancelled"})

@dataclass
class Target:
    """A running stack as the client sees it: where to send, who to be, what to measure."""

    base: str
    token: str
    probes: list[Probe]
    redis_url: str = ""

    @property
    def ws_url(self) -> str:
        # ?token= in the URL: both the current consumer and older ones accept it.
        return self.base.replace("http://", "ws://") + f"/ws/?token={self.token}"


def step(what: str) -> None:
    print(f"… {time.strftime('%H:%M:%S')} {what}", file=sys.stderr, flush=True)


# -- the measurements (the client: always this tree's code) --------------------------------

def time_to_202(target: Target, n: int) -> tuple[list[float], list[float]]:
    """Interleaved sync and async requests; returns (sync ms, async ms)."""
    sync_ms: list[float] = []
    async_ms: list[float] = []
    auth = {"authorization": f"Bearer {target.token}"}
    with httpx.Client(base_url=target.base, timeout=30) as http:
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


def end_to_end(target: Target, n: int) -> list[float]:
    """Send → WebSocket notification, one at a time; returns ms."""
    out: list[float] = []
    auth = {"authorization": f"Bearer {target.token}", "x-async-request": "true"}
    with connect(target.ws_url) as ws, httpx.Client(base_url=target.base, timeout=30) as http:
        ws.recv(timeout=10)
        for i in range(n + 5):
            t0 = time.perf_counter()
            task_id = http.get(PATH, headers=auth).json()["meta"]["async_request_id"]
            while True:  # its terminal frame (pending and running ones come first)
                data = json.loads(json.loads(ws.recv(timeout=60))["data"])
                if data["task_id"] == task_id and data["status"] in TERMINAL:
                    break
            if i >= 5:
                out.append((time.perf_counter() - t0) * 1000)
    return out


async def raw_requests(base: str, token: str, count: int) -> list[tuple[int, bytes]]:
    """`count` async GETs of PATH on one keep-alive HTTP/1.1 connection, written by hand:
    (status, body) of each. The `--client raw` load: a fraction of httpx's CPU per request,
    so the measuring clients take less of the cores the servers share (`client_ms`)."""
    url = httpx.URL(base)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    request = (f"GET {PATH} HTTP/1.1\r\nhost: {url.host}:{url.port}\r\n"
               f"authorization: Bearer {token}\r\nx-async-request: true\r\n\r\n").encode()
    answers: list[tuple[int, bytes]] = []
    try:
        for _ in range(count):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in lines
                          if line.lower().startswith(b"content-length:"))
            answers.append((int(lines[0].split(b" ", 2)[1]), await reader.readexactly(length)))
    finally:
        writer.close()
    return answers


def burst(target: Target, total: int, clients: int, timeout: float = 60,
          client_kind: str = "httpx") -> dict[str, Any]:
    """`total` async requests from `clients` concurrent clients; count what comes back.

    `cpu_ms`: CPU ms per completed request of each probe, sampled right before the first
    request and right after the last notification. `client_kind`: httpx, or raw
    (`raw_requests`).
    """
    done: dict[str, float] = {}
    ready = threading.Event()
    stop = threading.Event()

    def listen() -> None:
        with connect(target.ws_url, max_size=None) as ws:
            ws.recv(timeout=10)
            ready.set()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not stop.is_set():
                try:
                    frame = ws.recv(timeout=1)
                except TimeoutError:
                    continue
                if "running" in frame or "pending" in frame:
                    continue  # not parsed (client CPU); older trees' frames have no status
                parsed = json.loads(frame)
                if parsed.get("type") != "data":
                    continue
                data = json.loads(parsed["data"])
                if data.get("status", "completed") in TERMINAL:  # older trees: terminal only
                    done[data["task_id"]] = time.perf_counter()

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    ready.wait(10)
    accepted: list[str] = []
    refused = 0

    async def client(count: int) -> None:
        nonlocal refused
        if client_kind == "raw":
            for status, body in await raw_requests(target.base, target.token, count):
                if status == 202:
                    accepted.append(json.loads(body)["meta"]["async_request_id"])
                else:
                    refused += 1
            return
        auth = {"authorization": f"Bearer {target.token}", "x-async-request": "true"}
        async with httpx.AsyncClient(base_url=target.base, timeout=60) as http:
            for _ in range(count):
                response = await http.get(PATH, headers=auth)
                if response.status_code == 202:
                    accepted.append(response.json()["meta"]["async_request_id"])
                else:
                    refused += 1

    async def run_clients() -> None:
        share = [total // clients + (1 if i < total % clients else 0) for i in range(clients)]
        await asyncio.gather(*(client(n) for n in share))

    cpu_before = sample(target.probes)
    own_before = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    asyncio.run(run_clients())
    t_accepted = time.perf_counter() - t0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not set(accepted) <= done.keys():
        time.sleep(0.05)
    cpu_after = sample(target.probes)
    own_after = resource.getrusage(resource.RUSAGE_SELF)
    stop.set()
    listener.join(5)
    completed = [done[t] for t in accepted if t in done]
    t_completed = (max(completed) - t0) if completed else float("nan")
    unnotified = lost = 0
    auth = {"authorization": f"Bearer {target.token}"}
    with httpx.Client(base_url=target.base, timeout=30) as http:  # no notification: a result?
        for task_id in (t for t in accepted if t not in done):
            state = http.get(RESULTS.format(task_id), headers=auth).json().get("state")
            if state in ("completed", "failed"):
                unnotified += 1
            else:
                lost += 1
    return {"accepted": len(accepted), "refused": refused,
            "accepted_per_s": len(accepted) / t_accepted,
            "completed": len(completed), "completed_per_s": len(completed) / t_completed,
            "unnotified": unnotified, "lost": lost,
            "cpu_ms": ms_per_request(cpu_before, cpu_after, len(completed)),
            # The measuring clients and their WebSocket listener (this process) share the
            # cores with the servers: their CPU per request, beside the servers' sum.
            "client_ms": ((own_after.ru_utime + own_after.ru_stime - own_before.ru_utime
                           - own_before.ru_stime) * 1000 / max(len(completed), 1))}


def measure(target: Target, args: argparse.Namespace, label: str) -> Round:
    """One round of the three measurements against a running stack."""
    step(f"{label}: time-to-202")
    sync_ms, async_ms = time_to_202(target, args.seq)
    step(f"{label}: end to end")
    e2e_ms = end_to_end(target, args.e2e)
    step(f"{label}: burst of {args.burst}")
    result = burst(target, args.burst, args.clients, client_kind=args.client)
    step(f"{label}: idle for {args.idle:g} s")
    result["idle_pct"] = idle_percent(target, args.idle)
    if args.trickle > 0:
        step(f"{label}: one request every {args.trickle_every:g} s for {args.trickle:g} s")
        result["trickle_pct"], result["trickle_ms"] = trickle(target, args.trickle,
                                                              args.trickle_every)
    return Round(sync_ms, async_ms, e2e_ms, result)


def idle_percent(target: Target, seconds: float, settle: float = 3.0) -> float:
    """% of one core the worker (with its pool) and the broker use with nothing sent, over
    `seconds` after `settle` seconds for the last burst's stragglers."""
    time.sleep(settle)
    probes = [p for p in target.probes if p.name in ("worker", "broker")]
    before = sample(probes)
    time.sleep(seconds)
    after = sample(probes)
    return sum((after[p.name] or 0.0) - (before[p.name] or 0.0) for p in probes) * 100 / seconds


def trickle(target: Target, seconds: float, every: float) -> tuple[float, float]:
    """(% of one core of the worker and the broker, send → WebSocket p50 ms) while one
    request is sent every `every` seconds for `seconds`: the load of a quiet service, where
    a consumer's empty fetches, not its requests, are most of the work."""
    probes = [p for p in target.probes if p.name in ("worker", "broker")]
    auth = {"authorization": f"Bearer {target.token}", "x-async-request": "true"}
    times: list[float] = []
    with connect(target.ws_url) as ws, httpx.Client(base_url=target.base, timeout=30) as http:
        ws.recv(timeout=10)
        before, start = sample(probes), time.monotonic()
        while time.monotonic() - start < seconds:
            t0 = time.perf_counter()
            task_id = http.get(PATH, headers=auth).json()["meta"]["async_request_id"]
            while True:
                data = json.loads(json.loads(ws.recv(timeout=60))["data"])
                if data["task_id"] == task_id and data["status"] in TERMINAL:
                    break
            times.append((time.perf_counter() - t0) * 1000)
            time.sleep(max(0.0, every - (time.perf_counter() - t0)))
        after, elapsed = sample(probes), time.monotonic() - start
    cpu = sum((after[p.name] or 0.0) - (before[p.name] or 0.0) for p in probes)
    return cpu * 100 / elapsed, statistics.median(times)


# -- stacks and trees -----------------------------------------------------------------------

def probes(stack: Stack, web: Service, worker: Service) -> list[Probe]:
    """One probe per server process of the stack (see PROCESSES)."""
    def of(name: str, service: Service | None, external: str) -> Probe:
        if service is None or service.process is None:
            return Probe(name, None, external)
        return Probe(name, service.process.pid)

    backing = {service.name: service for service in stack.backing}
    found = [of("web", web, ""), of("worker", worker, ""),
             of("broker", backing.get("kafka"), "external broker: not measured"),
             of("redis", backing.get("redis"), "external Redis (REDIS_URL): not measured")]
    if stack.database_url:
        found.append(postgres_probe(stack.database_url))
    else:
        found.append(Probe("database", None, "– (SQLite: no server)"))
    return found


@contextlib.contextmanager
def running_stack(root: Path, args: argparse.Namespace) -> Iterator[Target]:
    """A fresh private stack running the code of `root`, with its web app and one worker."""
    database_url = getattr(args, "database_url", os.environ.get("DATABASE_URL") or None)
    with private_stack("bench-pipeline", redis_db=getattr(args, "redis_db", 7), root=root,
                       database_url=database_url, broker=args.broker) as stack:
        stack.create_user("bench", "bench")
        token = stack.issue_token("bench")
        web = stack.start_web()
        worker = stack.start_worker(pool=getattr(args, "pool", "prefork"),
                                     concurrency=args.concurrency)
        yield Target(web.url, token, probes(stack, web, worker), stack.redis_url)


def git(*argv: str) -> str:
    """Output of `git *argv` in this tree; SystemExit with git's message when it fails."""
    done = subprocess.run(["git", "-C", str(ROOT), *argv], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"git {' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout.strip()


@contextlib.contextmanager
def checkout(rev: str) -> Iterator[Path]:
    """A detached `git worktree` of rev in a temporary directory, removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
    path = tmp / "tree"
    try:
        git("worktree", "add", "--detach", str(path), rev)
        yield path
    finally:
        if path.exists():
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)],
                           check=False, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def current_label() -> str:
    dirty = " + uncommitted changes" if git("status", "--porcelain") else ""
    return f"current ({git('rev-parse', '--short', 'HEAD')}{dirty})"


# -- main -----------------------------------------------------------------------------------

def run_round(tree: Tree, args: argparse.Namespace, label: str) -> None:
    step(f"{label}: starting a stack from {tree.root}")
    with running_stack(tree.root, args) as target:
        tree.probes = target.probes
        tree.rounds.append(measure(target, args, label))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seq", type=int, default=200)
    parser.add_argument("--e2e", type=int, default=100)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--client", choices=("httpx", "raw"), default="httpx",
                        help="the burst's HTTP client (raw: hand-written HTTP/1.1, less CPU)")
    parser.add_argument("--idle", type=float, default=15,
                        help="seconds of idle CPU measured after each burst")
    parser.add_argument("--trickle", type=float, default=0,
                        help="seconds of sparse requests after the idle period (0: none)")
    parser.add_argument("--trickle-every", type=float, default=0.5,
                        help="seconds between the sparse requests of --trickle")
    parser.add_argument("--broker", choices=("tansu", "apache"), default="tansu",
                        help="the stacks' broker: tansu, or one Apache Kafka node")
    parser.add_argument("--pool", default="prefork", help="worker pool (celery -P)")
    parser.add_argument("--concurrency", type=int, default=2, help="worker pool size")
    parser.add_argument("--pools", metavar="POOL:C,...",
                        help="measure the current tree with each pool (e.g. asyncio:32,"
                             "prefork:2,threads:8), interleaved with each other and the baseline")
    parser.add_argument("--databases", metavar="sqlite,URL",
                        help="with --pools: each pool on each of these databases (`sqlite`, or "
                             "a PostgreSQL URL), interleaved; the first is the reference")
    parser.add_argument("--redis-db", type=int, default=7, help="Redis database of the stacks")
    parser.add_argument("--baseline", metavar="REV",
                        help="also measure this git revision, interleaved (see above)")
    args = parser.parse_args()

    if args.pools:
        return compare_pools(args)
    current = Tree(current_label(), ROOT)
    if args.baseline is None:  # one stack for all runs
        with running_stack(ROOT, args) as target:
            current.probes = target.probes
            for run in range(args.repeat):
                current.rounds.append(measure(target, args, f"run {run + 1}/{args.repeat}"))
        print("\n".join(details(current, PATH, args.burst, args.clients)))
        return 0

    with checkout(args.baseline) as path:
        baseline = Tree(f"baseline ({git('rev-parse', '--short', args.baseline)})", path)
        for run in range(args.repeat):
            order = (current, baseline) if run % 2 == 0 else (baseline, current)
            for tree in order:
                run_round(tree, args, f"round {run + 1}/{args.repeat}, {tree.label}")
    rows = [*details(current, PATH, args.burst, args.clients), "",
            *details(baseline, PATH, args.burst, args.clients), "",
            "### current / baseline (median [min–max] of the rounds)", "",
            *comparison(current, baseline)]
    print("\n".join(rows))
    return 0


def pool_spec(text: str) -> tuple[str, int]:
    """'asyncio:32' → ('asyncio', 32); a bare pool name keeps --concurrency's default of 2."""
    pool, _, concurrency = text.partition(":")
    return pool, int(concurrency or 2)


def compare_pools(args: argparse.Namespace) -> int:
    """`--pools`: the current tree with each pool, and `--baseline` (with --pool and
    --concurrency) when given, all interleaved (the order turns round each round); each
    variant against the reference (the baseline, else the first pool)."""
    variants: list[tuple[Tree, argparse.Namespace]] = []
    databases = args.databases.split(",") if args.databases else [None]
    for spec in args.pools.split(","):
        pool, concurrency = pool_spec(spec)
        for database in databases:
            label = f"{current_label()} -P {pool} -c {concurrency}"
            settings: dict[str, Any] = {"pool": pool, "concurrency": concurrency}
            if database is not None:
                settings["database_url"] = None if database == "sqlite" else database
                label += " on SQLite" if database == "sqlite" else " on PostgreSQL"
            variant = argparse.Namespace(**{**vars(args), **settings})
            variants.append((Tree(label, ROOT), variant))
    with contextlib.ExitStack() as stack:
        if args.baseline:
            path = stack.enter_context(checkout(args.baseline))
            label = (f"baseline ({git('rev-parse', '--short', args.baseline)}) -P {args.pool} "
                     f"-c {args.concurrency}")
            variants.append((Tree(label, path), args))
        for run in range(args.repeat):
            order = variants if run % 2 == 0 else variants[::-1]
            for tree, variant in order:
                run_round(tree, variant, f"round {run + 1}/{args.repeat}, {tree.label}")
    reference = variants[-1][0] if args.baseline else variants[0][0]
    rows: list[str] = []
    for tree, _ in variants:
        rows += [*details(tree, PATH, args.burst, args.clients), ""]
    for tree, _ in variants:
        if tree is not reference:
            rows += [f"### {tree.label} / {reference.label} (median [min–max] of the rounds)",
                     "", *comparison(tree, reference), ""]
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
