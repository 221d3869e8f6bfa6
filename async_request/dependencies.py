"""`require_async`: routes that must never run in a client's request cycle, only as a replay.

It reads only the scope marker that `replay.replay()` sets; a header cannot fake it. A FastAPI
dependency (`Depends(require_async)`) and a Django view decorator (`@require_async_view`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from async_request.problems import Problem, django_response, starlette_response
from async_request.types import INTERNAL_SCOPE_KEY

F = TypeVar("F", bound=Callable[..., Any])
REQUIRE_ASYNC_DETAIL = (
    "this endpoint runs only in the background: send the request with 'X-Async-Request: true'"
)


def is_internal(scope: Mapping[str, Any]) -> bool:
    """True only for a request replayed by an async-request worker."""
    return isinstance(scope.get(INTERNAL_SCOPE_KEY), dict)


def replay_of(scope: Mapping[str, Any]) -> dict[str, Any] | None:
    """`{"task_id", "attempt"}` of a worker's replay, else None: a key to deduplicate on."""
    marker = scope.get(INTERNAL_SCOPE_KEY)
    return dict(marker) if isinstance(marker, dict) else None


def is_cancelled(request_or_scope: Any) -> bool:
    """True once the owner cancelled this replay (FastAPI `Request`, Django request or scope).

    Its `receive()` also answers `http.disconnect` then; a route that checks either can stop
    early and cleanly. A route that runs on is stopped after ASYNC_REQUEST_CANCEL_GRACE_SEC.
    Always False outside a replay, so routes never branch on how they run.
    """
    scope = getattr(request_or_scope, "scope", request_or_scope)
    marker = scope.get(INTERNAL_SCOPE_KEY) if isinstance(scope, Mapping) else None
    cancel = marker.get("cancel") if isinstance(marker, dict) else None
    return bool(cancel is not None and cancel.is_set())


async def require_async(request: Request) -> None:
    """FastAPI dependency: 409 unless the request is an internal replay.

    Rendered as problem+json when the app installs `problem_exception_handlers()`, else as
    FastAPI's usual `{"detail": ...}`.
    """
    if not is_internal(request.scope):
        raise AsyncRequiredError(status_code=409, detail=REQUIRE_ASYNC_DETAIL)


class AsyncRequiredError(HTTPException):
    """A route that needs `X-Async-Request` was called directly."""


async def _http_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # registered for HTTPException only
    return starlette_response(Problem(exc.status_code, str(exc.detail),
                                      tuple((exc.headers or {}).items())))


async def _validation_problem(request: Request, exc: Exception) -> Response:
    # FastAPI's default 422 echoes the input, and fails with a 500 on bytes that are not
    # UTF-8; this one says where the input is wrong, without echoing it.
    errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")),
               "type": str(e.get("type", ""))} for e in exc.errors()]  # type: ignore[attr-defined]
    return starlette_response(Problem(422, "the request is invalid", extra={"errors": errors}))


def problem_exception_handlers() -> dict[Any, Any]:
    """Handlers for `FastAPI(exception_handlers=...)`: HTTP errors and 422s as problem+json."""
    handlers: dict[Any, Any] = {HTTPException: _http_problem}
    try:
        from fastapi.exceptions import RequestValidationError
    except ImportError:  # a Starlette app without FastAPI
        return handlers
    handlers[RequestValidationError] = _validation_problem
    return handlers


def _conflict_response() -> Any:
    return django_response(Problem(409, REQUIRE_ASYNC_DETAIL))


def require_async_view(view: F) -> F:
    """Django view decorator (sync or async views): 409 unless the request is a replay."""
    if inspect.iscoroutinefunction(view):
        @functools.wraps(view)
        async def async_wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
            if not is_internal(getattr(request, "scope", {})):
                return _conflict_response()
            return await view(request, *args, **kwargs)

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(view)
    def wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
        if not is_internal(getattr(request, "scope", {})):
            return _conflict_response()
        return view(request, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
