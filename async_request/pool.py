"""A Celery pool that runs replays as coroutines on the worker process's one event loop.

`async-request worker --pool asyncio -c 50`, or `celery -A proj worker -P custom` with
`CELERY_CUSTOM_WORKER_POOL=async_request.pool:AsyncioPool` (Celery's `-P` takes only its own
names, and `custom` is its hook for a pool of one's own).

Why: a prefork worker hands each task to a child through pipes (pickled both ways), and the
child's thread hands each step of the run (the claim, the replay, the outcome, every
notification) to the loop and waits; the threads pool spares the first hand-off, not the
others (docs/benchmarks.md, "Worker cost"). Here the main process's consumer receives the task
and `on_apply` schedules `execution_async.execute` on the process loop (`_loop.py`) itself:
no child, no thread per task or step, -c replays waiting on I/O side by side, like the original
system's single asyncio consumer. Choose it for I/O-bound async routes; choose prefork for
CPU-bound routes and for ones that block the loop (sync code in an async route), which here
would stall every replay of the process.

Kept as with the other pools: Celery's Request gets `accept_callback` when a slot is taken
(task-started) and `callback` with the tracer's (failed, result, runtime) when the outcome is
stored, so Flower sees received/started/succeeded/failed and the message is acknowledged only
then (acks_late); a worker killed mid-run never acknowledged it, so it is delivered again
(reject_on_worker_lost) and the store's claim keeps it from running twice. Route limits,
cancels (cancel_watch.py) and the lease are execution_async's. Any other task runs in a thread
of a small executor, as the threads pool would run it. Not supported: Celery's hard and soft
time limits (the route limits apply) and `revoke --terminate` of a running replay (one
process runs them all; cancel the operation instead, which ends it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from billiard.einfo import ExceptionInfo
from celery.concurrency.base import BasePool, apply_target
from celery.utils.saferepr import saferepr
from kombu.serialization import loads, prepare_accept_content

from async_request._loop import process_loop
from async_request.celery_config import TASK_NAME
from async_request.execution import start_replay_target

logger = logging.getLogger(__name__)

#: The pool's dotted path, for CELERY_CUSTOM_WORKER_POOL.
POOL_PATH = "async_request.pool:AsyncioPool"


class ApplyResult:
    """What `on_apply` returns (Celery keeps a weak reference to it)."""

    def __init__(self, future: concurrent.futures.Future[Any]) -> None:
        self.future = future

    def wait(self, timeout: float | None = None) -> None:
        concurrent.futures.wait([self.future], timeout)


class AsyncioPool(BasePool):  # type: ignore[misc]
    """Replays as coroutines on this process's loop, at most `limit` (-c) at a time."""

    body_can_be_buffer = False
    signal_safe = False
    task_join_will_block = False

    def on_start(self) -> None:
        self.loop = process_loop()
        self._slots: asyncio.Semaphore | None = None
        self._stopping = False
        self._futures: set[concurrent.futures.Future[Any]] = set()
        self._running = 0
        self._others = concurrent.futures.ThreadPoolExecutor(
            max_workers=min(self.limit or 1, 4), thread_name_prefix="async-request-other")
        self._accept = prepare_accept_content(  # type: ignore[no-untyped-call]
            self.app.conf.accept_content)
        # No worker_process_init without children: the replay target starts here, once.
        start_replay_target()

    def on_apply(self, target: Callable[..., Any], args: tuple[Any, ...] | None = None,
                 kwargs: dict[str, Any] | None = None, callback: Callable[..., Any] | None = None,
                 accept_callback: Callable[..., Any] | None = None, **_: Any) -> ApplyResult:
        if args and args[0] == TASK_NAME and callback is not None:
            future = asyncio.run_coroutine_threadsafe(
                self._replay(args, callback, accept_callback), self.loop)
        else:
            future = self._others.submit(apply_target, target, args, kwargs, callback,
                                         accept_callback)
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)
        return ApplyResult(future)

    async def _replay(self, args: tuple[Any, ...], callback: Callable[..., Any],
                      accept_callback: Callable[..., Any] | None) -> None:
        from async_request.execution_async import execute

        _, task_id, request, body, content_type, content_encoding = args[:6]
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limit or 1)
        async with self._slots:
            if self._stopping:  # never started, never acknowledged: delivered again
                return
            self._running += 1
            try:
                if accept_callback is not None:
                    accept_callback(os.getpid(), time.monotonic())
                started = time.monotonic()
                try:
                    task_args, task_kwargs, _embed = (
                        loads(body, content_type, content_encoding,  # type: ignore[no-untyped-call]
                              accept=self._accept) if content_type else body)
                    summary = await execute(*task_args, task_id=str(task_id),
                                            worker=str(request.get("hostname", "")),
                                            **task_kwargs)
                except Exception as exc:
                    logger.error("Task %s[%s] raised: %s", TASK_NAME, task_id,
                                 f"{type(exc).__name__}: {exc}")
                    einfo = ExceptionInfo()
                    einfo.exception = exc  # unwrapped, as Celery's tracer hands it on
                    callback((1, einfo, time.monotonic() - started))
                else:
                    callback((0, saferepr(summary), time.monotonic() - started))
            finally:
                self._running -= 1

    def on_stop(self) -> None:
        """Warm shutdown: replays waiting for a slot are dropped (their messages stay
        unacknowledged, delivered again), running ones finish."""
        self._stopping = True
        concurrent.futures.wait(list(self._futures))
        self._others.shutdown(cancel_futures=True)

    def on_terminate(self) -> None:
        self._stopping = True
        self._others.shutdown(wait=False, cancel_futures=True)

    def terminate_job(self, pid: int, signal: Any = None) -> None:
        logger.warning("the asyncio pool cannot terminate one replay (pid %s runs them all): "
                       "cancel the operation instead", pid)

    def _get_info(self) -> dict[str, Any]:
        info: dict[str, Any] = super()._get_info()
        info.update({"max-concurrency": self.limit, "running": self._running})
        return info
