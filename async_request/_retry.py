"""Retry a call with capped exponential backoff under a deadline: one policy for the package.

Used where an outage must delay work, never drop it: storing an outcome, reading a queued body,
notifying an owner. 0.2 s, doubling, at most 5 s between tries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")

FIRST_DELAY_SEC = 0.2
MAX_DELAY_SEC = 5.0


def retry(call: Callable[[], T], *, what: str, errors: tuple[type[BaseException], ...],
          deadline_sec: float) -> T:
    """Return `call()`, retrying while it raises one of `errors`; re-raise after the deadline."""
    deadline = time.monotonic() + deadline_sec
    delay = FIRST_DELAY_SEC
    while True:
        try:
            return call()
        except errors as exc:
            if time.monotonic() >= deadline:
                raise
            logger.warning("%s failed (%r); retrying in %.1fs", what, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, MAX_DELAY_SEC)


async def aretry(call: Callable[[], Awaitable[T]], *, what: str,
                 errors: tuple[type[BaseException], ...], deadline_sec: float) -> T:
    """`retry` for a coroutine function: awaits `call()`, sleeping without blocking the loop."""
    deadline = time.monotonic() + deadline_sec
    delay = FIRST_DELAY_SEC
    while True:
        try:
            return await call()
        except errors as exc:
            if time.monotonic() >= deadline:
                raise
            logger.warning("%s failed (%r); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY_SEC)
