"""`_loop.run`: a call given up on is cancelled, never left to finish later."""

from __future__ import annotations

import asyncio
import time

import pytest

from async_request._loop import run


def test_a_timed_out_call_is_cancelled() -> None:
    finished: list[str] = []

    async def late() -> None:
        await asyncio.sleep(0.3)
        finished.append("late")

    with pytest.raises(TimeoutError):
        run(late(), timeout=0.05)
    time.sleep(0.5)
    assert finished == []
    assert run(asyncio.sleep(0, result="ok"), timeout=5) == "ok"
