"""The records of the operation store: key names, states, and the shapes read back from Redis.

`store.py` holds the behaviour (who writes what, when); this module holds what a record is.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from async_request.exceptions import EnvelopeError
from async_request.progress import Progress
from async_request.seal import unseal

PREFIX = "async_request"
STATES = ("pending", "running", "completed", "failed", "cancelled")
TERMINAL_STATES = frozenset({"completed", "failed", "cancelled"})
#: How long after an operation expired its owner still hears "gone" (410) rather than 404.
GONE_SEC = 7 * 86400
CANCELLED_ERROR = "cancelled by its owner"
#: The fields a list item shows: a page reads only these, never the sealed result (opening 50
#: results per page was most of a list read's cost).
SUMMARY_FIELDS = ("owner", "method", "endpoint", "state", "created_at", "started_at",
                  "finished_at", "expires_at", "attempts", "error", "cancel_requested",
                  "progress", "rerun_of")


def op_key(task_id: str) -> str:
    return f"{PREFIX}:op:{task_id}"


def lease_key(task_id: str) -> str:
    return f"{PREFIX}:lease:{task_id}"


def body_key(task_id: str) -> str:
    return f"{PREFIX}:body:{task_id}"


def gone_key(task_id: str) -> str:
    return f"{PREFIX}:gone:{task_id}"


def done_channel(task_id: str) -> str:
    """The pub/sub channel told once the operation ended (`OperationStore.wait_terminal`)."""
    return f"{PREFIX}:done:{task_id}"


def _owner_hash(owner: str) -> str:
    return hashlib.sha256(owner.encode()).hexdigest()


def envelope_key(task_id: str) -> str:
    """The captured request (the sealed wire envelope), kept so the owner can re-run it."""
    return f"{PREFIX}:envelope:{task_id}"


def owner_key(owner: str) -> str:
    """The owner's index of operations (a sorted set by creation time)."""
    return f"{PREFIX}:owner:{_owner_hash(owner)}"


def events_key(owner: str) -> str:
    """The owner's event log (a stream; see events.py)."""
    return f"{PREFIX}:events:{_owner_hash(owner)}"


def seq_key(owner: str) -> str:
    """The owner's event counter."""
    return f"{PREFIX}:seq:{_owner_hash(owner)}"


def inflight_key(owner: str) -> str:
    """The owner's operations not yet finished (a sorted set by expiry deadline): the cap."""
    return f"{PREFIX}:inflight:{_owner_hash(owner)}"


#: Operations whose completion webhook is due, scored by the next try's time (webhooks.py).
WEBHOOKS_DUE = f"{PREFIX}:webhooks"
#: Accepted operations no worker has claimed yet, scored by when they were accepted or last
#: re-published (sweep.py re-publishes the overdue ones).
PENDING = f"{PREFIX}:pending"


def _opened(sealed: str | None, secret: str) -> str | None:
    if not sealed:
        return None
    try:
        return unseal(sealed, secret).decode()
    except EnvelopeError:  # sealed with a rotated key: no webhook can be sent
        return None


@dataclass(frozen=True)
class Operation:
    """One operation as stored."""

    task_id: str
    owner: str
    method: str
    endpoint: str
    state: str
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    result: dict[str, Any] | None = None
    error: str | None = None
    expires_at: float | None = None
    cancel_requested: bool = False
    rerun_of: str | None = None
    #: The lane it was accepted on (lanes.py); None for records written before lanes.
    lane: str | None = None
    progress: Progress | None = None
    #: The completion webhook's URL (opened from its seal), its tries so far and last outcome.
    callback: str | None = None
    webhook_tries: int = 0
    webhook_outcome: str | None = None

    @property
    def terminal(self) -> bool:
        """True once the operation has ended (completed, failed or cancelled)."""
        return self.state in TERMINAL_STATES

    @classmethod
    def from_hash(cls, task_id: str, raw: dict[bytes, bytes], secret: str) -> Operation:
        """Parse the Redis hash of an operation, unsealing its result with `secret`."""
        data = {k.decode(): v.decode() for k, v in raw.items()}

        def when(name: str) -> float | None:
            return float(data[name]) if data.get(name) else None

        result, error = None, data.get("error") or None
        if data.get("result"):
            try:
                result = json.loads(unseal(data["result"], secret))
            except EnvelopeError:  # sealed with another key: the secret was rotated
                error = "the stored result cannot be opened (the secret key changed)"

        return cls(
            task_id=task_id, owner=data.get("owner", ""), method=data.get("method", ""),
            endpoint=data.get("endpoint", ""), state=data.get("state", "pending"),
            created_at=when("created_at") or 0.0, started_at=when("started_at"),
            finished_at=when("finished_at"), attempts=int(data.get("attempts") or 0),
            result=result, error=error, expires_at=when("expires_at"),
            cancel_requested=bool(data.get("cancel_requested")),
            rerun_of=data.get("rerun_of") or None, lane=data.get("lane") or None,
            progress=Progress.from_json(data["progress"]) if data.get("progress") else None,
            callback=_opened(data.get("callback"), secret),
            webhook_tries=int(data.get("webhook_tries") or 0),
            webhook_outcome=data.get("webhook_outcome") or None,
        )


@dataclass(frozen=True)
class Claim:
    """Outcome of `OperationStore.claim`: run it, or reuse what an earlier run left."""

    action: Literal["run", "resume", "done", "failed", "cancelled", "unknown"]
    owner: str = ""
    attempt: int = 0
    result: dict[str, Any] | None = None
    error: str | None = None
    #: The seq of its `running` event when the claim logged it (see OperationStore.claim).
    seq: int | None = None
    #: Whether the claim also sent that event live (`events.Append.tell`).
    told: bool = False
