"""One librdkafka Producer per connection, with a delivery future per message.

kombu's confluentkafka transport calls `flush()` after every message, which waits for every
message of that producer (other threads' too) and caps one thread at ~5-6k msg/s (measured on
tansu; 700k msg/s and more without the flush). Here `send()` returns a Future resolved by the
delivery report, and `wait()` waits for that one future only.

Who serves delivery reports: a caller in `wait()` polls the producer itself, so its report
wakes it directly instead of waking a helper thread that then wakes it (measured 150-170 µs
instead of 180-190 µs per confirmed publish on tansu). One poller at a time (`_poll_lock`),
so a report is never taken by a thread that then sleeps on; other waiters wait on their
futures. A daemon thread serves the reports nobody waits for (events) every
`_SERVE_SECONDS` while librdkafka holds a message or report, and every `_IDLE_SERVE_SECONDS`
when it holds none (then it only serves librdkafka's error callback, which tells `health`
that no broker is up): an idle process's thread woke 20 times a second for nothing, 0.4 % of
a core in each worker and web process. While a coroutine waits in `wait_async()` (the web
process publishes the replay task from its event loop: `dispatch.py`), that thread polls
without pause, so the coroutine's report reaches the loop as soon as it arrives.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future
from concurrent.futures import wait as futures_wait
from time import monotonic
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from ._health import Health
from .errors import DeliveryFailed, KafkaConnectionError, MessageTooLarge

logger = logging.getLogger(__name__)

_SERVE_SECONDS = 0.05
_IDLE_SERVE_SECONDS = 0.5
#: Longest single poll of a waiting caller (it re-checks its future in between).
_WAIT_POLL_SECONDS = 0.005
#: How often a waiting coroutine checks its deadline and the cluster's health.
_CHECK_SECONDS = 0.05


def _retrieved(future: asyncio.Future[tuple[int, int]]) -> None:
    """Mark a late report as read: asyncio would log an unread exception as an error."""
    if not future.cancelled():
        future.exception()


class DeliveryProducer:
    """Thread-safe producer: `send()` → Future[(partition, offset)].

    `health` hears librdkafka's report that no broker is up and every successful delivery;
    while it says down, `wait()` gives up after `unreachable_timeout` and purges what is
    still queued, so a message given up on is never delivered behind the caller's back.
    """

    def __init__(self, config: dict[str, Any], health: Health | None = None,
                 unreachable_timeout: float = 1.0) -> None:
        self._max_bytes = int(config.get("message.max.bytes", 1_000_000))
        self.health = health or Health()
        self._unreachable_timeout = unreachable_timeout
        self._producer = Producer({**config, "error_cb": self._on_error})
        self._closed = threading.Event()
        self._poll_lock = threading.Lock()
        self._awaited: set[asyncio.Future[tuple[int, int]]] = set()  # of wait_async()
        self._wake = threading.Event()  # a coroutine began to wait, or close()
        self._thread = threading.Thread(
            target=self._serve, name="kafka-delivery-reports", daemon=True)
        self._thread.start()

    def _on_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self.health.mark_down()
        logger.warning("kafka producer: %s", error)

    def _serve(self) -> None:
        interval = _SERVE_SECONDS
        while not self._closed.is_set():
            if self._awaited:  # coroutines wait: serve each report as it arrives
                with self._poll_lock:
                    self._producer.poll(_WAIT_POLL_SECONDS)
                continue
            self._wake.wait(interval)
            self._wake.clear()
            with self._poll_lock:
                self._producer.poll(0)
            # len(): messages queued or in flight plus reports not served yet. One sent
            # while this sleeps the longer interval is served by its waiter, or at the
            # latest then (a report nobody waits for only logs a failed delivery).
            interval = _SERVE_SECONDS if len(self._producer) else _IDLE_SERVE_SECONDS

    def _expired(self, started: float, deadline: float) -> bool:
        """Whether a waiter since `started` gives up now: past `deadline`, or the cluster known
        to be away for `unreachable_timeout` (then what is still queued is purged)."""
        now = monotonic()
        down_since = self.health.down_since
        if down_since is not None and now - max(started, down_since) >= \
                self._unreachable_timeout:
            self._give_up()
            return True
        return now >= deadline

    def wait(self, future: Future[tuple[int, int]], timeout: float) -> tuple[int, int]:
        """The result of `future` (from `send()`), serving delivery reports meanwhile.

        Raises TimeoutError after `timeout` seconds, or the delivery error.
        """
        started = monotonic()
        deadline = started + timeout
        while not future.done():
            if self._expired(started, deadline):
                raise TimeoutError()
            remaining = deadline - monotonic()
            if self._poll_lock.acquire(blocking=False):
                try:
                    if not future.done():
                        self._producer.poll(max(0.0, min(remaining, _WAIT_POLL_SECONDS)))
                finally:
                    self._poll_lock.release()
            else:  # another thread polls; its poll may set our future
                futures_wait([future], timeout=max(0.0, min(remaining, 0.001)))
        return future.result()

    async def wait_async(self, future: Future[tuple[int, int]], timeout: float
                         ) -> tuple[int, int]:
        """`wait()` for a coroutine: the report thread serves the report; the loop goes on."""
        started = monotonic()
        deadline = started + timeout
        waiting = asyncio.wrap_future(future)
        self._awaited.add(waiting)
        self._wake.set()
        try:
            while not waiting.done():
                if self._expired(started, deadline):
                    raise TimeoutError()
                # asyncio.wait never cancels what it waits for (a cancelled future would
                # refuse the report's result inside librdkafka's callback).
                await asyncio.wait([waiting], timeout=_CHECK_SECONDS)
        finally:
            self._awaited.discard(waiting)
            if not waiting.done():  # given up on: its report comes later, read by nobody
                waiting.add_done_callback(_retrieved)
        return waiting.result()

    def _give_up(self) -> None:
        # No broker is up: drop what is still queued locally (its waiters get _PURGE_QUEUE,
        # a DeliveryFailed), so none of it reaches the broker after its caller heard 503.
        # Messages already on the wire cannot be recalled; their reports come as usual.
        self._producer.purge(in_queue=True, in_flight=False, blocking=False)

    def send(self, topic: str, value: bytes,
             headers: list[tuple[str, str | bytes | None]] | None = None,
             log_errors_only: bool = False,
             partition: int | None = None) -> Future[tuple[int, int]]:
        """Produce one record (to `partition`, else where librdkafka's partitioner puts a
        record without a key: a random partition); the Future resolves when the broker
        acknowledged it."""
        future: Future[tuple[int, int]] = Future()

        def delivered(error: KafkaError | None, message: Message) -> None:
            if error is None:
                self.health.mark_up()
                future.set_result((message.partition() or 0, message.offset() or 0))
            else:
                if log_errors_only:
                    logger.warning("kafka: message to %s not delivered: %s", topic, error)
                if error.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                    future.set_exception(self._too_large(topic, value, error))
                else:
                    future.set_exception(DeliveryFailed(f"{topic}: {error.str()}"))

        try:
            if partition is None:
                self._producer.produce(topic, value, headers=headers, on_delivery=delivered)
            else:
                self._producer.produce(topic, value, partition=partition, headers=headers,
                                       on_delivery=delivered)
        except BufferError as exc:  # local queue full: the broker has been away for a while
            raise KafkaConnectionError(f"kafka producer queue is full: {exc}") from exc
        except KafkaException as exc:  # from librdkafka (e.g. unknown topic, too large)
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                raise self._too_large(topic, value, error) from exc
            raise KafkaConnectionError(f"kafka produce to {topic} failed: {exc}") from exc
        return future

    def _too_large(self, topic: str, value: bytes, error: KafkaError) -> MessageTooLarge:
        # A retry can never succeed: a channel error, not a connection error (no 503).
        return MessageTooLarge(
            f"kafka refused a message of {len(value)} bytes to {topic} (message.max.bytes "
            f"{self._max_bytes}): {error.str()}", size=len(value), limit=self._max_bytes)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (up to `timeout`), then stop the report thread."""
        self._closed.set()
        self._wake.set()
        self._thread.join(timeout=1.0)
        remaining = self._producer.flush(timeout)
        if remaining:
            logger.warning("kafka: %d message(s) not delivered at close", remaining)
