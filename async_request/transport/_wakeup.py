"""A wake-up signal with a file descriptor: the fetcher thread wakes the thread that delivers.

A `threading.Event` would do for Celery's synloop, but Celery's event loop (asynloop, kombu's
`Hub`) only waits on file descriptors, and confluent-kafka exposes none for its queues. So
the fetcher writes one byte to a pipe when records arrive; the hub (or `wait()`, for
`drain_events`) sees the read end become readable. At most one byte is in flight: `notify()`
is cheap to call for every batch and from any thread.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading


class Wakeup:
    """A self-pipe: `notify()` from any thread, `wait()`/`fileno()` on the receiving side."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._pending = False
        self._lock = threading.Lock()
        self.closed = False

    def fileno(self) -> int:
        """The read end, for `Hub.add_reader`."""
        return self._read

    def notify(self) -> None:
        """Make the read end readable (no-op when already signalled or closed)."""
        with self._lock:
            if self._pending or self.closed:
                return
            self._pending = True
            with contextlib.suppress(BlockingIOError):  # pipe full: readable already
                os.write(self._write, b"\0")

    def clear(self) -> None:
        """Consume the signal (call before looking at what it announced)."""
        with self._lock:
            if not self._pending or self.closed:
                return
            self._pending = False
            with contextlib.suppress(BlockingIOError):
                while os.read(self._read, 512):
                    pass

    def wait(self, timeout: float | None) -> bool:
        """Block until notified or `timeout`; True when notified (the signal stays set)."""
        if self._pending:
            return True
        readable, _, _ = select.select([self._read], [], [], timeout)
        return bool(readable)

    def close(self) -> None:
        """Close both ends (idempotent)."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            os.close(self._read)
            os.close(self._write)
