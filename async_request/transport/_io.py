"""The Kafka side of one kombu connection: producer, admin client, fetcher thread, inbox.

The thread that uses the connection (Celery's event loop, or a caller of `drain_events`)
talks to Kafka only through this object: publishing goes to the thread-safe producer, topic
requests to the admin client, and everything about consumers is handed to the fetcher
thread (`_fetcher.py`), which answers through the `Inbox` and its wake-up pipe. Producer,
admin client and fetcher are created on first use, so a connection that only publishes (the
web app) never starts a consumer.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

from ._exchange import Binding
from ._fetcher import Fetcher
from ._health import health_for
from ._inbox import Inbox
from ._offsets import Delivery
from ._options import KafkaOptions
from ._producer import DeliveryProducer
from ._spread import Spread
from ._topics import TopicAdmin
from ._wakeup import Wakeup
from .errors import DeliveryFailed, KafkaConnectionError, PublishTimeout


class KafkaIO:
    """Producer, admin client, fetcher and inbox of one kombu connection (one process)."""

    def __init__(self, options: KafkaOptions, bootstrap: str) -> None:
        self.pid = os.getpid()
        self.options = options
        self.bootstrap = bootstrap
        self.wakeup = Wakeup()
        self.inbox = Inbox(self.wakeup)
        self.fetcher = Fetcher(options, bootstrap, self.inbox,
                               lambda: self.admin.session_timeout_minimum())
        self.work_queues: dict[str, str] = {}  # queue -> topic, as consumed by this connection
        self.bound_queues: set[str] = set()  # queues fed from exchange topics
        self._producer: DeliveryProducer | None = None
        self._admin: TopicAdmin | None = None
        self._lock = threading.Lock()  # creation of the lazy producer/admin only
        self.health = health_for(bootstrap)
        self.spread = Spread()

    @property
    def admin(self) -> TopicAdmin:
        """The AdminClient wrapper (created on first use)."""
        if self._admin is None:
            with self._lock:
                if self._admin is None:
                    self._admin = TopicAdmin(self.options.admin_config(self.bootstrap),
                                             self.options.connect_timeout, self.health,
                                             self.options.unreachable_timeout)
        return self._admin

    @property
    def producer(self) -> DeliveryProducer:
        """The connection's producer (created on first use)."""
        if self._producer is None:
            with self._lock:
                if self._producer is None:
                    self._producer = DeliveryProducer(
                        self.options.producer_config(self.bootstrap), self.health,
                        self.options.unreachable_timeout)
        return self._producer

    def check(self) -> None:
        """Raise KafkaConnectionError if the fetcher thread died (Celery then reconnects)."""
        failure = self.fetcher.failure
        if failure is not None:
            raise KafkaConnectionError(f"kafka fetcher failed: {failure!r}") from failure

    # -- publishing -------------------------------------------------------------------------
    def publish(self, topic: str, body: bytes, partitions: int, config: dict[str, str],
                headers: list[tuple[str, str | bytes | None]] | None, wait: bool) -> None:
        """Produce `body` to `topic` (created if missing); with `wait`, return once the broker
        acknowledged it (PublishTimeout after `publish_timeout`, DeliveryFailed; while the
        cluster is known to be away, KafkaConnectionError after `unreachable_timeout`)."""
        if wait and self.health.down:
            self.admin.ping()  # a quick metadata request: fails fast, or says it is back
        count = self.admin.ensure(topic, partitions, self.options.replication_factor, config,
                                  self.options.min_insync_replicas)
        future = self.producer.send(topic, body, headers, log_errors_only=not wait,
                                    partition=self.spread.next(topic, count))
        if not wait:
            return
        with self._acknowledging(topic):
            self.producer.wait(future, self.options.publish_timeout + 1.0)

    def try_send(self, topic: str, body: bytes) -> Future[tuple[int, int]] | None:
        """Produce `body` to `topic` without blocking, when that needs no request to the
        cluster first: it is not known to be away, and `topic`'s partition count is cached
        and fresh. None otherwise, with nothing sent (then `publish()` is the way)."""
        if self.health.down:
            return None
        count = self.admin.cached(topic)
        if count is None:
            return None
        return self.producer.send(topic, body, partition=self.spread.next(topic, count))

    async def acknowledged(self, topic: str, future: Future[tuple[int, int]]) -> None:
        """Wait from a coroutine for the broker to acknowledge `future` (from `try_send`),
        with `publish(wait=True)`'s timeouts and errors."""
        with self._acknowledging(topic):
            await self.producer.wait_async(future, self.options.publish_timeout + 1.0)

    @contextmanager
    def _acknowledging(self, topic: str) -> Iterator[None]:
        """What a publish to `topic` that waited and failed raises, and forgets."""
        try:
            yield
        except TimeoutError:
            self.admin.forget(topic)
            raise PublishTimeout(
                f"kafka did not acknowledge a message to {topic} within "
                f"{self.options.publish_timeout:g}s") from None
        except DeliveryFailed:
            self.admin.forget(topic)  # recreated by the next publish if the broker lost it
            raise

    def resend(self, topic: str, body: bytes) -> None:
        """Produce a requeued message to its topic again; return once the broker has it."""
        future = self.producer.send(topic, body)
        try:
            self.producer.wait(future, self.options.publish_timeout + 1.0)
        except TimeoutError:
            raise PublishTimeout(f"requeue to {topic} not acknowledged") from None

    # -- work queues ------------------------------------------------------------------------
    def consume_queue(self, queue: str, topic: str) -> None:
        """Add `queue` (stored in `topic`, created if missing) to the group subscription."""
        options = self.options
        self.admin.ensure(topic, options.partitions_for(queue), options.replication_factor,
                          options.topic_config, options.min_insync_replicas)
        self.work_queues[queue] = topic
        self.inbox.open(queue, work=True)
        self._subscribe()

    def cancel_queue(self, queue: str) -> None:
        """Stop consuming `queue`; its undelivered records go back to the group."""
        if self.work_queues.pop(queue, None) is not None:
            self._subscribe()

    def _subscribe(self) -> None:
        topics = {topic: queue for queue, topic in self.work_queues.items()}
        self.fetcher.call(lambda: self.fetcher.set_work_queues(topics))

    # -- exchange topics --------------------------------------------------------------------
    def bind(self, binding: Binding, topic: str) -> None:
        """Feed `binding.queue` from exchange topic `topic` (created if missing), starting at
        its current end (high watermark).

        The end is read here, before returning, so a message published right after the
        binding (a reply to the request about to be sent) is never missed.
        """
        partitions = self.admin.ensure(topic, 1, self.options.replication_factor,
                                       self.options.exchange_topic_config,
                                       self.options.min_insync_replicas)
        start = self.admin.ends(topic, partitions)
        self.bound_queues.add(binding.queue)
        self.fetcher.call(lambda: self.fetcher.reader.bind(binding, topic, start))

    def unbind(self, queue: str) -> None:
        """Drop `queue`'s exchange bindings and its waiting records."""
        self.bound_queues.discard(queue)
        self.fetcher.call(lambda: self.fetcher.reader.unbind(queue))

    def is_bound(self, queue: str) -> bool:
        """True when `queue` is fed from an exchange topic."""
        return queue in self.bound_queues

    # -- acks -------------------------------------------------------------------------------
    def ack(self, tag: Any) -> None:
        """Settle a delivery (any thread): its offset may now be committed."""
        if isinstance(tag, int):
            self.fetcher.ack(tag)
        # the settled message may have opened the prefetch window for a waiting record
        self.wakeup.notify()

    def delivery(self, tag: Any) -> Delivery | None:
        """Where a work delivery came from (None for exchange copies or revoked ones)."""
        # The tracker belongs to the fetcher thread; a dict lookup is safe under the GIL.
        return self.fetcher.tracker.delivery(tag) if isinstance(tag, int) else None

    # -- shutdown ---------------------------------------------------------------------------
    def worker_exiting(self) -> None:
        """The process ends once this connection closes: the work consumer stays in its group
        until then, and leaves it only with `leave_group_on_shutdown` (any thread)."""
        self.fetcher.member.exiting = True

    def close(self) -> None:
        """Stop the fetcher (commit the acked prefix, leave the group); deliver queued
        messages; close the wake-up pipe."""
        if self.pid != os.getpid():
            _ORPHANS.append(self)  # librdkafka handles do not survive fork; never touch them
            return
        self.fetcher.stop()
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.close()
        self.wakeup.close()


#: IO objects inherited through fork(): kept alive so their librdkafka handles are never
#: destroyed in the child (destroying them there would wait for threads that do not exist).
_ORPHANS: list[KafkaIO] = []
