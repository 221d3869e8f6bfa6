"""Per-partition offset bookkeeping: which position may be committed after which acks.

Pure logic, no Kafka calls: the consumer thread feeds it deliveries, acks and rebalances and
stores the positions it returns. The committed position of a partition only ever moves to the
lowest offset still in flight (or one past the highest delivered offset when nothing is in
flight), so a crash redelivers every message that was fetched but not acknowledged.

Why not "the last acked offset + 1" (kombu's confluentkafka transport commits everything ever
polled): an ack of a later message would commit past prefetched and still-running ones, and a
SIGKILL then loses them: with kombu's transport, kill -9 lost a running `acks_late` task and
a prefetched one (`tests/integration/transport/test_kill.py` runs those scenarios against
this transport).
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

#: (topic, partition)
PartitionKey = tuple[str, int]


@dataclass
class PartitionState:
    """Offsets of one assigned partition: in flight, highest delivered, last stored position."""

    generation: int
    inflight: set[int] = field(default_factory=set)
    heap: list[int] = field(default_factory=list)
    max_delivered: int = -1
    position: int = -1  # next offset to read as last handed out for commit (-1: none yet)

    def lowest_inflight(self) -> int | None:
        heap = self.heap
        while heap and heap[0] not in self.inflight:
            heapq.heappop(heap)  # lazily drop acked offsets
        return heap[0] if heap else None


@dataclass(frozen=True)
class Delivery:
    """What a delivery tag stands for."""

    key: PartitionKey
    offset: int
    generation: int


class OffsetTracker:
    """Maps delivery tags to partition offsets and computes commit positions.

    Only the thread that owns the Kafka consumer calls it (acks from other threads are queued),
    so it takes no locks.
    """

    def __init__(self) -> None:
        self._partitions: dict[PartitionKey, PartitionState] = {}
        self._tags: dict[int, Delivery] = {}
        self._tag_counter = itertools.count(1)
        self._generation = itertools.count(1)

    def assign(self, key: PartitionKey) -> None:
        """Start tracking a newly assigned partition (a fresh generation)."""
        self._partitions[key] = PartitionState(generation=next(self._generation))

    def revoke(self, key: PartitionKey) -> None:
        """Forget a partition: later acks of its deliveries are ignored (the next owner
        redelivers them)."""
        self._partitions.pop(key, None)

    def delivered(self, key: PartitionKey, offset: int) -> int:
        """Record that the record at `offset` was fetched; return its delivery tag."""
        state = self._partitions.get(key)
        if state is None:
            state = self._partitions[key] = PartitionState(generation=next(self._generation))
        if state.max_delivered < 0 and state.position < 0:
            state.position = offset  # the position the partition was at when fetched
        state.inflight.add(offset)
        heapq.heappush(state.heap, offset)
        if offset > state.max_delivered:
            state.max_delivered = offset
        tag = next(self._tag_counter)
        self._tags[tag] = Delivery(key, offset, state.generation)
        return tag

    def delivery(self, tag: int) -> Delivery | None:
        """The partition offset behind `tag`, or None if unknown or already settled."""
        return self._tags.get(tag)

    def ack(self, tag: int) -> tuple[PartitionKey, int] | None:
        """Settle `tag`; return (partition, new commit position) when the position advanced."""
        delivery = self._tags.pop(tag, None)
        if delivery is None:
            return None
        state = self._partitions.get(delivery.key)
        if state is None or state.generation != delivery.generation:
            return None  # partition revoked since: its new owner redelivers the message
        state.inflight.discard(delivery.offset)
        lowest = state.lowest_inflight()
        position = lowest if lowest is not None else state.max_delivered + 1
        if position > state.position:
            state.position = position
            return delivery.key, position
        return None

    def drop(self, tag: int) -> None:
        """Forget `tag` without settling it (a buffered record dropped on revoke)."""
        self._tags.pop(tag, None)

    def next_offset(self, key: PartitionKey) -> int | None:
        """The offset after the last one delivered from `key` (None before the first)."""
        state = self._partitions.get(key)
        if state is None or state.max_delivered < 0:
            return None
        return state.max_delivered + 1

    def inflight_count(self, key: PartitionKey) -> int:
        """Number of delivered, unsettled offsets of `key`."""
        state = self._partitions.get(key)
        return len(state.inflight) if state else 0

    def position(self, key: PartitionKey) -> int:
        """Last commit position handed out for `key` (-1 if none)."""
        state = self._partitions.get(key)
        return state.position if state else -1

    def __len__(self) -> int:
        return len(self._tags)
