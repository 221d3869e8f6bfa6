"""Turn a task id and the caller into one answer: (HTTP status, JSON body).

| state | HTTP | body |
|---|---|---|
| unknown, malformed id, other owner | 404 | problem+json (the three are indistinguishable) |
| queued / running | 202 | {task_id, state: pending or running, endpoint} |
| completed (any HTTP status of the route) | 200 | {task_id, state, status, endpoint, headers, response, encoding} |
| failed in the worker | 200 | {task_id, state: failed, status: null, endpoint, error} (no traceback) |
| Redis unreachable | 503 | problem+json |

`response` is JSON when the route answered JSON, text when it answered text, else base64 with
`encoding` saying so; the stored record keeps the body bytes exactly.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from typing import Any

import redis
from celery.result import AsyncResult

from async_request.auth import Owner
from async_request.celery_config import get_celery_app
from async_request.problems import problem
from async_request.registry import Registry, get_registry

logger = logging.getLogger(__name__)

NOT_FOUND_DETAIL = "no task with this id belongs to you"
_PENDING_STATES = {"PENDING", "RECEIVED", "RETRY"}
_TEXT_TYPES = ("text/", "application/xml", "application/javascript",
               "application/x-www-form-urlencoded", "application/xhtml+xml")


def parse_task_id(task_id: str) -> str | None:
    """The canonical form of a UUID task id, or None if it is not one."""
    try:
        return str(uuid.UUID(task_id))
    except (ValueError, AttributeError, TypeError):
        return None


def render_body(body: bytes, headers: list[list[str]]) -> tuple[Any, str]:
    """(response, encoding): parsed JSON, text, or base64 of the exact bytes."""
    content_type = next((v for n, v in headers if n.lower() == "content-type"), "").lower()
    mime = content_type.split(";")[0].strip()
    if mime == "application/json" or mime.endswith("+json"):
        try:
            return json.loads(body), "json"
        except ValueError:
            pass
    if mime.startswith(_TEXT_TYPES) or (not mime and body.isascii()):
        charset = "utf-8"
        if "charset=" in content_type:
            charset = content_type.split("charset=")[1].split(";")[0].strip() or "utf-8"
        try:
            return body.decode(charset), "text"
        except (UnicodeDecodeError, LookupError):
            pass
    return base64.b64encode(body).decode("ascii"), "base64"


def completed_body(record: dict[str, Any]) -> dict[str, Any]:
    """The 200 body of a completed task from its stored ReplayResult record."""
    headers = [list(pair) for pair in record.get("headers", [])]
    response, encoding = render_body(base64.b64decode(record.get("body", "")), headers)
    return {"task_id": record["task_id"], "state": "completed", "status": record["status"],
            "endpoint": record["endpoint"], "headers": headers, "response": response,
            "encoding": encoding}


def short_error(result: AsyncResult) -> str:
    """A one-line reason for a failed task, never a traceback."""
    exc = result.result
    name = type(exc).__name__ if isinstance(exc, BaseException) else "Error"
    text = str(exc) if exc is not None else "the task failed"
    return f"{name}: {text}"[:300]


def _owned_entry(task_id: str, owner: Owner, registry: Registry) -> dict[str, str] | None:
    entry = registry.entry(task_id)
    if entry is None or entry.get("owner") != str(owner):
        return None
    return entry


def task_state(task_id: str, owner: Owner, registry: Registry | None = None) -> str:
    """pending, running, completed, failed, or unknown (also for another owner's task)."""
    code, body = task_status(task_id, owner, registry=registry)
    if code == 404:
        return "unknown"
    return str(body.get("state", "unknown"))


def task_status(task_id: str, owner: Owner, *, registry: Registry | None = None
                ) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body the results endpoint answers."""
    canonical = parse_task_id(task_id)
    if canonical is None or canonical != task_id.lower():
        return 404, problem(404, NOT_FOUND_DETAIL)
    registry = registry or get_registry()
    try:
        entry = _owned_entry(canonical, owner, registry)
        if entry is None:
            return 404, problem(404, NOT_FOUND_DETAIL)
        result = AsyncResult(canonical, app=get_celery_app())
        state = result.state
        run = registry.run_state(canonical) if state not in ("SUCCESS", "FAILURE") else None
    except (redis.RedisError, OSError):
        logger.exception("results store unavailable while reading task %s", canonical)
        return 503, problem(503, "the results store (Redis) is unavailable; retry later")
    endpoint = entry.get("endpoint", "")
    if state == "SUCCESS" and isinstance(result.result, dict):
        return 200, completed_body(result.result)
    if run and run.get("state") == "done" and isinstance(run.get("result"), dict):
        return 200, completed_body(run["result"])
    if state in ("FAILURE", "REVOKED") or (run and run.get("state") == "failed"):
        error = short_error(result) if state == "FAILURE" else (
            run.get("error") if run else "the task was revoked")
        return 200, {"task_id": canonical, "state": "failed", "status": None,
                     "endpoint": endpoint, "error": error}
    return 202, {"task_id": canonical,
                 "state": "pending" if state in _PENDING_STATES else "running",
                 "endpoint": endpoint}
