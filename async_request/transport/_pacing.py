"""When the work consumer fetches: flow control and idle mode.

Two reasons to pause the work consumer's partitions:

* **flow**: `max_buffered` records wait undelivered (kombu's prefetch window is full); resume
  at half of it, so the fetch restarts while the rest is still being delivered. While paused
  the broker gathers new records, so a worker that is behind fetches them in batches instead
  of one fetch per record (each fetch costs tansu CPU the publishing clients need).
* **idle**: no work record for `idle_after` seconds. On tansu a fetch that finds nothing is
  answered after about half of `fetch.wait.max.ms`, so a consumer tuned for a ~5 ms hop
  sends ~170 empty fetches a second: 7 % of a core for consumer + broker while nothing
  happens. Idle, the partitions are paused and the exchange reader, which fetches every
  `broadcast_fetch_wait_ms` anyway, watches them from the paused position; its first record
  there wakes the work consumer (resume + seek: librdkafka fetches a resumed partition at
  once only when it is also seeked, see `Pauser._resume`). On Apache Kafka, where the work
  consumer waits `HELD_FETCH_WAIT_MS` per fetch (`GroupMember.holds_fetches`), idle mode
  still saves that consumer's 10 fetches a second (measured: idle worker + broker 1.25x
  without it).

`Pacer` decides, as pure logic; `Pauser` carries its decisions out on the work consumer
(pause, resume, the positions to resume from). The fetcher (`_fetcher.py`) calls `Pauser.pace`
between polls and hands it callables for what the fetcher owns (delivered offsets, the
exchange reader's watch).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from time import monotonic

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from ._offsets import PartitionKey

logger = logging.getLogger(__name__)


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


class Pauser:
    """Pauses and resumes the work consumer's partitions as its `Pacer` decides."""

    def __init__(self, pacer: Pacer, *, connect_timeout: float, auto_offset_reset: str,
                 next_offset: Callable[[PartitionKey], int | None],
                 watch: Callable[[dict[PartitionKey, int]], None],
                 unwatch: Callable[[], None]) -> None:
        self.pacer = pacer
        #: Set when the work consumer must fetch at once: the reader saw work on a watched
        #: partition, or the assignment changed.
        self.woken = False
        self._connect_timeout = connect_timeout
        self._auto_offset_reset = auto_offset_reset
        self._next_offset = next_offset  # after the last delivered offset, None before it
        self._watch = watch  # the exchange reader watches these partitions while idle
        self._unwatch = unwatch  # ... and stops watching all of them
        self._paused: set[PartitionKey] = set()
        self._resume_at: dict[PartitionKey, int] = {}  # paused partitions' next offsets

    def pace(self, work: Consumer, backlog: int, assigned: set[PartitionKey]) -> None:
        """Let the pacer decide from the undelivered `backlog`; pause or resume to match."""
        pacer = self.pacer
        was_idle = pacer.idle
        pacer.decide(backlog, monotonic(), bool(assigned), self.woken)
        self.woken = False
        if pacer.idle and not was_idle and not self._start_idle(work, assigned):
            pacer.idle = False  # a position is unknown: stay active, try again later
            pacer.worked(monotonic())
        if was_idle and not pacer.idle:
            self._unwatch()
        if pacer.paused:
            self._pause(work, assigned - self._paused)
        elif self._paused:
            self._resume(work)

    def forget(self, keys: set[PartitionKey]) -> None:
        """The partitions were revoked or lost: nothing to resume there."""
        self._paused -= keys
        for key in keys:
            self._resume_at.pop(key, None)

    def _pause(self, work: Consumer, keys: set[PartitionKey]) -> None:
        if not keys:
            return
        self._resume_at.update(self._positions(work, keys))
        work.pause([TopicPartition(t, p) for t, p in keys])
        self._paused |= keys

    def _resume(self, work: Consumer) -> None:
        """Resume every paused partition and make its broker thread fetch it now.

        librdkafka 2.16 starts fetching a resumed partition only when its broker thread next
        wakes up, which it does once a second (`rd_kafka_max_block_ms`): measured p50 650 ms
        after `resume()`. A seek() right after the resume wakes it (first record < 1 ms),
        except a seek to offset 0 or to a logical offset; for those, any request to the
        broker does (a watermark query).
        """
        paused, self._paused = self._paused, set()
        work.resume([TopicPartition(t, p) for t, p in paused])
        for key in sorted(paused):
            offset = self._resume_at.get(key)
            try:
                if offset is not None:
                    work.seek(TopicPartition(key[0], key[1], offset))
                if offset is None or offset <= 0:
                    work.get_watermark_offsets(TopicPartition(*key), cached=False,
                                               timeout=self._connect_timeout)
            except KafkaException as exc:  # not fetching yet: it starts where it is
                logger.debug("kafka: waking %s at %s: %s", key, offset, exc)
        self._resume_at.clear()

    def _start_idle(self, work: Consumer, assigned: set[PartitionKey]) -> bool:
        """Pause for idleness: the reader watches every partition from its next offset."""
        positions = self._positions(work, assigned)
        if set(positions) != assigned:
            return False
        self._resume_at.update(positions)
        self._watch(positions)
        return True

    def _positions(self, work: Consumer, keys: Iterable[PartitionKey]) -> dict[PartitionKey, int]:
        """Next offset of each partition: delivered + 1, else librdkafka's position, else
        the committed offset, else the start `auto_offset_reset` picks (unknown on errors)."""
        found: dict[PartitionKey, int] = {}
        for key in keys:
            offset = self._resume_at.get(key, self._next_offset(key))
            if offset is not None:
                found[key] = offset
        missing = [TopicPartition(t, p) for t, p in keys if (t, p) not in found]
        if not missing:
            return found
        timeout = self._connect_timeout
        try:
            for lookup in (work.position, lambda tps: work.committed(tps, timeout=timeout)):
                for tp in lookup(missing):
                    if tp.offset >= 0:
                        found[(tp.topic, tp.partition)] = tp.offset
                missing = [tp for tp in missing if (tp.topic, tp.partition) not in found]
                if not missing:
                    return found
            earliest = self._auto_offset_reset in ("earliest", "smallest", "beginning")
            for tp in missing:
                if earliest:
                    found[(tp.topic, tp.partition)] = OFFSET_BEGINNING
                else:
                    _, high = work.get_watermark_offsets(tp, timeout=timeout, cached=False)
                    found[(tp.topic, tp.partition)] = high
        except KafkaException as exc:
            logger.debug("kafka: positions unknown: %s", exc)
        return found
