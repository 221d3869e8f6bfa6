# mypy: disable-error-code="no-untyped-call"
"""The fetcher thread: the only thread that touches this connection's Kafka consumers.

Why a thread of its own: confluent-kafka 2.16 serializes calls on one Consumer from different
threads, and a thread that keeps polling starves the others (measured: an ack's commit from a
pool thread waited more than 10 s behind the polling thread). Celery's event loop also needs
records announced on a file descriptor, which librdkafka does not offer. So this thread polls,
puts records in the `Inbox` (which wakes the delivering thread through a pipe), applies acks
queued by any thread (`ack()`), and runs the requests of other threads (`call()`: subscribe,
bind, ...) between polls. Every poll is bounded by `poll_timeout`, so a request waits at most
that long.

Two consumers:
* the work consumer, one member of consumer group `group_id`, subscribed to the topics of all
  consumed work queues (one fetch loop for any number of queues; kombu's transport blocks
  `wait_time_seconds` on each empty queue in turn). `GroupMember` (`_membership.py`) owns it
  and its membership (subscribe, rebalances, leaving, `_group.py`); `Pauser` (`_pacing.py`)
  pauses it for flow control and idleness;
* the exchange reader (`_reader.py`), assign-only, for exchange topics and idle watching.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from time import monotonic
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from kombu.utils.json import loads

from ._gaps import GapGuard
from ._inbox import Inbox, Record
from ._membership import GroupMember
from ._offsets import OffsetTracker, PartitionKey
from ._options import KafkaOptions
from ._pacing import Pacer, Pauser
from ._reader import BATCH, ExchangeReader
from .errors import KafkaConnectionError

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: A repeated consumer error (librdkafka retries a failed JoinGroup every 1-2 s) is logged
#: at most once per this many seconds.
_ERROR_LOG_INTERVAL = 30.0


class Fetcher:
    """Owns the work consumer and the exchange reader; see the module docstring."""

    def __init__(self, options: KafkaOptions, bootstrap: str, inbox: Inbox,
                 session_minimum: Callable[[], int | None]) -> None:
        self.options = options
        self.bootstrap = bootstrap
        self.inbox = inbox
        self.reader = ExchangeReader(options, bootstrap, inbox)
        #: Written by this thread only; other threads may read it (`delivery()` for requeue).
        self.tracker = OffsetTracker()
        self.failure: BaseException | None = None
        self.member = GroupMember(options, bootstrap, session_minimum,
                                  apply_acks=self._apply_acks, gained=self._gained,
                                  lost=self._lost)
        self.pauser = Pauser(Pacer(options.max_buffered, options.idle_after),
                             connect_timeout=options.connect_timeout,
                             auto_offset_reset=options.auto_offset_reset,
                             next_offset=self.tracker.next_offset, watch=self.reader.watch,
                             unwatch=lambda: self.reader.unwatch(set(self.reader.watched)))
        self.gaps = GapGuard(options.offset_gap_wait)
        self._requests: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._acks: deque[int] = deque()
        self._signal = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        # -- state owned by the fetcher thread -------------------------------------------
        self._work_topics: dict[str, str] = {}  # topic -> queue
        self._error_logged: dict[int, float] = {}

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

    def stop(self, timeout: float = 20.0) -> None:
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
            self.member.close()
            self.reader.close()

    def _step(self) -> None:
        self._signal.clear()
        self._run_requests()
        self._apply_acks()
        timeout = self.options.poll_timeout
        member, pacer = self.member, self.pauser.pacer
        work = member.consumer
        if work is not None and member.topics:
            self.pauser.pace(work, self.inbox.work_backlog(), member.assigned)
            # a paused consumer is still polled: rebalance callbacks run inside poll()
            self._fetch(work, 0.0 if pacer.paused else timeout)
            timeout = timeout if pacer.paused else 0.0
            member.check()
        if self.reader.active:
            self.pauser.woken |= self.reader.fetch(timeout)
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

    def _fetch(self, work: Consumer, timeout: float) -> None:
        # poll() returns on the first record; what else is already fetched is then taken
        # without waiting (consume(n, timeout) would wait for n records or the timeout).
        first = work.poll(timeout)
        if first is None:
            return
        batches: dict[str, list[Record]] = {}
        refetch: dict[PartitionKey, int] = {}  # partitions to fetch again from an offset
        self._on_work_record(first, batches, refetch)
        for msg in work.consume(num_messages=BATCH - 1, timeout=0):
            self._on_work_record(msg, batches, refetch)
        for (topic, partition), offset in refetch.items():
            try:
                work.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:  # not fetching it now: it resumes from there anyway
                logger.debug("kafka: fetching %s[%d] again from %d: %s",
                             topic, partition, offset, exc)
        for queue, records in batches.items():
            if not self.inbox.put(queue, records):  # queue closed meanwhile
                self._drop(records)

    # -- work queues ----------------------------------------------------------------------
    def set_work_queues(self, topics: dict[str, str]) -> None:
        """Consume exactly these work topics (topic -> queue); one rebalance when it changes."""
        for topic, queue in self._work_topics.items():
            if topics.get(topic) != queue:
                self._drop(self.inbox.close(queue))
        self._work_topics = dict(topics)
        self.member.subscribe(tuple(sorted(topics)))

    def _gained(self, keys: set[PartitionKey]) -> None:
        for key in keys:
            self.tracker.assign(key)
        self.pauser.woken = True  # new partitions: fetch them at once, then idle again if quiet

    def _lost(self, keys: set[PartitionKey]) -> None:
        for key in keys:
            self.tracker.revoke(key)
        self.pauser.forget(keys)
        self.gaps.forget(keys)
        self.reader.unwatch(keys)
        # buffered records of revoked partitions go to their next owner, not to kombu
        self._drop(self.inbox.remove(lambda rec: rec.key in keys))

    def _drop(self, records: Iterable[Record]) -> None:
        for rec in records:
            if isinstance(rec.tag, int):
                self.tracker.drop(rec.tag)

    def _on_work_record(self, msg: Message, batches: dict[str, list[Record]],
                        refetch: dict[PartitionKey, int]) -> None:
        error = msg.error()
        if error is not None:
            self._on_consumer_error(error)
            return
        topic, partition, offset = str(msg.topic()), msg.partition() or 0, msg.offset() or 0
        key = (topic, partition)
        now = monotonic()
        self.pauser.pacer.worked(now)
        if key in refetch:  # after a skipped offset in this batch: fetched again
            return
        expected = self.tracker.next_offset(key)
        if expected is not None and not self.gaps.admit(key, expected, offset, now):
            refetch[key] = expected  # a record before this one is not visible yet: _gaps.py
            return
        if expected is not None and offset > expected:
            logger.warning("kafka: %s[%d] offsets %d-%d stayed missing for %.1fs "
                           "(offset_gap_wait); delivering from %d", topic, partition, expected,
                           offset - 1, self.options.offset_gap_wait, offset)
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

    def _on_consumer_error(self, error: KafkaError) -> None:
        code = error.code()
        if code == KafkaError._PARTITION_EOF:
            return
        if code == KafkaError.INVALID_SESSION_TIMEOUT:
            self.member.session_rejected = True
        now = monotonic()
        if now - self._error_logged.get(code, -_ERROR_LOG_INTERVAL) >= _ERROR_LOG_INTERVAL:
            self._error_logged[code] = now
            logger.warning("kafka consumer: %s", error)

    # -- acks -------------------------------------------------------------------------------
    def _apply_acks(self) -> None:
        positions: dict[PartitionKey, int] = {}
        acks = self._acks
        while acks:
            moved = self.tracker.ack(acks.popleft())
            if moved is not None:
                positions[moved[0]] = moved[1]
        work = self.member.consumer
        if positions and work is not None and not self.options.enable_auto_commit:
            offsets = [TopicPartition(t, p, off) for (t, p), off in positions.items()
                       if (t, p) in self.member.assigned]
            if offsets:
                try:
                    work.store_offsets(offsets=offsets)
                except KafkaException as exc:  # revoked meanwhile: the next owner redelivers
                    logger.debug("kafka: store_offsets: %s", exc)
