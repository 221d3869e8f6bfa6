"""Steer and list operations: cancel one, list the caller's own. The core both adapters call.

| call | state | HTTP | body |
|---|---|---|---|
| cancel | pending | 200 | the status body, `state: cancelled` (it will never be replayed) |
| cancel | running | 202 | the status body with `cancel_requested: true` (its worker is told) |
| cancel | cancelled | 200 | the same body again (cancelling is idempotent) |
| cancel | completed, failed | 409 | problem+json naming the state |
| list | | 200 | `{"data": [summary, ...], "meta": {"next_cursor": str or null}}`, newest first |
| ticket | | 201 | `{"ticket", "expires_at", "expires_in"}`: a subscription ticket (`tickets.py`) |

Another owner's id answers like an unknown one (404); so does a malformed one.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from async_request.auth import Owner
from async_request.exceptions import BadQueryError, OperationStateError
from async_request.records import STATES
from async_request.results.status import lifecycle, owned, rfc3339, status_body
from async_request.settings import get_settings
from async_request.store import OperationStore, get_store
from async_request.tickets import issue

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def cancel(task_id: str, owner: Owner, *, store: OperationStore | None = None
           ) -> tuple[int, dict[str, Any]]:
    """Cancel the caller's operation; (HTTP status, body). OperationStateError when it ended."""
    store = store or get_store()
    operation = owned(task_id, owner, store)
    state = store.cancel(operation.task_id, str(owner))
    if state in ("completed", "failed"):
        raise OperationStateError(f"the operation has already {state}: nothing to cancel")
    now = owned(operation.task_id, owner, store)
    body = status_body(now)
    if now.state == "running":
        return 202, {**body, "cancel_requested": True}
    return 200, body


def parse_states(text: str | None) -> frozenset[str] | None:
    """The `state` filter: comma separated states, or None for all."""
    if not text:
        return None
    states = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(states - set(STATES))
    if unknown or not states:
        raise BadQueryError(f"state: {', '.join(unknown) or repr(text)} is not one of "
                            f"{', '.join(STATES)}")
    return states


def parse_limit(text: str | None) -> int:
    """The page size: 1 to MAX_LIMIT, DEFAULT_LIMIT when absent."""
    if text is None:
        return DEFAULT_LIMIT
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise BadQueryError(f"limit: {text!r} is not a number from 1 to {MAX_LIMIT}")
    return int(text)


def encode_cursor(position: tuple[float, str]) -> str:
    return base64.urlsafe_b64encode(f"{position[0]!r}|{position[1]}".encode()).decode()


def parse_cursor(text: str | None) -> tuple[float, str] | None:
    """The opaque cursor a previous page returned."""
    if not text:
        return None
    try:
        score, _, task_id = base64.urlsafe_b64decode(text.encode()).decode().partition("|")
        return float(score), task_id
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise BadQueryError(f"cursor: {text[:40]!r} is not a cursor this endpoint gave") from exc


def list_operations(owner: Owner, query: dict[str, str], *,
                    store: OperationStore | None = None) -> tuple[int, dict[str, Any]]:
    """The caller's operations, newest first: (200, {"data": [...], "meta": {"next_cursor"}})."""
    states = parse_states(query.get("state"))
    limit = parse_limit(query.get("limit"))
    after = parse_cursor(query.get("cursor"))
    found, last = (store or get_store()).page(str(owner), after=after, limit=limit,
                                              states=states)
    return 200, {"data": [lifecycle(operation) for operation in found],
                 "meta": {"next_cursor": None if last is None else encode_cursor(last)}}


def subscription_ticket(owner: Owner) -> tuple[int, dict[str, Any]]:
    """A ticket for the caller's WebSocket or event stream: (201, {ticket, expires_at, ...})."""
    settings = get_settings()
    ticket = issue(owner, settings)
    return 201, {"ticket": ticket.value, "expires_at": rfc3339(ticket.expires_at),
                 "expires_in": settings.ticket_ttl_sec}
