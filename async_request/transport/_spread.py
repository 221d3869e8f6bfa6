"""Which partition a published record goes to: round-robin over the topic's partitions.

Records carry no key, so librdkafka's partitioner would put each one on a random partition
(`sticky.partitioning.linger.ms` is 2 × `linger.ms`, 0 here). With one worker per partition a
random spread is uneven (400 records on 4 partitions: each share 100 ± 8.7, the largest of the
four 109 on average), and the worker with the largest share sets when a burst is done: about
8 % of the throughput of 4 workers lost on average, more in an unlucky burst (bench/scaleout.py
asks 3.4× of one worker). Round-robin gives every partition, so every worker that owns one,
the same share of what this process publishes (measured: 25/25/25/25 %). Each process starts
at a random partition, so several web processes do not all begin on partition 0.
"""

from __future__ import annotations

import itertools
import random
import threading


class Spread:
    """Round-robin partition choice per topic (thread-safe)."""

    def __init__(self) -> None:
        self._counters: dict[str, itertools.count[int]] = {}
        self._lock = threading.Lock()

    def next(self, topic: str, partitions: int) -> int | None:
        """The partition for the next record to `topic` of `partitions` (None for one:
        librdkafka then picks the only one)."""
        if partitions <= 1:
            return None
        counter = self._counters.get(topic)
        if counter is None:
            with self._lock:
                counter = self._counters.setdefault(
                    topic, itertools.count(random.randrange(1 << 16)))  # noqa: S311
        # next() of an itertools.count is atomic under the GIL; the modulo follows the
        # partition count as it grows (TopicAdmin re-reads it)
        return next(counter) % partitions
