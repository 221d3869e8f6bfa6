"""The fetcher's wake-up pipe: one byte at most, readable until cleared, any thread."""

from __future__ import annotations

import select
import threading
import time

from async_request.transport._wakeup import Wakeup


def readable(wakeup: Wakeup) -> bool:
    return bool(select.select([wakeup.fileno()], [], [], 0)[0])


def test_notify_makes_the_fd_readable_until_cleared() -> None:
    wakeup = Wakeup()
    assert not readable(wakeup)
    assert wakeup.wait(0) is False
    wakeup.notify()
    wakeup.notify()  # coalesced
    assert readable(wakeup)
    assert wakeup.wait(0) is True
    wakeup.clear()
    assert not readable(wakeup)
    wakeup.close()


def test_wait_returns_when_another_thread_notifies() -> None:
    wakeup = Wakeup()
    threading.Timer(0.05, wakeup.notify).start()
    started = time.monotonic()
    assert wakeup.wait(5.0) is True
    assert time.monotonic() - started < 4.0  # woken, not timed out
    wakeup.close()


def test_closed_wakeup_ignores_notify_and_clear() -> None:
    wakeup = Wakeup()
    wakeup.close()
    wakeup.close()
    wakeup.notify()
    wakeup.clear()
    assert wakeup.closed
