"""`execution.execute` as a coroutine, for the asyncio pool (pool.py): claim → replay → store →
notify on the worker process's own event loop, with no thread per step.

The prefork and threads pools run `execute` in a thread that hands each step to the process
loop (`_loop.run`) and waits: a hop per Redis call, per notification and for the replay, and a
lease thread per run. Here every step is awaited on the loop that runs the route, the lease is
a task of that loop, and many replays of one process wait on I/O side by side. The rules are
`execution`'s (its docstring is the manual): the claim's actions, `may_run_again`,
`time_limit`, outcomes stored first and told after, progress before the outcome.

What differs: a route that blocks the loop (sync code in an async route) blocks every replay of
the process until it returns, and no limit can fire meanwhile (`execute` gives up on it from
its thread). Choose prefork for such routes, and for CPU-bound ones (README "Sizing workers").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from async_request import astore
from async_request.auth import Owner
from async_request.cancel_watch import get_watch
from async_request.envelope import RequestEnvelope
from async_request.exceptions import (
    EnvelopeError,
    ReplayCancelledError,
    ReplayInterruptedError,
)
from async_request.execution import (
    _started,
    check_resume,
    load_asgi_app,
    short_error,
    time_limit,
)
from async_request.lifespan import Lifespan
from async_request.notifications import anotify, logged
from async_request.progress import Progress, ProgressReporter
from async_request.records import Claim
from async_request.replay import Cancel, ReplayResult, replay
from async_request.results.status import progress_body
from async_request.settings import get_settings
from async_request.store import OperationStore, get_store
from async_request.types import ASGIApp

logger = logging.getLogger(__name__)

_starting: asyncio.Lock | None = None


async def replay_target(path: str) -> tuple[ASGIApp, dict[str, Any]]:
    """`execution.replay_target` on the loop: the lifespan is awaited, not run from a thread."""
    global _starting
    app = load_asgi_app(path)
    key = (os.getpid(), path)
    lifespan = _started.get(key)
    if lifespan is None:
        _starting = _starting or asyncio.Lock()
        async with _starting:
            lifespan = _started.get(key)
            if lifespan is None:
                lifespan = Lifespan(app)
                await lifespan.startup()
                _started[key] = lifespan
    return app, lifespan.state


class LoopWake(threading.Event):
    """A progress reporter's wake (`ProgressReporter.wake`) that also rouses a coroutine: the
    route reports from the loop or from a `sync_to_async` thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.aevent = asyncio.Event()

    def set(self) -> None:
        super().set()
        self.loop.call_soon_threadsafe(self.aevent.set)

    def clear(self) -> None:
        super().clear()
        self.aevent.clear()


@contextlib.asynccontextmanager
async def _lease(store: OperationStore, task_id: str, cancel: Cancel,
                 progress: ProgressReporter, wake: LoopWake,
                 write: Callable[[Progress, bool], Awaitable[None]]) -> AsyncIterator[None]:
    """`execution._lease` as a task of the loop: renew the claim every lease_sec / 3, flip
    `cancel` when the owner asked, write due progress; at the end what was not written yet."""
    period = store.lease_sec / 3

    async def beat() -> None:
        renew_at = time.monotonic() + period
        while True:
            now = time.monotonic()
            if now >= renew_at:
                renew_at = now + period
                if await astore.renew(store, task_id) and not cancel.is_set():
                    logger.info("task %s: its owner cancelled it; telling the replay", task_id)
                    cancel.request()
            due = progress.due(now)
            if due == 0:
                taken = progress.take(now)
                if taken is not None:
                    await write(taken, True)
                continue
            wait = renew_at - now if due is None else min(due, renew_at - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.aevent.wait(), max(wait, 0.0))
            wake.clear()

    task = asyncio.get_running_loop().create_task(beat(), name=f"lease-{task_id}")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        last = progress.close()
        if last is not None:  # the outcome follows at once: stored, not sent
            await write(last, False)


