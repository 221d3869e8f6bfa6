"""When the work consumer fetches: flow control and idle mode, as pure decisions.

Two reasons to pause the work consumer's partitions:

* **flow**: `max_buffered` records wait undelivered (kombu's prefetch window is full); resume
  at half of it, so the fetch restarts while the rest is still being delivered. While paused
  the broker gathers new records, so a worker that is behind fetches them in batches instead
  of one fetch per record (each fetch costs tansu CPU the publishing clients need).
* **idle**: no work record for `idle_after` seconds. On tansu a fetch that finds nothing is
  answered after about half of `fetch.wait.max.ms` (research §2.1), so a consumer tuned for a
  ~5 ms hop sends ~170 empty fetches a second: 7 % of a core for consumer + broker while
  nothing happens. Idle, the partitions are paused and the exchange reader, which fetches
  every `broadcast_fetch_wait_ms` anyway, watches them from the paused position; its first
  record there wakes the work consumer (resume + seek: librdkafka fetches a resumed
  partition at once only when it is also seeked, see `Fetcher._resume`).

The fetcher (`_fetcher.py`) feeds `decide()` what it observes and makes the Kafka calls.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Pacer:
    """Decides whether the work consumer is paused for flow control or idleness."""

    max_buffered: int
    idle_after: float  # seconds; 0 disables idle mode
    flow: bool = False
    idle: bool = False
    last_work: float = 0.0

    @property
    def paused(self) -> bool:
        """True while the work partitions should not be fetched by the work consumer."""
        return self.flow or self.idle

    def worked(self, now: float) -> None:
        """Work records arrived (or the assignment changed): stay active a while."""
        self.last_work = now

    def decide(self, backlog: int, now: float, has_partitions: bool, woken: bool) -> None:
        """Update `flow` and `idle` from the undelivered `backlog` and the time."""
        if self.flow:
            self.flow = backlog > self.max_buffered // 2
        else:
            self.flow = backlog >= self.max_buffered
        if woken:
            self.worked(now)
        if self.idle:
            self.idle = not woken and has_partitions
        else:
            self.idle = (self.idle_after > 0 and has_partitions and not self.flow
                         and now - self.last_work >= self.idle_after)
