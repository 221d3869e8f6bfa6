# mypy: disable-error-code="no-untyped-call"
"""The exchange reader: an assign-only consumer (no group) of the fetcher thread.

It reads exchange topics (fanout, events, replies; see `_exchange.py`) from explicit offsets
and never joins a consumer group: tansu holds every JoinGroup for half the session timeout,
1 s at least (its coordinator's `join_group_pause`), and these readers are exactly the
short-lived ones (an `inspect` client) that would pay it.

It also watches the work partitions while the work consumer is paused for idleness
(`_pacing.py`): it already fetches every `broadcast_fetch_wait_ms`, so watching costs no extra
fetch loop. A record on a watched partition is not delivered; it only tells the fetcher to
wake the work consumer, which then fetches that record itself (its offsets are committed
through the group).

Only the fetcher thread calls it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition
from kombu.utils.json import loads

from ._exchange import ROUTING_KEY_HEADER, Binding, ExchangeTopic
from ._inbox import Inbox, Record
from ._offsets import PartitionKey
from ._options import KafkaOptions

logger = logging.getLogger(__name__)

#: Records taken from librdkafka per poll at most.
BATCH = 500


class ExchangeReader:
    """Assign-only consumer of exchange topics and of watched (idle) work partitions."""

    def __init__(self, options: KafkaOptions, bootstrap: str, inbox: Inbox) -> None:
        self.options = options
        self.bootstrap = bootstrap
        self.inbox = inbox
        self._consumer: Consumer | None = None
        self._exchange_parts: set[PartitionKey] = set()
        self._views: dict[str, ExchangeTopic] = {}  # exchange topic -> bindings
        self.watched: set[PartitionKey] = set()
        self._copies = 0

    @property
    def active(self) -> bool:
        """True when anything is assigned (the fetcher polls it then)."""
        return bool(self._exchange_parts or self.watched)

    def _reader(self) -> Consumer:
        if self._consumer is None:
            group = f"{self.options.group_id}.reader.{uuid.uuid4().hex}"
            self._consumer = Consumer({**self.options.broadcast_config(self.bootstrap, group),
                                       "error_cb": _log_error})
        return self._consumer

    # -- exchange topics --------------------------------------------------------------------
    def bind(self, binding: Binding, topic: str, start: dict[int, int]) -> None:
        """Feed `binding.queue` from `topic`, from offsets `start` (the high watermarks)."""
        view = self._views.setdefault(topic, ExchangeTopic(topic))
        view.bind(binding, start)
        self.inbox.open(binding.queue, work=False)
        new = [TopicPartition(topic, p, off) for p, off in start.items()
               if (topic, p) not in self._exchange_parts]
        if new:
            self._reader().incremental_assign(new)
            self._exchange_parts.update((topic, tp.partition) for tp in new)

    def unbind(self, queue: str) -> None:
        """Drop `queue`'s exchange bindings; unassign topics no local queue needs any more."""
        for topic, view in list(self._views.items()):
            if queue not in view.starts:
                continue
            view.unbind_queue(queue)
            if view.bindings:
                continue
            del self._views[topic]
            parts = [TopicPartition(t, p) for (t, p) in self._exchange_parts if t == topic]
            self._exchange_parts.difference_update((tp.topic, tp.partition) for tp in parts)
            if parts and self._consumer is not None:
                self._consumer.incremental_unassign(parts)
        self.inbox.close(queue)

    # -- watched work partitions ------------------------------------------------------------
    def watch(self, positions: dict[PartitionKey, int]) -> None:
        """Watch work partitions from these offsets (the paused work consumer's positions)."""
        new = {key: off for key, off in positions.items() if key not in self.watched}
        if new:
            self._reader().incremental_assign(
                [TopicPartition(t, p, off) for (t, p), off in new.items()])
            self.watched.update(new)

    def unwatch(self, keys: Iterable[PartitionKey]) -> None:
        """Stop watching these work partitions."""
        gone = self.watched.intersection(keys)
        if gone and self._consumer is not None:
            self._consumer.incremental_unassign([TopicPartition(t, p) for t, p in gone])
        self.watched -= gone

    # -- fetching ---------------------------------------------------------------------------
    def fetch(self, timeout: float) -> bool:
        """Put exchange records into the inbox; True if a watched partition had a record."""
        consumer = self._consumer
        if consumer is None:
            return False
        first = consumer.poll(timeout)
        if first is None:
            return False
        woken = False
        batches: dict[str, list[Record]] = {}
        for msg in [first, *consumer.consume(num_messages=BATCH - 1, timeout=0)]:
            if msg.error() is None and (str(msg.topic()), msg.partition() or 0) in self.watched:
                woken = True
            else:
                self._route(msg, batches)
        for queue, records in batches.items():
            self.inbox.put(queue, records)
        return woken

    def _route(self, msg: Message, batches: dict[str, list[Record]]) -> None:
        error = msg.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                logger.warning("kafka exchange reader: %s", error)
            return
        view = self._views.get(str(msg.topic()))
        if view is None:
            return  # an unwatched work partition's late record, or an unbound exchange
        routing_key = ""
        for name, value in list(msg.headers() or ()):
            if name == ROUTING_KEY_HEADER and value is not None:
                routing_key = value.decode() if isinstance(value, bytes) else str(value)
        queues = view.route(msg.partition() or 0, msg.offset() or 0, routing_key)
        raw = msg.value()
        try:
            for queue in queues:
                payload = loads(raw)
                self._copies += 1
                tag = payload["properties"]["delivery_tag"] = f"x{self._copies}"
                batches.setdefault(queue, []).append(Record(tag, payload, None))
        except (ValueError, TypeError, KeyError) as exc:
            logger.error("kafka: dropping undecodable exchange record on %s: %s",
                         msg.topic(), exc)

    def close(self) -> None:
        """Close the consumer (it holds no group membership and commits nothing)."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.close()


def _log_error(error: KafkaError) -> None:
    logger.warning("kafka exchange reader: %s", error)
