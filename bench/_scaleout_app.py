"""The replay target of bench/scaleout.py: the sample plus `/bench/io/`, a route that waits.

`GET /bench/io/?run=R&i=N&ms=50` sleeps `ms` milliseconds (an I/O-bound route: it holds its
worker's pool slot without using CPU) and appends `[i, pid, parent pid, start, end]` to the
Redis list `scaleout:<run>` at `SCALEOUT_REDIS_URL`. The bench maps the pid (threads and solo
pools) or the parent pid (a prefork pool child) to the worker process it started, counts each
request's runs (duplicates) and takes the throughput from the end times.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from functools import cache
from typing import Any

import redis
from fastapi import FastAPI
from sample_project.asgi import application as sample

from async_request.types import Receive, Scope, Send

routes = FastAPI()


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["SCALEOUT_REDIS_URL"])


@routes.get("/bench/io/")
async def wait_io(run: str, i: int, ms: float = 50) -> dict[str, Any]:
    started = time.time()
    await asyncio.sleep(ms / 1000)
    ended = time.time()
    # one RPUSH (~0.1 ms): blocking the loop this briefly does not matter here
    _redis().rpush(f"scaleout:{run}", json.dumps([i, os.getpid(), os.getppid(), started, ended]))
    return {"i": i, "slept_ms": ms}


async def application(scope: Scope, receive: Receive, send: Send) -> Any:
    """`/bench/` routes here, the sample for everything else (its lifespan included)."""
    if scope["type"] == "http" and scope["path"].startswith("/bench/"):
        return await routes(scope, receive, send)
    return await sample(scope, receive, send)
