"""The replay target of tests/integration/test_rerun_and_limits.py: the sample plus test routes.

The worker of that module's stack replays into this app (BS_ASYNC_REQUEST_ASGI_APP), so routes
that only tests need (an async and a threaded `def` sleep, a non-idempotent sleep, an echo)
exist where replays run, without adding them to the sample. Everything else is the sample.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from sample_project.asgi import application as sample

from async_request.types import Receive, Scope, Send

routes = FastAPI()


@routes.get("/test/sleep/")
async def sleep_async(seconds: float = 10) -> dict[str, float]:
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@routes.get("/test/sleep-sync/")
def sleep_sync(seconds: float = 10) -> dict[str, float]:
    # A plain `def` route: FastAPI runs it in a thread, which a time limit cannot interrupt.
    time.sleep(seconds)
    return {"slept": seconds}


@routes.get("/test/block/")
async def block(seconds: float = 10) -> dict[str, float]:
    time.sleep(seconds)  # noqa: ASYNC251 - the fault under test: it blocks the event loop
    return {"slept": seconds}


@routes.post("/test/sleep-post/")
async def sleep_post(seconds: float = 10) -> dict[str, float]:
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@routes.post("/test/echo/")
async def echo(request: Request) -> Response:
    body = await request.body()
    return Response(body, media_type="application/octet-stream",
                    headers={"x-had-authorization": str("authorization" in request.headers)})


async def application(scope: Scope, receive: Receive, send: Send) -> Any:
    """Test routes under /test/, the sample for everything else (its lifespan included)."""
    if scope["type"] == "http" and scope["path"].startswith("/test/"):
        return await routes(scope, receive, send)
    return await sample(scope, receive, send)
