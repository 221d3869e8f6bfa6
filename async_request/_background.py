"""The daemon thread of a periodic Redis job in a worker process (webhooks, the sweep).

Both jobs run beside the replays, every `interval` seconds, and must outlive a Redis that
goes away for a while: an unreachable Redis is logged at debug level and tried again on the
next turn, never the end of the thread. One class holds that loop so each job only says what
one turn does (`tick`).
"""

from __future__ import annotations

import logging
import threading

import redis

logger = logging.getLogger(__name__)


class Loop:
    """Call `tick()` every `interval` seconds in a daemon thread named `thread_name`."""

    thread_name = "background"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> object:
        """One turn of the job; subclasses say what it does."""
        raise NotImplementedError

    def start(self) -> None:
        """Run the loop in a daemon thread (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name=self.thread_name,
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Ask the loop to end after the turn it is in (the thread is a daemon: no join)."""
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except (redis.RedisError, OSError) as exc:
                logger.debug("%s: Redis unreachable (%r); trying again", self.thread_name, exc)
