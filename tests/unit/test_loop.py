"""The process loop: `run` from another thread, and a timeout that does not leave work behind."""

from __future__ import annotations

import asyncio
import time

import pytest

from async_request._loop import process_loop, run


def test_run_returns_the_result_on_the_process_loop() -> None:
    async def where() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    assert run(where()) is process_loop()


def test_a_timeout_raises_and_cancels_the_coroutine() -> None:
    stopped: list[str] = []

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            stopped.append("cancelled")
            raise

    with pytest.raises(TimeoutError):
        run(slow(), timeout=0.1)
    deadline = time.monotonic() + 5
    while not stopped and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stopped == ["cancelled"]
