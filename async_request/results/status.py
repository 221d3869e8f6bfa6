"""Turn a task id and the caller into one answer: (HTTP status, JSON body), from the store alone.

| state | HTTP | body |
|---|---|---|
| unknown, malformed id, other owner | 404 | problem+json (the three are indistinguishable: `UnknownOperationError`) |
| queued / running | 202 | {task_id, state: pending or running, endpoint, progress} |
| completed (any HTTP status of the route) | 200 | {task_id, state, status, endpoint, headers, response, encoding} |
| failed in the worker | 200 | {task_id, state: failed, status: null, endpoint, error} (no traceback) |
| Redis unreachable | 503 | problem+json (`StoreUnavailableError`) |

Every body carries `progress`: the route's latest `report_progress()` as {current, total,
percent, message, updated_at}, or null when it reported none.

`response` is JSON when the route answered JSON, text when it answered text, else base64 with
`encoding` saying so; the stored record keeps the body bytes exactly.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from async_request.auth import Owner
from async_request.exceptions import OperationGoneError, UnknownOperationError
from async_request.progress import Progress
from async_request.records import Operation
from async_request.settings import get_settings
from async_request.store import OperationStore, get_store

NOT_FOUND_DETAIL = "no task with this id belongs to you"
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


def rfc3339(epoch: float | None) -> str | None:
    """An epoch time as RFC 3339 in UTC with milliseconds (`2026-12-01T20:41:07.123Z`)."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def progress_body(progress: Progress | None) -> dict[str, Any] | None:
    """What status bodies and WebSocket frames show of a progress report (None: no report)."""
    if progress is None:
        return None
    return {"current": progress.current, "total": progress.total, "percent": progress.percent,
            "message": progress.message, "updated_at": rfc3339(progress.updated_at)}


def lifecycle(operation: Operation) -> dict[str, Any]:
    """The fields every status body and list item carries, whatever the state."""
    return {"task_id": operation.task_id, "state": operation.state,
            "method": operation.method, "endpoint": operation.endpoint,
            "created_at": rfc3339(operation.created_at),
            "started_at": rfc3339(operation.started_at),
            "finished_at": rfc3339(operation.finished_at),
            "expires_at": rfc3339(operation.expires_at), "attempts": operation.attempts,
            "rerun_of": operation.rerun_of, "progress": progress_body(operation.progress)}


def retry_after(operation: Operation, now: float) -> int:
    """When to look again, in seconds: soon for a fresh operation, less often as it ages."""
    since = now - (operation.started_at or operation.created_at)
    return max(1, min(10, int(since // 10) + 1))


def owned(task_id: str, owner: Owner, store: OperationStore) -> Operation:
    """The caller's operation; UnknownOperationError (404) or OperationGoneError (410)."""
    canonical = parse_task_id(task_id)
    if canonical is None or canonical != task_id.lower():
        raise UnknownOperationError(NOT_FOUND_DETAIL)
    operation = store.get(canonical)
    if operation is not None and operation.owner == str(owner):
        return operation
    if operation is None and store.gone(canonical, str(owner)):
        raise OperationGoneError(
            "this operation has expired (ASYNC_REQUEST_RESULT_EXPIRES_SEC); its result is gone")
    raise UnknownOperationError(NOT_FOUND_DETAIL)


def status_body(operation: Operation) -> dict[str, Any]:
    """The body of an operation in any state (the completed one keeps the original fields)."""
    body = lifecycle(operation)
    if operation.state == "completed" and operation.result is not None:
        body.update(completed_body(operation.result))
    elif operation.terminal:
        body.update(status=None, error=operation.error)
    return body


def status_answer(task_id: str, owner: Owner, *, store: OperationStore | None = None
                  ) -> tuple[int, dict[str, Any], dict[str, str]]:
    """HTTP status, JSON body and headers of an operation: 200 once it ended, else 202 with
    `Location` (this same URL) and `Retry-After`.

    UnknownOperationError when it is not the caller's, OperationGoneError when it expired,
    StoreUnavailableError when Redis cannot be reached.
    """
    operation = owned(task_id, owner, store or get_store())
    if operation.terminal:
        return 200, status_body(operation), {}
    return 202, status_body(operation), {
        "Location": f"{get_settings().results_path}{operation.task_id}/",
        "Retry-After": str(retry_after(operation, time.time()))}


def task_status(task_id: str, owner: Owner, *, store: OperationStore | None = None
                ) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body of an operation (see `status_answer`)."""
    code, body, _ = status_answer(task_id, owner, store=store)
    return code, body


def task_state(task_id: str, owner: Owner, store: OperationStore | None = None) -> str:
    """pending, running, completed, failed, cancelled, or unknown (also for another's task)."""
    try:
        return str(task_status(task_id, owner, store=store)[1]["state"])
    except (UnknownOperationError, OperationGoneError):
        return "unknown"
