"""The FastAPI app `api` of the sample, served under `/api/` beside Django.

Import it only after Django is set up (`sample_project.asgi` does that first): the routers
use Django models and auth.
"""

from __future__ import annotations

from demo.api import analytics, files, orders, reports, tokens
from demo.api.connections import DjangoConnections
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from async_request.problems import PROBLEM_CONTENT_TYPE, problem
from async_request.results.fastapi import router as results_router

PREFIX = "/api/v1"

# Docs live under /api/ too: the dispatcher sends every other path to Django.
api = FastAPI(
    title="async-request sample",
    docs_url=f"{PREFIX}/docs",
    redoc_url=None,
    openapi_url=f"{PREFIX}/openapi.json",
)
api.add_middleware(DjangoConnections)


@api.exception_handler(StarletteHTTPException)
async def problem_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Send HTTP errors as problem+json, the shape async-request's own errors have."""
    return JSONResponse(
        problem(exc.status_code, str(exc.detail)),
        status_code=exc.status_code,
        headers=exc.headers,
        media_type=PROBLEM_CONTENT_TYPE,
    )


@api.exception_handler(RequestValidationError)
async def validation_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 as problem+json listing where the input is wrong, never echoing raw input bytes.

    FastAPI's default handler echoes the input and fails (a 500) when it is not UTF-8.
    """
    errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")),
               "type": str(e.get("type", ""))} for e in exc.errors()]
    return JSONResponse(
        problem(422, "the request is invalid", errors=errors),
        status_code=422,
        media_type=PROBLEM_CONTENT_TYPE,
    )


@api.get(f"{PREFIX}/health/", tags=["health"])
async def health() -> dict[str, str]:
    """Answer without auth or database: the liveness probe `make run` waits for."""
    return {"status": "ok"}


for _router in (tokens.router, orders.router, reports.router, analytics.router, files.router):
    api.include_router(_router, prefix=PREFIX)
api.include_router(results_router, prefix=PREFIX)
