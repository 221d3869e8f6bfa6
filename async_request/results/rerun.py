"""Re-run: queue the captured request of a failed or cancelled operation again, under a new id.

`POST .../{id}/rerun/` by the owner answers like the original request did: 202 with
`{"data": null, "meta": {"async_request_id": <new id>}}`, `Location`, `Retry-After` (the
middleware's `accepted`), after the broker acknowledged the message. The new operation's
record says `rerun_of: <old id>`; the old one stays as it was.

| old state | HTTP |
|---|---|
| failed, cancelled | 202, a new operation (it counts toward ASYNC_REQUEST_MAX_INFLIGHT_PER_OWNER) |
| pending, running, completed | 409 problem+json naming the state |
| unknown, malformed id, another owner's | 404 (as the status endpoint) |
| expired, or its captured request is no longer kept | 410 |

Each call queues one more run. The replay is the same request: the captured headers, query and
body, as the same owner, on the same lane (`lanes.resolve`). A credential it carried (an
`Authorization` token) is replayed as captured and may have expired since; as for any replay,
the app decides whether it is still good (`dependencies.is_internal`), and a 401 it answers is
the re-run's stored result.

The adapters publish with `default_dispatcher()`, the middleware's default (`Dispatcher()` on
`celery_config.get_celery_app()`); a middleware given its own `dispatcher=` does not hand it
to the results routes, so call `rerun(..., dispatcher=...)` from your own route for that.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from functools import lru_cache
from typing import Any

from async_request.auth import Owner
from async_request.dispatch import Dispatcher
from async_request.envelope import RequestEnvelope
from async_request.exceptions import EnvelopeError, OperationGoneError, OperationStateError
from async_request.lanes import resolve
from async_request.middleware import accepted, queue
from async_request.results.status import owned
from async_request.settings import Settings, get_settings
from async_request.store import OperationStore, get_store

#: States whose captured request may be queued again.
RERUNNABLE = frozenset({"failed", "cancelled"})


@lru_cache(maxsize=1)
def default_dispatcher() -> Dispatcher:
    """The process's dispatcher for re-runs (the Celery app is looked up on first publish)."""
    return Dispatcher()


def _captured(task_id: str, owner: Owner, store: OperationStore,
              secret: str) -> tuple[RequestEnvelope, bytes | None, str | None]:
    """The owner's re-runnable operation's request, its aside body and its lane; 404/409/410
    otherwise."""
    operation = owned(task_id, owner, store)
    if operation.state not in RERUNNABLE:
        raise OperationStateError(
            f"the operation is {operation.state}: only a failed or cancelled one can be re-run")
    wire = store.load_envelope(operation.task_id)
    if wire is None:
        raise OperationGoneError("the captured request of this operation is no longer kept")
    try:
        envelope = RequestEnvelope.from_dict(wire, secret)
    except EnvelopeError as exc:  # sealed with another key: the secret was rotated since
        raise OperationGoneError(
            "the captured request of this operation cannot be opened (the secret key changed)"
        ) from exc
    body = None
    if envelope.body_ref is not None:
        body = store.load_body(operation.task_id)
        if body is None:
            raise OperationGoneError("the request body of this operation is no longer kept")
    return envelope, body, operation.lane


async def rerun(task_id: str, owner: Owner, *, store: OperationStore | None = None,
                dispatcher: Dispatcher | None = None, settings: Settings | None = None
                ) -> tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]:
    """Queue the captured request of the caller's failed or cancelled operation again.

    Returns (202, body, headers) once the broker has it. Raises UnknownOperationError (404),
    OperationGoneError (410), OperationStateError (409), TooManyInFlightError (429),
    StoreUnavailableError or EnqueueError (503).
    """
    settings = settings or get_settings()
    store = store or get_store()
    old, body, lane = await asyncio.to_thread(_captured, task_id, owner, store,
                                              settings.secret_key)
    new_id = str(uuid.uuid4())
    envelope = dataclasses.replace(old, task_id=new_id, accepted_at=time.time(),
                                   body_ref=new_id if old.body_ref is not None else None)
    await queue(envelope, store=store, dispatcher=dispatcher or default_dispatcher(),
                settings=settings, body_aside=body, rerun_of=old.task_id,
                lane=resolve(settings, lane, old.method, old.path))
    answer, headers = accepted(new_id, settings)
    return 202, answer, headers
