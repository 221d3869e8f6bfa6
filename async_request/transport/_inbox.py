"""Records fetched from Kafka and not yet handed to kombu, per queue, shared by two threads.

The fetcher thread (`_fetcher.py`) puts records in; the thread that delivers (Celery's event
loop, or whoever calls `drain_events`) takes them out. One lock guards every deque: the
fetcher also removes records (a revoked partition's, a cancelled queue's), and a deque being
rebuilt must not be popped at the same time. Uncontended, the lock costs well under a
microsecond per record.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ._offsets import PartitionKey
from ._wakeup import Wakeup

#: Records kept for a bound exchange queue nobody consumes yet (oldest dropped beyond this).
EXCHANGE_BACKLOG = 10000


@dataclass(slots=True)
class Record:
    """A fetched message waiting to be handed to kombu."""

    tag: int | str  # int: a work record (its offset is committed); str: an exchange copy
    payload: dict[str, Any]
    key: PartitionKey | None  # (topic, partition) of a work record


class Inbox:
    """Per-queue deques of `Record`s; `put` wakes the delivering side."""

    def __init__(self, wakeup: Wakeup) -> None:
        self.wakeup = wakeup
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Record]] = {}
        self._work: set[str] = set()

    def open(self, queue: str, work: bool) -> None:
        """Accept records for `queue` (work queues are unbounded: the fetcher pauses instead)."""
        with self._lock:
            if queue not in self._queues:
                self._queues[queue] = deque() if work else deque(maxlen=EXCHANGE_BACKLOG)
            if work:
                self._work.add(queue)

    def close(self, queue: str) -> list[Record]:
        """Stop accepting records for `queue`; return the ones it held."""
        with self._lock:
            self._work.discard(queue)
            return list(self._queues.pop(queue, ()))

    def put(self, queue: str, records: Iterable[Record]) -> bool:
        """Append records to `queue` and wake the consumer side; False if `queue` is closed."""
        with self._lock:
            target = self._queues.get(queue)
            if target is None:
                return False
            target.extend(records)
        self.wakeup.notify()
        return True

    def pop(self, queue: str) -> Record | None:
        """The oldest record of `queue`, or None."""
        with self._lock:
            target = self._queues.get(queue)
            return target.popleft() if target else None

    def ready(self) -> list[str]:
        """Queues that hold records."""
        with self._lock:
            return [queue for queue, records in self._queues.items() if records]

    def size(self, queue: str) -> int:
        """Records waiting in `queue`."""
        with self._lock:
            return len(self._queues.get(queue, ()))

    def work_backlog(self) -> int:
        """Work records waiting in all work queues (what flow control bounds)."""
        with self._lock:
            return sum(len(self._queues[q]) for q in self._work if q in self._queues)

    def remove(self, predicate: Callable[[Record], bool],
               queue: str | None = None) -> list[Record]:
        """Take every record matching `predicate` out (of `queue`, or of all); return them."""
        removed: list[Record] = []
        with self._lock:
            for name, records in self._queues.items():
                if queue is not None and name != queue:
                    continue
                if not any(predicate(r) for r in records):
                    continue
                kept = [r for r in records if not predicate(r)]
                removed.extend(r for r in records if predicate(r))
                records.clear()
                records.extend(kept)
        return removed
