"""The worker's writes to the operation store from a coroutine, for the asyncio pool (pool.py).

The same scripts, keys and answers as `store.OperationStore`'s sync worker methods (claim,
renew, progress, the outcome): only the I/O differs, an asyncio Redis client of the running
loop, so many replays of one process wait on Redis side by side without a thread each. The
store builds each call and reads each answer (`claim_call`, `claim_answer`, `end_call`,
`end_answer`); this module only sends them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import redis

from async_request import _store_scripts
from async_request._retry import aretry
from async_request.events import Append, Logged
from async_request.progress import Progress
from async_request.records import Claim, body_key, inflight_key, lease_key, op_key
from async_request.seal import unseal
from async_request.store import CLAIM_POLL_SEC, END_DEADLINE_SEC, UNREACHABLE, OperationStore

logger = logging.getLogger(__name__)

#: Registered scripts by (client id, name): one AsyncScript per loop's client.
_scripts: dict[tuple[int, str], Any] = {}


def _script(store: OperationStore, name: str) -> Any:
    client = store.aclient()
    key = (id(client), name)
    script = _scripts.get(key)
    if script is None:
        script = _scripts[key] = client.register_script(getattr(_store_scripts, name))
    return script


async def _retry(store: OperationStore, call: Any, what: str,
                 deadline_sec: float = 120) -> Any:
    try:
        return await aretry(call, what=f"{what} (Redis)", errors=UNREACHABLE,
                            deadline_sec=deadline_sec)
    except UNREACHABLE as exc:
        raise store._unavailable(what, exc) from exc


async def claim(store: OperationStore, task_id: str, worker: str,
                event: Append | None = None) -> Claim:
    """`OperationStore.claim` from a coroutine (a busy operation is polled without blocking)."""
    keys, args = store.claim_call(task_id, worker, event)
    while True:
        args[2] = repr(time.time())
        answer = await _retry(store, lambda: _script(store, "CLAIM")(keys=keys, args=args),
                              "claim task")
        found = store.claim_answer(answer)
        if found is not None:
            return found
        await asyncio.sleep(CLAIM_POLL_SEC)


async def load_body(store: OperationStore, task_id: str) -> bytes | None:
    """`OperationStore.load_body` from a coroutine."""
    sealed = await _retry(store, lambda: store.aclient().get(body_key(task_id)), "load body")
    return None if sealed is None else unseal(sealed.decode("ascii"), store.secret)


async def renew(store: OperationStore, task_id: str) -> bool:
    """`OperationStore.renew` from a coroutine: True when the owner asked to cancel."""
    try:
        asked = await _script(store, "RENEW")(keys=[op_key(task_id), lease_key(task_id)],
                                              args=[int(store.lease_sec * 1000)])
    except (redis.RedisError, OSError):
        logger.warning("could not renew the lease of task %s (Redis down?)", task_id)
        return False
    return bool(asked)


async def progress(store: OperationStore, task_id: str, worker: str, report: Progress) -> bool:
    """`OperationStore.progress` from a coroutine."""
    try:
        written = await _script(store, "PROGRESS")(keys=[op_key(task_id)],
                                                   args=[worker, report.to_json()])
    except (redis.RedisError, OSError):
        logger.warning("could not record the progress of task %s (Redis down?)", task_id)
        return False
    return bool(written)


async def finish(store: OperationStore, task_id: str, result: dict[str, Any],
                 event: Append | None = None) -> Logged:
    """`OperationStore.finish` from a coroutine."""
    return await _end(store, task_id, store.completed_fields(result, store.secret), event)


async def fail(store: OperationStore, task_id: str, error: str,
               event: Append | None = None) -> Logged:
    """`OperationStore.fail` from a coroutine."""
    return await _end(store, task_id, {"state": "failed", "error": error[:300]}, event)


async def cancelled(store: OperationStore, task_id: str, reason: str,
                    event: Append | None = None) -> Logged:
    """`OperationStore.cancelled` from a coroutine."""
    return await _end(store, task_id, {"state": "cancelled", "error": reason[:300]}, event)


async def _end(store: OperationStore, task_id: str, fields: dict[str, str],
               event: Append | None) -> Logged:
    keys, args = store.end_call(task_id, fields, event)

    async def write() -> Logged:
        logged, owner = store.end_answer(await _script(store, "TERMINAL")(keys=keys,
                                                                           args=args))
        if owner and logged.seq is None:
            await store.aclient().zrem(inflight_key(owner), task_id)
        return logged

    ended: Logged = await _retry(store, write, "store the outcome",
                                 deadline_sec=END_DEADLINE_SEC)
    return ended
