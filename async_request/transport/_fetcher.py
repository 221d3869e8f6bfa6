# mypy: disable-error-code="no-untyped-call"
"""The fetcher thread: the only thread that touches this connection's Kafka consumers.

Why a thread of its own: confluent-kafka 2.16 serializes calls on one Consumer from different
threads, and a thread that keeps polling starves the others (research §3.3: a commit from a
pool thread waited > 10 s). Celery's event loop also needs records announced on a file
descriptor, which librdkafka does not offer. So this thread polls, puts records in the
`Inbox` (which wakes the delivering thread through a pipe), applies acks queued by any thread
(`ack()`), and runs the requests of other threads (`call()`: subscribe, bind, ...) between
polls. Every poll is bounded by `poll_timeout`, so a request waits at most that long.

Two consumers:
* the work consumer, one member of consumer group `group_id`, subscribed to the topics of all
  consumed work queues (one fetch loop for any number of queues; kombu's transport blocks
  `wait_time_seconds` per empty queue, research §3.2 item 3);
* the exchange reader, which `assign()`s exchange topics (fanout, events, replies) at explicit
  offsets and never joins a group (tansu parks every JoinGroup for >= 1 s, research §6).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from time import monotonic
from typing import Any, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from kombu.utils.json import loads

from ._exchange import ROUTING_KEY_HEADER, Binding, ExchangeTopic
from ._inbox import Inbox, Record
from ._offsets import OffsetTracker, PartitionKey
from ._options import KafkaOptions
from ._pacing import Pacer
from .errors import KafkaConnectionError

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Records taken from librdkafka per poll at most.
_BATCH = 500


class Fetcher:
    """Owns the work consumer and the exchange reader; see the module docstring."""

    def __init__(self, options: KafkaOptions, bootstrap: str, inbox: Inbox) -> None:
        self.options = options
        self.bootstrap = bootstrap
        self.inbox = inbox
        #: Written by this thread only; other threads may read it (`delivery()` for requeue).
        self.tracker = OffsetTracker()
        self.failure: BaseException | None = None
        self._requests: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._acks: deque[int] = deque()
        self._signal = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        # -- state owned by the fetcher thread -------------------------------------------
        self._work: Consumer | None = None
        self._work_topics: dict[str, str] = {}  # topic -> queue
        self._subscribed: tuple[str, ...] = ()
        self._assigned: set[PartitionKey] = set()
        self._pacer = Pacer(options.max_buffered, options.idle_after)
        self._paused: set[PartitionKey] = set()
        self._resume_at: dict[PartitionKey, int] = {}  # paused partitions' next offsets
        self._probe: set[PartitionKey] = set()  # paused work partitions the reader watches
        self._woken = False  # the probe saw a record, or the assignment changed
        self._reader: Consumer | None = None
        self._reader_parts: set[PartitionKey] = set()
        self._views: dict[str, ExchangeTopic] = {}  # exchange topic -> bindings
        self._copies = 0

    # -- any thread -------------------------------------------------------------------------
    def call(self, request: Callable[[], T]) -> T:
        """Run `request` in the fetcher thread (started on first use); return its result."""
        if threading.current_thread() is self._thread:
            return request()
        future: Future[T] = Future()
        self._requests.append((request, future))
        self._signal.set()
        self._ensure_started()
        try:
            return future.result(timeout=self.options.connect_timeout + 5.0)
        except TimeoutError:
            raise KafkaConnectionError("kafka fetcher thread did not answer") from None

    def ack(self, tag: int) -> None:
        """Queue an ack; applied (offset stored) by the fetcher within `poll_timeout`."""
        self._acks.append(tag)

    def stop(self, timeout: float = 15.0) -> None:
        """Commit the acked prefix, leave the group, close the consumers; join the thread."""
        self._stopping = True
        self._signal.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("kafka fetcher did not stop within %.0fs", timeout)

    def _ensure_started(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(target=self._run, name="kafka-fetcher",
                                                daemon=True)
                self._thread.start()

    # -- the thread -------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stopping:
                self._step()
        except BaseException as exc:  # the delivering thread re-raises it as a connection error
            logger.exception("kafka fetcher failed")
            self.failure = exc
            self.inbox.wakeup.notify()
        finally:
            self._run_requests()
            self._shutdown()

    def _step(self) -> None:
        self._signal.clear()
        self._run_requests()
        self._apply_acks()
        timeout = self.options.poll_timeout
        work = self._work
        if work is not None and self._subscribed:
            self._pace(work)
            # a paused consumer is still polled: rebalance callbacks run inside poll()
            self._fetch(work, 0.0 if self._pacer.paused else timeout, self._on_work_record)
            timeout = timeout if self._pacer.paused else 0.0
        if self._reader is not None and (self._reader_parts or self._probe):
            self._fetch(self._reader, timeout, self._on_reader_record)
        elif timeout > 0:
            self._signal.wait(timeout)

    def _run_requests(self) -> None:
        requests = self._requests
        while requests:
            request, future = requests.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(request())
            except Exception as exc:  # the caller gets it from future.result()
                future.set_exception(exc)

    def _fetch(self, consumer: Consumer, timeout: float,
               handle: Callable[[Message, dict[str, list[Record]]], None]) -> None:
        # poll() returns on the first record; what else is already fetched is then taken
        # without waiting (consume(n, timeout) would wait for n records or the timeout).
        first = consumer.poll(timeout)
        if first is None:
            return
        batches: dict[str, list[Record]] = {}
        handle(first, batches)
        for msg in consumer.consume(num_messages=_BATCH - 1, timeout=0):
            handle(msg, batches)
        for queue, records in batches.items():
            if not self.inbox.put(queue, records):  # queue closed meanwhile
                self._drop(records)

    # -- work queues (consumer group) -------------------------------------------------------
    def set_work_queues(self, topics: dict[str, str]) -> None:
        """Consume exactly these work topics (topic -> queue); one rebalance when it changes."""
        for topic, queue in self._work_topics.items():
            if topics.get(topic) != queue:
                self._drop(self.inbox.close(queue))
        self._work_topics = dict(topics)
        wanted = tuple(sorted(topics))
        if wanted == self._subscribed:
            return
        consumer = self._work_consumer()
        self._subscribed = wanted
        if wanted:
            consumer.subscribe(list(wanted), on_assign=self._on_assign,
                               on_revoke=self._on_revoke, on_lost=self._on_lost)
        else:
            consumer.unsubscribe()

    def _work_consumer(self) -> Consumer:
        if self._work is None:
            config = self.options.consumer_config(self.bootstrap)
            self._work = Consumer({**config, "error_cb": self._on_error})
        return self._work

    def _on_error(self, error: KafkaError) -> None:
        logger.warning("kafka consumer: %s", error)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self.tracker.assign(key)
            self._assigned.add(key)
        self._woken = True  # new partitions: fetch them at once, then go idle again if quiet
        logger.debug("kafka: assigned %s", [(p.topic, p.partition) for p in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._apply_acks()
        self._forget(partitions)
        if not self.options.enable_auto_commit:
            try:  # commit the acked prefix now rather than at the next timer tick
                consumer.commit(asynchronous=False)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError._NO_OFFSET:
                    logger.warning("kafka: commit on revoke failed: %s", exc)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget(partitions)

    def _forget(self, partitions: Iterable[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        for key in keys:
            self.tracker.revoke(key)
            self._assigned.discard(key)
            self._paused.discard(key)
            self._resume_at.pop(key, None)
        self._unprobe(keys & self._probe)
        # buffered records of revoked partitions go to their next owner, not to kombu
        self._drop(self.inbox.remove(lambda rec: rec.key in keys))

    def _drop(self, records: Iterable[Record]) -> None:
        for rec in records:
            if isinstance(rec.tag, int):
                self.tracker.drop(rec.tag)

    # -- pacing: flow control and idle mode (see _pacing.py) ---------------------------------
    def _pace(self, work: Consumer) -> None:
        pacer = self._pacer
        was_idle = pacer.idle
        pacer.decide(self.inbox.work_backlog(), monotonic(), bool(self._assigned), self._woken)
        self._woken = False
        if pacer.idle and not was_idle and not self._start_idle(work):
            pacer.idle = False  # a position is unknown: stay active, try again later
            pacer.worked(monotonic())
        if was_idle and not pacer.idle:
            self._unprobe(set(self._probe))
        if pacer.paused:
            self._pause(work, self._assigned - self._paused)
        elif self._paused:
            self._resume(work)

    def _pause(self, work: Consumer, keys: set[PartitionKey]) -> None:
        if not keys:
            return
        self._resume_at.update(self._positions(work, keys))
        work.pause([TopicPartition(t, p) for t, p in keys])
        self._paused |= keys

    def _resume(self, work: Consumer) -> None:
        """Resume every paused partition and seek it to where it stopped.

        librdkafka 2.16 starts fetching a resumed partition only when its broker thread
        next wakes up, up to ~1 s later (measured p50 650 ms); a seek() right after the
        resume wakes it, and the first record then arrives in < 1 ms.
        """
        parts = [TopicPartition(t, p) for t, p in self._paused]
        work.resume(parts)
        for key, offset in self._resume_at.items():
            if key in self._paused:
                try:
                    work.seek(TopicPartition(key[0], key[1], offset))
                except KafkaException as exc:  # not fetching yet: it starts where it is
                    logger.debug("kafka: seek %s to %d: %s", key, offset, exc)
        self._paused.clear()
        self._resume_at.clear()

    def _start_idle(self, work: Consumer) -> bool:
        """Pause for idleness: the reader watches every partition from its next offset."""
        positions = self._positions(work, self._assigned)
        if set(positions) != self._assigned:
            return False
        self._resume_at.update(positions)
        self._reader_consumer().incremental_assign(
            [TopicPartition(t, p, off) for (t, p), off in positions.items()])
        self._probe = set(positions)
        return True

    def _unprobe(self, keys: set[PartitionKey]) -> None:
        if keys and self._reader is not None:
            self._reader.incremental_unassign([TopicPartition(t, p) for t, p in keys])
        self._probe -= keys

    def _positions(self, work: Consumer, keys: Iterable[PartitionKey]) -> dict[PartitionKey, int]:
        """Next offset of each partition: delivered + 1, else librdkafka's position, else
        the committed offset, else the start `auto_offset_reset` picks (unknown on errors)."""
        found: dict[PartitionKey, int] = {}
        for key in keys:
            offset = self._resume_at.get(key, self.tracker.next_offset(key))
            if offset is not None:
                found[key] = offset
        missing = [TopicPartition(t, p) for t, p in keys if (t, p) not in found]
        if not missing:
            return found
        timeout = self.options.connect_timeout
        try:
            for lookup in (work.position, lambda tps: work.committed(tps, timeout=timeout)):
                for tp in lookup(missing):
                    if tp.offset >= 0:
                        found[(tp.topic, tp.partition)] = tp.offset
                missing = [tp for tp in missing if (tp.topic, tp.partition) not in found]
                if not missing:
                    return found
            earliest = self.options.auto_offset_reset in ("earliest", "smallest", "beginning")
            for tp in missing:
                if earliest:
                    found[(tp.topic, tp.partition)] = OFFSET_BEGINNING
                else:
                    _, high = work.get_watermark_offsets(tp, timeout=timeout, cached=False)
                    found[(tp.topic, tp.partition)] = high
        except KafkaException as exc:
            logger.debug("kafka: positions unknown: %s", exc)
        return found

    def _on_work_record(self, msg: Message, batches: dict[str, list[Record]]) -> None:
        error = msg.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                logger.warning("kafka consumer: %s", error)
            return
        topic, partition, offset = str(msg.topic()), msg.partition() or 0, msg.offset() or 0
        key = (topic, partition)
        self._pacer.worked(monotonic())
        tag = self.tracker.delivered(key, offset)
        queue = self._work_topics.get(topic)
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
        batches.setdefault(queue, []).append(Record(tag, payload, key))

    # -- acks -------------------------------------------------------------------------------
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
                except KafkaException as exc:  # revoked meanwhile: the next owner redelivers
                    logger.debug("kafka: store_offsets: %s", exc)

    # -- exchange topics (assign, no group) -------------------------------------------------
    def bind(self, binding: Binding, topic: str, start: dict[int, int]) -> None:
        """Feed `binding.queue` from `topic`, from offsets `start` (the high watermarks)."""
        view = self._views.setdefault(topic, ExchangeTopic(topic))
        view.bind(binding, start)
        self.inbox.open(binding.queue, work=False)
        new = [TopicPartition(topic, p, off) for p, off in start.items()
               if (topic, p) not in self._reader_parts]
        if new:
            self._reader_consumer().incremental_assign(new)
            self._reader_parts.update((topic, tp.partition) for tp in new)

    def unbind(self, queue: str) -> None:
        """Drop `queue`'s exchange bindings; unassign topics no local queue needs any more."""
        for topic, view in list(self._views.items()):
            if queue not in view.starts:
                continue
            view.unbind_queue(queue)
            if view.bindings:
                continue
            del self._views[topic]
            parts = [TopicPartition(t, p) for (t, p) in self._reader_parts if t == topic]
            self._reader_parts.difference_update((tp.topic, tp.partition) for tp in parts)
            if parts and self._reader is not None:
                self._reader.incremental_unassign(parts)
        self.inbox.close(queue)

    def _reader_consumer(self) -> Consumer:
        if self._reader is None:
            group = f"{self.options.group_id}.reader.{uuid.uuid4().hex}"
            self._reader = Consumer({**self.options.broadcast_config(self.bootstrap, group),
                                     "error_cb": self._on_error})
        return self._reader

    def _on_reader_record(self, msg: Message, batches: dict[str, list[Record]]) -> None:
        if msg.error() is None and (str(msg.topic()), msg.partition() or 0) in self._probe:
            self._woken = True  # work arrived while idle; the work consumer fetches it
            return
        self._on_exchange_record(msg, batches)

    def _on_exchange_record(self, msg: Message, batches: dict[str, list[Record]]) -> None:
        error = msg.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                logger.warning("kafka exchange reader: %s", error)
            return
        view = self._views.get(str(msg.topic()))
        if view is None:
            return
        routing_key = ""
        for name, value in list(msg.headers() or ()):
            if name == ROUTING_KEY_HEADER and value is not None:
                routing_key = value.decode() if isinstance(value, bytes) else str(value)
        queues = view.route(msg.partition() or 0, msg.offset() or 0, routing_key)
        if not queues:
            return
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

    # -- shutdown ---------------------------------------------------------------------------
    def _shutdown(self) -> None:
        work, self._work = self._work, None
        reader, self._reader = self._reader, None
        if work is not None:
            self._work = work
            try:
                self._apply_acks()
            finally:
                self._work = None
            work.close()  # librdkafka commits the stored (acked) positions and leaves the group
        if reader is not None:
            reader.close()
