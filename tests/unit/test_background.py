"""The periodic job thread: a Redis outage is one lost turn, never the end of the loop."""

from __future__ import annotations

import threading

import redis

from async_request._background import Loop


class Flaky(Loop):
    thread_name = "flaky"

    def __init__(self) -> None:
        super().__init__(interval=0.01)
        self.turns = 0
        self.done = threading.Event()

    def tick(self) -> None:
        self.turns += 1
        if self.turns == 1:
            raise redis.ConnectionError("down")
        if self.turns == 2:
            raise OSError("reset")
        self.done.set()


def test_the_loop_outlives_redis_errors_and_stops_when_asked() -> None:
    loop = Flaky()
    loop.start()
    loop.start()  # idempotent: still one thread
    assert loop.done.wait(5)
    assert [t.name for t in threading.enumerate()].count("flaky") == 1
    loop.stop()
    assert loop._thread is not None
    loop._thread.join(5)
    assert not loop._thread.is_alive()
