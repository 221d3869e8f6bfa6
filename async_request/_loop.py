"""One event loop per process, in a thread of its own, for the worker's async work.

`async_to_sync` would build a new event loop (in a new thread) for every replay and every
notification: a thread hop and a loop per task, new channel-layer and Redis connections each
time, and nothing an app's lifespan set up could outlive one request (an asyncpg pool or an
httpx client belongs to the loop that made it). One long-lived loop per process reuses them.
Created lazily and per PID, so a forked pool process gets its own.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_loop_pid = 0
_lock = threading.Lock()


def process_loop() -> asyncio.AbstractEventLoop:
    """This process's loop, started on first use in a daemon thread."""
    global _loop, _loop_pid
    with _lock:
        if _loop is None or _loop_pid != os.getpid():
            _loop = asyncio.new_event_loop()
            _loop_pid = os.getpid()
            threading.Thread(target=_loop.run_forever, name="async-request-loop",
                             daemon=True).start()
        return _loop


def run(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run `coro` on the process loop from any other thread and return its result.

    On timeout the coroutine is cancelled, not left running: a call given up on must not
    finish later (a progress frame arriving after the outcome's).
    """
    future = asyncio.run_coroutine_threadsafe(coro, process_loop())
    try:
        return future.result(timeout)
    except TimeoutError:
        future.cancel()
        raise