async def execute(envelope_data: dict[str, Any], *, task_id: str, worker: str) -> dict[str, Any]:
    """`execution.execute` as a coroutine: run one queued request exactly once; its summary.

    Raises (after recording the failure and telling the owner) when the operation failed.
    """
    wire_id = envelope_data.get("task_id") if isinstance(envelope_data, dict) else None
    if wire_id != task_id:
        raise EnvelopeError(f"envelope of task {wire_id} delivered as task {task_id}")
    store = get_store()
    named = str(envelope_data.get("owner", ""))
    # The claim's round trip to Redis and the envelope's unsealing (Fernet, JSON: ~0.3 ms of
    # CPU) overlap: the claim's request is on its way before the envelope is opened. What the
    # unsealing raised is raised only if the claim says to run, as before.
    claiming = asyncio.ensure_future(astore.claim(
        store, task_id, worker, logged(named, task_id, "running") if named else None))
    await asyncio.sleep(0)  # the claim task writes its request
    unsealed: RequestEnvelope | Exception
    try:
        unsealed = RequestEnvelope.from_dict(envelope_data, get_settings().secret_key)
    except Exception as exc:
        unsealed = exc
    claim = await claiming
    if claim.action == "unknown":
        raise EnvelopeError(f"task {task_id} is unknown to the store (withdrawn or expired)")
    owner = Owner.parse(claim.owner)
    if claim.action == "done":
        logger.info("task %s already ran; its stored outcome stands", task_id)
        await anotify(owner, task_id, "completed")
        return {"task_id": task_id, "state": "completed",
                "status": (claim.result or {}).get("status")}
    if claim.action == "failed":
        await anotify(owner, task_id, "failed", error=claim.error)
        raise ReplayInterruptedError(claim.error or "an earlier run of this task failed")
    if claim.action == "cancelled":
        logger.info("task %s was cancelled before it ran; not replayed", task_id)
        return {"task_id": task_id, "state": "cancelled", "status": None}
    await anotify(owner, task_id, "running", deadline_sec=0, timeout_sec=5, seq=claim.seq,
                  told=claim.told)
    try:
        if isinstance(unsealed, Exception):
            raise unsealed
        result = await _replay(unsealed, claim, store, worker)
    except ReplayCancelledError as exc:
        ended = await astore.cancelled(store, task_id, str(exc),
                                       logged(owner, task_id, "cancelled", str(exc)))
        await anotify(owner, task_id, "cancelled", error=str(exc), seq=ended.seq,
                      told=ended.told)
        return {"task_id": task_id, "state": "cancelled", "status": None}
    except Exception as exc:
        error = short_error(exc)
        ended = await astore.fail(store, task_id, error,
                                  logged(owner, task_id, "failed", error))
        await anotify(owner, task_id, "failed", error=error, seq=ended.seq, told=ended.told)
        raise
    ended = await astore.finish(store, task_id, result.to_dict(),
                                logged(owner, task_id, "completed"))
    await anotify(owner, task_id, "completed", seq=ended.seq, told=ended.told)
    return {"task_id": task_id, "state": "completed", "status": result.status}


async def _replay(envelope: RequestEnvelope, claim: Claim, store: OperationStore,
                  worker: str) -> ReplayResult:
    settings = get_settings()
    task_id = envelope.task_id
    check_resume(envelope, claim, settings)
    body = envelope.body if envelope.body is not None else await astore.load_body(store,
                                                                                  task_id)
    if body is None:
        raise EnvelopeError(f"the stored body of task {task_id} has expired")
    app, state = await replay_target(settings.asgi_app)
    loop = asyncio.get_running_loop()
    cancel = Cancel(loop, settings.cancel_grace_sec)
    wake = LoopWake(loop)
    progress = ProgressReporter(settings.progress_interval_sec, wake)
    scope = envelope.to_scope({"task_id": task_id, "attempt": claim.attempt, "cancel": cancel,
                               "progress": progress})
    scope["state"] = dict(state)
    owner = Owner.parse(claim.owner)

    async def write(report: Progress, tell: bool) -> None:
        if await astore.progress(store, task_id, worker, report) and tell:
            await anotify(owner, task_id, "running", progress=progress_body(report),
                          deadline_sec=0, timeout_sec=store.lease_sec / 3)

    timeout, limit = time_limit(envelope, settings)
    with get_watch(settings.redis_url).watching(task_id, cancel):
        async with _lease(store, task_id, cancel, progress, wake, write):
            return await replay(app, scope, body, task_id=task_id, endpoint=envelope.path,
                                timeout=timeout, cancel=cancel, limit=limit)
