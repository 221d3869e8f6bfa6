# mypy: disable-error-code="no-untyped-call"
"""The Kafka side of one kombu connection: consumers, buffers, acks, the shared producer.

Threading rule: confluent-kafka 2.16 serializes calls on one Consumer from different threads,
and a thread that keeps polling starves the others (research §3.3; a commit from a pool thread
waited > 10 s). So only the thread that drains events (`poll()`) calls the consumers. Acks
from any thread are appended to a deque and applied by that thread at its next poll, which
returns within `poll_timeout`. The producer is thread-safe and shared.

Two consumers per connection:
* the work consumer, one member of consumer group `group_id`, subscribed to the topics of all
  consumed work queues (one fetch loop for any number of queues; kombu's transport blocks
  `wait_time_seconds` per empty queue, research §3.2 item 3);
* the exchange reader, which `assign()`s exchange topics (fanout, events, replies) at explicit
  offsets and never joins a group (tansu parks every JoinGroup for >= 1 s, research §6).
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from kombu.utils.json import loads

from ._exchange import ROUTING_KEY_HEADER, Binding, ExchangeTopic
from ._offsets import OffsetTracker, PartitionKey
from ._options import KafkaOptions
from ._producer import DeliveryProducer
from ._topics import TopicAdmin
from .errors import KafkaConnectionError

logger = logging.getLogger(__name__)

#: Records kept for a bound exchange queue nobody consumes yet (oldest dropped beyond this).
_EXCHANGE_BUFFER = 10000


@dataclass(slots=True)
class Record:
    """A fetched message waiting to be handed to kombu."""

    tag: int | None  # None for exchange-topic copies (never committed)
    payload: dict[str, Any]
    key: PartitionKey | None


class KafkaIO:
    """Consumers, producer, admin and per-queue buffers of one kombu connection."""

    def __init__(self, options: KafkaOptions, bootstrap: str) -> None:
        self.pid = os.getpid()
        self.options = options
        self.bootstrap = bootstrap
        self.tracker = OffsetTracker()
        self.buffers: dict[str, deque[Record]] = {}
        self.work_topics: dict[str, str] = {}  # topic -> queue
        self.exchanges: dict[str, ExchangeTopic] = {}  # exchange topic -> local view
        self._acks: deque[int] = deque()
        self._wakeup = threading.Event()
        self._work: Consumer | None = None
        self._subscribed: tuple[str, ...] = ()
        self._assigned: set[PartitionKey] = set()
        self._paused = False
        self._reader: Consumer | None = None
        self._reader_parts: dict[tuple[str, int], int] = {}
        self._producer: DeliveryProducer | None = None
        self._admin: TopicAdmin | None = None
        self._lock = threading.Lock()  # creation of the lazy producer/admin only
        self._copies = 0

    # -- lazily built clients ---------------------------------------------------------------
    @property
    def admin(self) -> TopicAdmin:
        """The AdminClient wrapper (created on first use)."""
        if self._admin is None:
            with self._lock:
                if self._admin is None:
                    self._admin = TopicAdmin(self.options.admin_config(self.bootstrap),
                                             self.options.connect_timeout)
        return self._admin

    @property
    def producer(self) -> DeliveryProducer:
        """The connection's producer (created on first use)."""
        if self._producer is None:
            with self._lock:
                if self._producer is None:
                    self._producer = DeliveryProducer(
                        self.options.producer_config(self.bootstrap))
        return self._producer

    def _on_error(self, error: KafkaError) -> None:
        logger.warning("kafka consumer: %s", error)

    def _work_consumer(self) -> Consumer:
        if self._work is None:
            config = self.options.consumer_config(self.bootstrap)
            self._work = Consumer({**config, "error_cb": self._on_error})
        return self._work

    def _reader_consumer(self) -> Consumer:
        if self._reader is None:
            group = f"{self.options.group_id}.reader.{uuid.uuid4().hex}"
            self._reader = Consumer({**self.options.broadcast_config(self.bootstrap, group),
                                     "error_cb": self._on_error})
        return self._reader

    # -- work queues (consumer group) -------------------------------------------------------
    def consume_queue(self, queue: str, topic: str) -> None:
        """Add `queue` (stored in `topic`) to the group subscription."""
        self.work_topics[topic] = queue
        self.buffers.setdefault(queue, deque())
        self._resubscribe()

    def cancel_queue(self, queue: str) -> None:
        """Stop consuming work queue `queue`; its buffered records are dropped (redelivered)."""
        for topic in [t for t, q in self.work_topics.items() if q == queue]:
            del self.work_topics[topic]
        self._drop_buffered(lambda rec: True, queue)
        self._resubscribe()

    def _resubscribe(self) -> None:
        topics = tuple(sorted(self.work_topics))
        if topics == self._subscribed:
            return
        consumer = self._work_consumer()
        self._subscribed = topics
        if topics:
            consumer.subscribe(list(topics), on_assign=self._on_assign,
                               on_revoke=self._on_revoke, on_lost=self._on_lost)
        else:
            consumer.unsubscribe()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self.tracker.assign(key)
            self._assigned.add(key)
        if self._paused and partitions:
            consumer.pause(partitions)
        logger.debug("kafka: assigned %s", [(p.topic, p.partition) for p in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget_partitions(partitions)
        if not self.options.enable_auto_commit:
            try:  # commit the acked prefix now rather than at the next timer tick
                consumer.commit(asynchronous=False)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError._NO_OFFSET:
                    logger.warning("kafka: commit on revoke failed: %s", exc)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget_partitions(partitions)

    def _forget_partitions(self, partitions: Iterable[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        for key in keys:
            self.tracker.revoke(key)
            self._assigned.discard(key)
        for queue in set(self.work_topics.values()):
            self._drop_buffered(lambda rec: rec.key in keys, queue)

    def _drop_buffered(self, predicate: Any, queue: str) -> None:
        buffer = self.buffers.get(queue)
        if not buffer:
            return
        kept: deque[Record] = deque()
        for rec in buffer:
            if predicate(rec):
                if rec.tag is not None:
                    self.tracker.drop(rec.tag)
            else:
                kept.append(rec)
        self.buffers[queue] = kept

    # -- exchange topics (assign, no group) -------------------------------------------------
    def bind(self, binding: Binding, topic: str, partitions: int) -> None:
        """Start reading `topic` for `binding` from its current end (high watermark)."""
        reader = self._reader_consumer()
        start: dict[int, int] = {}
        for partition in range(partitions):
            try:
                _, high = reader.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=self.options.connect_timeout)
            except KafkaException as exc:
                raise KafkaConnectionError(f"kafka watermarks of {topic}: {exc}") from exc
            start[partition] = high
        view = self.exchanges.setdefault(topic, ExchangeTopic(topic))
        view.bind(binding, start)
        self.buffers.setdefault(binding.queue, deque(maxlen=_EXCHANGE_BUFFER))
        new = [TopicPartition(topic, p, off) for p, off in start.items()
               if (topic, p) not in self._reader_parts]
        if new:
            reader.incremental_assign(new)
            for tp in new:
                self._reader_parts[(topic, tp.partition)] = tp.offset

    def is_bound(self, queue: str) -> bool:
        """True when `queue` is fed from an exchange topic."""
        return any(queue in view.starts for view in self.exchanges.values())

    def unbind(self, queue: str) -> None:
        """Drop `queue`'s exchange bindings; unassign topics nobody local needs any more."""
        for topic, view in list(self.exchanges.items()):
            if queue not in view.starts:
                continue
            view.unbind_queue(queue)
            if not view.bindings:
                del self.exchanges[topic]
                parts = [TopicPartition(t, p) for (t, p) in self._reader_parts if t == topic]
                for tp in parts:
                    del self._reader_parts[(topic, tp.partition)]
                if parts and self._reader is not None:
                    self._reader.incremental_unassign(parts)
        if queue not in self.work_topics.values():
            self.buffers.pop(queue, None)

    # -- acks (any thread) ------------------------------------------------------------------
    def ack(self, tag: Any) -> None:
        """Queue an ack for the polling thread (callable from any thread)."""
        if isinstance(tag, int):
            self._acks.append(tag)
            self._wakeup.set()

    def _apply_acks(self) -> None:
        positions: dict[PartitionKey, int] = {}
        acks = self._acks
        while acks:
            moved = self.tracker.ack(acks.popleft())
            if moved is not None:
                positions[moved[0]] = moved[1]
        if positions and self._work is not None and not self.options.enable_auto_commit:
            offsets = [TopicPartition(t, p, off) for (t, p), off in positions.items()
                       if (t, p) in self._assigned]
            if offsets:
                try:
                    self._work.store_offsets(offsets=offsets)
                except KafkaException as exc:  # partition revoked meanwhile: next owner redelivers
                    logger.debug("kafka: store_offsets: %s", exc)

    def wait_for_ack(self, timeout: float) -> None:
        """Block until an ack arrives from any thread (or `timeout`); then `poll(0)`."""
        self._wakeup.wait(timeout)

    # -- polling (owner thread) -------------------------------------------------------------
    def buffered(self) -> int:
        """Work records fetched but not yet handed to kombu."""
        return sum(len(self.buffers[q]) for q in set(self.work_topics.values())
                   if q in self.buffers)

    def poll(self, timeout: float) -> None:
        """Apply queued acks and fetch what arrived within `timeout` into the buffers."""
        self._wakeup.clear()
        self._apply_acks()
        work, reader = self._work, self._reader
        if work is not None and self._subscribed:
            room = self.options.max_buffered - self.buffered()
            self._flow(work, room > 0)
            if room > 0:
                self._fetch(work, min(room, 500), timeout, self._on_work_record)
            else:  # window full: keep the group alive and wake up on the next ack
                self._wakeup.wait(timeout)
                self._fetch(work, 1, 0.0, self._on_work_record)
            timeout = 0.0
        if reader is not None and self._reader_parts:
            self._fetch(reader, 500, timeout, self._on_exchange_record)
        elif timeout > 0:
            self._wakeup.wait(timeout)

    @staticmethod
    def _fetch(consumer: Consumer, limit: int, timeout: float, handle: Any) -> None:
        # consume(n, timeout) waits for n records or the timeout; poll() returns on the first
        # one, then whatever else is already fetched is taken without waiting.
        first = consumer.poll(timeout)
        if first is None:
            return
        handle(first)
        if limit > 1:
            for msg in consumer.consume(num_messages=limit - 1, timeout=0):
                handle(msg)

    def _flow(self, consumer: Consumer, open_: bool) -> None:
        pause = not open_
        if pause == self._paused:
            return
        parts = [TopicPartition(t, p) for t, p in self._assigned]
        if parts:
            (consumer.pause if pause else consumer.resume)(parts)
        self._paused = pause

    def _on_work_record(self, msg: Message) -> None:
        error = msg.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                logger.warning("kafka consumer: %s", error)
            return
        topic, partition, offset = str(msg.topic()), msg.partition() or 0, msg.offset() or 0
        key = (topic, partition)
        tag = self.tracker.delivered(key, offset)
        queue = self.work_topics.get(topic)
        try:
            payload = loads(msg.value())
            payload["properties"]["delivery_tag"] = tag
        except (ValueError, TypeError, KeyError) as exc:
            logger.error("kafka: dropping undecodable record %s[%d]@%d: %s",
                         topic, partition, offset, exc)
            self.ack(tag)
            return
        if queue is None:  # unsubscribed meanwhile; not acked, the group redelivers it
            self.tracker.drop(tag)
            return
        self.buffers.setdefault(queue, deque()).append(Record(tag, payload, key))

    def _on_exchange_record(self, msg: Message) -> None:
        error = msg.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                logger.warning("kafka exchange reader: %s", error)
            return
        view = self.exchanges.get(str(msg.topic()))
        if view is None:
            return
        routing_key = ""
        for name, value in list(msg.headers() or ()):
            if name == ROUTING_KEY_HEADER and value is not None:
                routing_key = value.decode() if isinstance(value, bytes) else str(value)
        queues = view.route(msg.partition() or 0, msg.offset() or 0, routing_key)
        if not queues:
            return
        try:
            raw = msg.value()
            for queue in queues:
                payload = loads(raw)
                self._copies += 1
                payload["properties"]["delivery_tag"] = f"x{self._copies}"
                self.buffers.setdefault(queue, deque(maxlen=_EXCHANGE_BUFFER)).append(
                    Record(None, payload, None))
        except (ValueError, TypeError, KeyError) as exc:
            logger.error("kafka: dropping undecodable exchange record on %s: %s",
                         msg.topic(), exc)

    # -- shutdown ---------------------------------------------------------------------------
    def close(self) -> None:
        """Commit the acked prefix, leave the group, deliver queued messages."""
        if self.pid != os.getpid():
            _ORPHANS.append(self)  # librdkafka handles do not survive fork; never touch them
            return
        work, self._work = self._work, None
        reader, self._reader = self._reader, None
        producer, self._producer = self._producer, None
        if work is not None:
            self._apply_acks_on(work)
            work.close()
        if reader is not None:
            reader.close()
        if producer is not None:
            producer.close()

    def _apply_acks_on(self, work: Consumer) -> None:
        self._work = work
        try:
            self._apply_acks()
        finally:
            self._work = None


#: IO objects inherited through fork(): kept alive so their librdkafka handles are never
#: destroyed in the child (destroying them there would wait for threads that do not exist).
_ORPHANS: list[KafkaIO] = []
