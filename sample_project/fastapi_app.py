"""The FastAPI app `api` of the sample, served under `/api/` beside Django.

Import it only after Django is set up (`sample_project.asgi` does that first): the routers
use Django models and auth.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from demo.api import analytics, files, orders, reports, tokens
from demo.api.connections import DjangoConnections
from fastapi import FastAPI, Request

from async_request.dependencies import problem_exception_handlers
from async_request.results.fastapi import router as results_router

PREFIX = "/api/v1"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    """What a real app sets up once per process (pools, clients, models): here a start time.

    uvicorn runs it in the web process; async-request's worker runs it in each worker process,
    so a route that needs it works the same when it is deferred.
    """
    yield {"started_at": time.time()}

# Docs live under /api/ too: the dispatcher sends every other path to Django.
api = FastAPI(
    title="async-request sample",
    docs_url=f"{PREFIX}/docs",
    redoc_url=None,
    openapi_url=f"{PREFIX}/openapi.json",
    # HTTP errors and 422s as problem+json, the shape async-request's own errors have; the
    # 422 says where the input is wrong without echoing it (FastAPI's default fails on bytes
    # that are not UTF-8).
    exception_handlers=problem_exception_handlers(),
    lifespan=lifespan,
)
api.add_middleware(DjangoConnections)


@api.get(f"{PREFIX}/health/", tags=["health"])
async def health() -> dict[str, str]:
    """Answer without auth or database: the liveness probe `make run` waits for."""
    return {"status": "ok"}


@api.get(f"{PREFIX}/lifespan/", tags=["health"])
async def lifespan_state(request: Request) -> dict[str, bool]:
    """Whether this process ran the app's lifespan (the worker must, for deferred requests)."""
    return {"lifespan": getattr(request.state, "started_at", None) is not None}


for _router in (tokens.router, orders.router, reports.router, analytics.router, files.router):
    api.include_router(_router, prefix=PREFIX)
api.include_router(results_router, prefix=PREFIX)
