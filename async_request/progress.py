"""Progress of a route that runs in a worker: `report_progress(request, current, total, message)`.

One helper for FastAPI routes (a `Request`), Django views (`request.scope`) and raw ASGI apps
(the scope); a no-op when the route runs in the client's request cycle, so routes never branch
on how they run. It validates its input in both cases, so a wrong call fails in development too.

Reporting is cheap: a call only keeps the latest value in memory (a lock, no I/O), and the
worker's lease thread writes it to the store and tells the owner's WebSocket at most once per
ASYNC_REQUEST_PROGRESS_INTERVAL_SEC; the last value reported is written within one interval
even when the route then goes quiet, and once more as the run ends, before its outcome. A
route may call it every millisecond (bench/progress.py measures what a call costs).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from async_request.types import INTERNAL_SCOPE_KEY

#: A progress message longer than this is refused (it travels in every frame).
MAX_MESSAGE_CHARS = 200


@dataclass(frozen=True)
class Progress:
    """One progress report: `current` of `total` (None: unknown), a message, when (epoch s)."""

    current: float
    total: float | None
    message: str | None
    updated_at: float

    @property
    def percent(self) -> float | None:
        """100 · current / total rounded to 0.1, or None when the total is unknown or 0."""
        if not self.total:
            return None
        return round(100 * self.current / self.total, 1)

    def to_json(self) -> str:
        """The stored form (the `progress` field of the operation's hash)."""
        return json.dumps({"current": self.current, "total": self.total,
                           "message": self.message, "updated_at": self.updated_at})

    @classmethod
    def from_json(cls, text: str) -> Progress:
        """Parse the stored form."""
        data = json.loads(text)
        return cls(data["current"], data.get("total"), data.get("message"),
                   float(data["updated_at"]))


def _number(name: str, value: Any) -> float:
    # bool is an int to Python, never a count to a caller.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"progress {name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"progress {name} must be a finite number >= 0, got {value!r}")
    return value


def validated(current: Any, total: Any = None, message: Any = None) -> tuple[
        float, float | None, str | None]:
    """(current, total, message) checked; ValueError naming the bad value."""
    current = _number("current", current)
    if total is not None:
        total = _number("total", total)
        if current > total:
            raise ValueError(f"progress current {current!r} exceeds total {total!r}")
    if message is not None:
        if not isinstance(message, str):
            raise ValueError(f"progress message must be a str, got {message!r}")
        if len(message) > MAX_MESSAGE_CHARS:
            raise ValueError(f"progress message has {len(message)} characters, more than "
                             f"{MAX_MESSAGE_CHARS}: {message[:40]!r}...")
    return current, total, message


class ProgressReporter:
    """The latest progress of one replay, in memory; the lease thread takes it to write it.

    `report` (any thread) stores the value and, when nothing was waiting to be written, sets
    `wake` so the writer learns there is something to write; `due` says when it may write
    (at most once per `interval`), `take` hands it the value, `close` ends reporting.
    """

    def __init__(self, interval: float, wake: threading.Event) -> None:
        self.interval = interval
        self.wake = wake
        self._lock = threading.Lock()
        # A plain tuple: building the frozen Progress costs more than the rest of a report.
        self._latest: tuple[float, float | None, str | None, float] | None = None
        self._dirty = False
        self._closed = False
        self._written_at = -math.inf  # monotonic time of the last take

    def report(self, current: float, total: float | None, message: str | None) -> None:
        """Keep this value as the latest (already validated); ignored once closed."""
        latest = (current, total, message, time.time())
        with self._lock:
            if self._closed:
                return
            self._latest = latest
            was_dirty, self._dirty = self._dirty, True
        if not was_dirty:
            self.wake.set()

    def due(self, now: float) -> float | None:
        """Seconds (monotonic `now`) until a write is due, 0 when it is; None: nothing new."""
        with self._lock:
            if not self._dirty or self._closed:
                return None
            return max(0.0, self._written_at + self.interval - now)

    def take(self, now: float) -> Progress | None:
        """The value to write now, or None when nothing new was reported since the last take."""
        with self._lock:
            if not self._dirty or self._closed:
                return None
            self._dirty, self._written_at = False, now
            return None if self._latest is None else Progress(*self._latest)

    def close(self) -> Progress | None:
        """Stop taking reports (the run ended); the value not written yet, if any."""
        with self._lock:
            self._closed = True
            pending, self._dirty = (self._latest if self._dirty else None), False
        return None if pending is None else Progress(*pending)


def reporter_of(request_or_scope: Any) -> ProgressReporter | None:
    """The reporter of a worker's replay (FastAPI `Request`, Django request or scope), else None."""
    scope = getattr(request_or_scope, "scope", request_or_scope)
    marker = scope.get(INTERNAL_SCOPE_KEY) if isinstance(scope, Mapping) else None
    reporter = marker.get("progress") if isinstance(marker, dict) else None
    return reporter if isinstance(reporter, ProgressReporter) else None


def report_progress(request_or_scope: Any, current: float, total: float | None = None,
                    message: str | None = None) -> None:
    """Report how far a route got: `current` of `total` (None: unknown), with a short message.

    Takes a FastAPI/Starlette `Request`, a Django request or an ASGI scope. Never blocks on I/O,
    so async routes call it as it is. ValueError when current or total is not a number >= 0,
    current exceeds total, or message is not a str of at most MAX_MESSAGE_CHARS. Outside a
    worker's replay it only validates.
    """
    current, total, message = validated(current, total, message)
    reporter = reporter_of(request_or_scope)
    if reporter is not None:
        reporter.report(current, total, message)
