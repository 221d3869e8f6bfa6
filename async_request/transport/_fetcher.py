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
  `wait_time_seconds` per empty queue, research §3.2 item 3); paused for flow control and
  idleness (`_pacing.py`), careful about when it leaves the group (`_group.py`);
* the exchange reader (`_reader.py`), assign-only, for exchange topics and idle watching.
"""

from __future__ import annotations

import ctypes
import logging
import sys
import threading
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

from ._group import RebalanceWatch, longer_session, stall_limit
from ._inbox import Inbox, Record
from ._offsets import OffsetTracker, PartitionKey
from ._options import KafkaOptions
from ._pacing import Pacer
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
        self._session_minimum = session_minimum
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
        self._session_ms = int(options.consumer_config("")["session.timeout.ms"])
        self._watch = RebalanceWatch(stall_limit(self._session_ms))
        self._session_rejected = False
        self._error_logged: dict[int, float] = {}
        self._pacer = Pacer(options.max_buffered, options.idle_after)
        self._paused: set[PartitionKey] = set()
        self._resume_at: dict[PartitionKey, int] = {}  # paused partitions' next offsets
        self._woken = False  # the reader saw work while idle, or the assignment changed

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
            self._fetch(work, 0.0 if self._pacer.paused else timeout)
            timeout = timeout if self._pacer.paused else 0.0
            self._check_membership()
        if self.reader.active:
            self._woken |= self.reader.fetch(timeout)
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
        self._on_work_record(first, batches)
        for msg in work.consume(num_messages=BATCH - 1, timeout=0):
            self._on_work_record(msg, batches)
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
        if wanted:
            consumer.subscribe(list(wanted), on_assign=self._on_assign,
                               on_revoke=self._on_revoke, on_lost=self._on_lost)
            self._watch.joining(monotonic())
        elif _process_exits_next():
            # a stopping worker stays in the group (and keeps serving rebalances) until
            # `_shutdown`, which leaves it or, while it rebalances, abandons it; what it still
            # fetches is dropped, not acked, and redelivered to the next owner
            return
        else:
            if not self._settle_before_leaving(consumer):
                self._warn_leaving_mid_rebalance()
            consumer.unsubscribe()
            self._watch.settled()
        self._subscribed = wanted

    def _work_consumer(self) -> Consumer:
        if self._work is None:
            config = self.options.consumer_config(self.bootstrap)
            config["session.timeout.ms"] = self._session_ms  # may have grown after a refusal
            self._work = Consumer({**config, "error_cb": self._on_error})
        return self._work

    def _on_error(self, error: KafkaError) -> None:
        logger.warning("kafka consumer: %s", error)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self.tracker.assign(key)
            self._assigned.add(key)
        try:  # librdkafka keeps a partition's pause across revoke and re-assign
            consumer.resume(partitions)
        except KafkaException as exc:
            logger.debug("kafka: resume on assign: %s", exc)
        self._watch.settled()
        self._woken = True  # new partitions: fetch them at once, then go idle again if quiet
        logger.debug("kafka: assigned %s", [(p.topic, p.partition) for p in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._watch.joining(monotonic())
        self._apply_acks()
        self._forget(partitions)
        if not self.options.enable_auto_commit:
            try:  # commit the acked prefix now rather than at the next timer tick
                consumer.commit(asynchronous=False)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError._NO_OFFSET:
                    logger.warning("kafka: commit on revoke failed: %s", exc)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._watch.joining(monotonic())
        self._forget(partitions)

    def _forget(self, partitions: Iterable[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        for key in keys:
            self.tracker.revoke(key)
            self._assigned.discard(key)
            self._paused.discard(key)
            self._resume_at.pop(key, None)
        self.reader.unwatch(keys)
        # buffered records of revoked partitions go to their next owner, not to kombu
        self._drop(self.inbox.remove(lambda rec: rec.key in keys))

    def _drop(self, records: Iterable[Record]) -> None:
        for rec in records:
            if isinstance(rec.tag, int):
                self.tracker.drop(rec.tag)

    def _on_work_record(self, msg: Message, batches: dict[str, list[Record]]) -> None:
        error = msg.error()
        if error is not None:
            self._on_consumer_error(error)
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

    def _on_consumer_error(self, error: KafkaError) -> None:
        code = error.code()
        if code == KafkaError._PARTITION_EOF:
            return
        if code == KafkaError.INVALID_SESSION_TIMEOUT:
            self._session_rejected = True
        now = monotonic()
        if now - self._error_logged.get(code, -_ERROR_LOG_INTERVAL) >= _ERROR_LOG_INTERVAL:
            self._error_logged[code] = now
            logger.warning("kafka consumer: %s", error)

    # -- group membership (see _group.py) ---------------------------------------------------
    def _check_membership(self) -> None:
        if self._session_rejected:
            self._session_rejected = False
            self._rejoin_with_longer_session()
        stuck = self._watch.overdue(monotonic())
        if stuck is not None:
            logger.error(
                "kafka: consumer group %r has been rebalancing for %.0f s without assigning "
                "partitions to this worker (normal: a few seconds); nothing is lost, but "
                "nothing is consumed. On tansu this is a known broker bug (a group leader "
                "that left during a rebalance stays leader; docs/transport.md, 'Known "
                "issues'): restart the broker or delete the group.",
                self.options.group_id, stuck)

    def _rejoin_with_longer_session(self) -> None:
        if self.options.session_configured:
            logger.error("kafka: the broker refuses session.timeout.ms=%d from the transport "
                         "options (INVALID_SESSION_TIMEOUT); set it within the broker's "
                         "group.min/max.session.timeout.ms", self._session_ms)
            return
        longer = longer_session(self._session_ms, self._session_minimum())
        if longer is None:
            logger.error("kafka: the broker refuses session.timeout.ms=%d and every longer "
                         "default; set kafka_consumer_config['session.timeout.ms']",
                         self._session_ms)
            return
        logger.warning("kafka: the broker refuses session.timeout.ms=%d (below its "
                       "group.min.session.timeout.ms); rejoining with %d",
                       self._session_ms, longer)
        self._session_ms = longer
        self._watch.stall_after = stall_limit(longer)
        work, self._work = self._work, None
        if work is not None:
            work.close()  # never joined: no LeaveGroup, returns at once
        topics, self._work_topics, self._subscribed = self._work_topics, {}, ()
        self.set_work_queues(topics)

    def _settle_before_leaving(self, work: Consumer) -> bool:
        """Wait (bounded) until this member is not in a rebalance, so that leaving cannot
        wedge tansu's group; a rebalance that just began shows up within a heartbeat.
        False when the group still rebalances at the deadline."""
        config = self.options.consumer_config("")
        heartbeat = int(config.get("heartbeat.interval.ms", 500)) / 1000
        started = monotonic()
        deadline = started + self._session_ms / 1000 + 1.0
        while monotonic() < deadline:
            if monotonic() - started >= heartbeat and not self._watch.rebalancing:
                return True
            self._apply_acks()
            work.poll(0.05)  # serves rebalance callbacks; a record is dropped (redelivered)
        return False

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
            self.reader.unwatch(set(self.reader.watched))
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
                                               timeout=self.options.connect_timeout)
            except KafkaException as exc:  # not fetching yet: it starts where it is
                logger.debug("kafka: waking %s at %s: %s", key, offset, exc)
        self._resume_at.clear()

    def _start_idle(self, work: Consumer) -> bool:
        """Pause for idleness: the reader watches every partition from its next offset."""
        positions = self._positions(work, self._assigned)
        if set(positions) != self._assigned:
            return False
        self._resume_at.update(positions)
        self.reader.watch(positions)
        return True

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

    # -- shutdown ---------------------------------------------------------------------------
    def _shutdown(self) -> None:
        work = self._work
        if work is not None:
            self._apply_acks()
            stay = bool(self._subscribed) and not self._may_leave(work)
            self._apply_acks()
            self._work = None
            if stay and _process_exits_next():
                self._abandon(work)
            else:
                if stay:
                    self._warn_leaving_mid_rebalance()
                work.close()  # librdkafka commits the stored (acked) positions, leaves the group
        self.reader.close()

    def _may_leave(self, work: Consumer) -> bool:
        """Whether this member may send its LeaveGroup now: never from an exiting worker
        unless `leave_group_on_shutdown`, and only once its group is not rebalancing."""
        if _process_exits_next() and not self.options.leave_group_on_shutdown:
            return False
        return self._settle_before_leaving(work)

    def _warn_leaving_mid_rebalance(self) -> None:
        logger.warning("kafka: leaving group %r while it rebalances", self.options.group_id)

    def _abandon(self, work: Consumer) -> None:
        """Exit without leaving the group: commit the acked prefix, never close the consumer.

        A LeaveGroup while the group rebalances can wedge it on tansu (`_group.py`); a member
        that just disappears is evicted after its session, which is always safe (the same as
        a SIGKILLed worker). `close()`, and the destructor that would call it, send a
        LeaveGroup, so the consumer is kept alive until the process ends: an extra reference
        the interpreter never drops, so finalization does not destroy it either.
        """
        if not self.options.enable_auto_commit:
            try:
                work.commit(asynchronous=False)
            except KafkaException as exc:  # the next owner redelivers what was not committed
                logger.debug("kafka: commit before exit: %s", exc)
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(work))
        logger.log(logging.INFO if not self.options.leave_group_on_shutdown else logging.WARNING,
                   "kafka: not leaving group %r (it rebalances, or leave_group_on_shutdown is "
                   "off): the broker drops this member after its session (%d ms)",
                   self.options.group_id, self._session_ms)


def _process_exits_next() -> bool:
    """True in a Celery worker that is shutting down (warm or cold): the process ends after
    this connection closes. Elsewhere (a connection reset, a plain kombu consumer) False."""
    state = sys.modules.get("celery.worker.state")
    return state is not None and (getattr(state, "should_stop", None) is not None
                                  or getattr(state, "should_terminate", None) is not None)
