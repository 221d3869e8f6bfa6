"""Turn a task id and the caller into one answer: (HTTP status, JSON body), from the store alone.

| state | HTTP | body |
|---|---|---|
| unknown, malformed id, other owner | 404 | problem+json (the three are indistinguishable: `UnknownOperationError`) |
| queued / running | 202 | {task_id, state: pending or running, endpoint} |
| completed (any HTTP status of the route) | 200 | {task_id, state, status, endpoint, headers, response, encoding} |
| failed in the worker | 200 | {task_id, state: failed, status: null, endpoint, error} (no traceback) |
| Redis unreachable | 503 | problem+json (`StoreUnavailableError`) |

`response` is JSON when the route answered JSON, text when it answered text, else base64 with
`encoding` saying so; the stored record keeps the body bytes exactly.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from async_request.auth import Owner
from async_request.exceptions import UnknownOperationError
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


def task_status(task_id: str, owner: Owner, *, store: OperationStore | None = None
                ) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body of an operation; UnknownOperationError when not the caller's.

    StoreUnavailableError when Redis cannot be reached.
    """
    canonical = parse_task_id(task_id)
    if canonical is None or canonical != task_id.lower():
        raise UnknownOperationError(NOT_FOUND_DETAIL)
    operation = (store or get_store()).get(canonical)
    if operation is None or operation.owner != str(owner):
        raise UnknownOperationError(NOT_FOUND_DETAIL)
    if operation.state == "completed" and operation.result is not None:
        return 200, completed_body(operation.result)
    if operation.state == "failed":
        return 200, {"task_id": canonical, "state": "failed", "status": None,
                     "endpoint": operation.endpoint, "error": operation.error}
    return 202, {"task_id": canonical, "state": operation.state, "endpoint": operation.endpoint}


def task_state(task_id: str, owner: Owner, store: OperationStore | None = None) -> str:
    """pending, running, completed, failed, or unknown (also for another owner's task)."""
    try:
        return str(task_status(task_id, owner, store=store)[1]["state"])
    except UnknownOperationError:
        return "unknown"
