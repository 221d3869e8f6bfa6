# mypy: disable-error-code="no-untyped-call"
"""Kombu transport for Apache Kafka (and tansu) on confluent-kafka: at-least-once, fast, visible.

Selecting it
============
Celery::

    broker_url = "kafka://127.0.0.1:9092"            # or kafka://h1:9092,h2:9092
    broker_transport = "async_request.transport.kafka:Transport"
    broker_transport_options = {"group_id": "myapp", "num_partitions": 4}

kombu takes the transport from `transport=` (Celery's `broker_transport`) when it is given and
the URL scheme only otherwise (`kombu.Connection.__init__`); the scheme `kafka` alone maps to
kombu's own `kombu.transport.confluentkafka`. `register_alias()` points the `kafka` (and
`asynckafka`) aliases at this transport for the current process, so a bare `kafka://` URL
selects it too; call it before the first Connection is made (kombu caches resolved aliases).

URL form: `kafka://[user:password@]host[:port][,host2[:port2]...]`; the default port is 9092.
User and password become `sasl.username`/`sasl.password`; set `security.protocol` and
`sasl.mechanism` in `kafka_config`.

Transport options
=================
Validated when the connection is built; a bad value raises `KafkaConfigError` naming the key.

* ``group_id`` (``"celery"``): consumer group of all work queues of this app. One group, one
  consumer per connection, any number of queues (topics).
* ``num_partitions`` (4): partitions of auto-created work-queue topics; it caps how many
  workers share one queue. ``queue_partitions`` (``{}``): per-queue overrides.
* ``replication_factor`` (1) and ``topic_config`` (``{}``): for created work-queue topics;
  ``exchange_topic_config`` (``{}``) for exchange topics (e.g. ``{"retention.ms": "600000"}``).
* ``topic_prefix`` (``""``): prepended to every topic; ``exchange_topic_prefix``
  (``"kombu.exchange."``): prepended (after ``topic_prefix``) to exchange topics.
* ``auto_offset_reset`` (``"earliest"``): where a group with no committed offset starts.
* ``enable_auto_commit`` (False): False = commit only the acknowledged prefix of each partition
  (at-least-once). True = librdkafka commits the position of everything *fetched*, every
  ``auto_commit_interval_ms``: a crash then loses every prefetched or running message whose
  offset was committed (the loss of kombu's stock transport, which commits everything it
  polled). Use only for tasks you can afford to lose.
* ``auto_commit_interval_ms`` (1000): how often librdkafka commits stored positions. Acked
  messages newer than the last commit are redelivered after a crash (duplicates, never loss).
* ``kafka_config`` (``{}``): librdkafka options for producer, consumers and admin client (SASL,
  SSL, ...). ``kafka_consumer_config``, ``kafka_producer_config``, ``kafka_admin_config``:
  per-client overrides, applied last. ``bootstrap_servers`` overrides the URL's host list.
* ``publish_timeout`` (10.0 s): how long a publish waits for the broker's acknowledgement;
  also librdkafka's ``message.timeout.ms``, so a message we gave up on is not sent later.
* ``confirm_publish`` (True): wait for the acknowledgement of persistent messages (tasks).
  Transient messages (events, remote control) never wait; failures are logged.
* ``connect_timeout`` (5.0 s): metadata, topic creation and watermark requests.
* ``poll_timeout`` (0.05 s): longest a single call of the fetcher thread blocks; requests of
  other threads (subscribe, bind) and acks wait at most this long.
* ``broadcast_fetch_wait_ms`` (50): ``fetch.wait.max.ms`` of the exchange reader (remote
  control and events tolerate ~25 ms; a lower value costs broker CPU on tansu).
* ``max_buffered`` (32): work records fetched ahead of delivery; beyond it partitions pause
  (and resume, with a seek, at half of it). Small on purpose: a worker that is behind stops
  fetching records one by one as they arrive and later takes them in one batch (on tansu,
  1000 tasks cost the broker 0.9 s of CPU instead of 1.7 s; throughput +15 %).
* ``idle_after`` (1.0 s): after this long without a work record the work partitions pause and
  the exchange reader watches them instead (fewer fetches: idle worker + tansu ~2 % of a core
  instead of ~7 %); the first task after that waits ~25 ms more. 0 disables it.
* ``leave_group_on_shutdown`` (False): a stopping Celery worker sends no LeaveGroup; the
  broker drops it after its session (``session.timeout.ms``), as after a SIGKILL, and its
  partitions move then. True: it leaves once its group is not rebalancing, so its partitions
  move at once; safe on Apache Kafka, but on tansu a LeaveGroup that races a join can wedge
  the group for good (docs/transport.md, Known issues), and a 202 must reach a result.
* ``event_exchanges`` (``["celeryev"]``): topic exchanges routed through exchange topics.
* ``reply_exchanges`` (``["reply.celery.pidbox"]``): direct exchanges routed the same way
  (replies to remote control go to a queue only the client process has bound).
* ``polling_interval``: ignored (nothing polls on a timer; the fetcher wakes the loop).

librdkafka defaults set here (tansu and Kafka): ``session.timeout.ms`` 1500 (tansu parks each
JoinGroup for session/2, 1 s at least; with 1.5 s a killed worker's replacement joins after
the dead member is gone and leads at once), ``heartbeat.interval.ms`` 500, ``group.protocol``
classic, assignment ``range,roundrobin``, ``fetch.wait.max.ms`` 5 (tansu answers an empty
fetch only after about half of it; 0 never returns data and is rejected), ``linger.ms`` 0,
``acks`` all,
``socket.nagle.disable``. A broker that refuses the 1500 ms session (Apache Kafka:
``group.min.session.timeout.ms``, 6000 by default) answers INVALID_SESSION_TIMEOUT; the consumer
then rejoins with the broker's minimum (DescribeConfigs) or 6000, 10000, 30000, 45000 in turn,
unless ``session.timeout.ms`` was configured (then the error is logged and left to you).

Threads and event loop
======================
One fetcher thread per connection owns the Kafka consumers (confluent-kafka serializes calls
from several threads and starves all but one). It puts records in a per-queue inbox and writes
a byte to a pipe; Celery's event loop (asynloop) waits on that pipe, and ``drain_events`` does
too. Acks from any thread are queued to the fetcher. A connection that only publishes starts
no fetcher.

Guarantees
==========
* At-least-once. Offsets are committed only up to the lowest unacknowledged message of each
  partition, so prefetched, running (``acks_late``) and rejected-for-requeue messages are
  redelivered to the next owner after SIGKILL. ``reject(requeue=True)`` re-produces the
  message (``redelivered=True``), waits for the broker, then acks the original.
* Publishing waits for the broker's acknowledgement of that message only (no flush). A broker
  that is down raises `KafkaConnectionError` (in ``connection_errors``, so Celery retries and
  ``apply_async`` raises ``kombu.exceptions.OperationalError``) within about
  ``publish_timeout``.
* Remote control and events work between processes (exchange topics, see `_exchange.py`);
  they are at-most-once, as over AMQP.
* A worker leaves its consumer group only when its member is not rebalancing (bounded by the
  session timeout): tansu keeps a leader that left during a rebalance and then never
  completes it (`_group.py`). A Celery worker that is shutting down does not leave at all by
  default (``leave_group_on_shutdown``), nor with it on while its group still rebalances: it
  commits its acked prefix and exits without a LeaveGroup, and the broker drops the member
  after its session, as after a SIGKILL. The worker tells the transport that it is shutting
  down through Celery's ``worker_shutting_down`` signal, which calls `worker_exiting()`
  (connected when a connection first consumes a work queue); a connection closed for any
  other reason leaves the group once it is not rebalancing. A rebalance that lasts far
  longer than normal is logged as an error.

Departures from kombu's ``confluentkafka`` transport (and why)
==============================================================
* Acks commit the contiguous acked prefix, not ``commit()`` of everything polled (which lost
  running and prefetched tasks on kill -9); requeue re-produces instead of ``seek()``-ing the
  whole partition back (which either lost the message or redelivered everything).
* One consumer group and one consumer for all queues, consumed only by the thread that drains
  events, with bounded polls; kombu's transport has a group and consumer per queue and blocks
  5 s on each empty queue, and its acks from pool threads starve behind ``poll()`` in
  confluent-kafka 2.16 (``-P threads`` hangs).
* One producer per connection with per-message delivery futures; no ``flush()`` per message.
* Fanout (`supports_fanout`) and cross-process topic/reply routing through exchange topics
  read with ``assign()``; kombu's transport has no fanout and keeps bindings per process, so
  ``celery inspect``, ``control`` and events (Flower) see nothing.
* Topics are created explicitly with ``num_partitions`` (default 4, not 1) and cached; queue
  names are mapped to legal topic names (``[A-Za-z0-9._-]``, hashed beyond 249 characters).
* Broker errors raise `KafkaConnectionError` instead of being reported as an empty queue;
  ``connection_errors`` is not empty; ``as_uri`` returns a masked URL.
* The wire format is the same (the kombu message as JSON in the record value; exchange
  records add headers ``kombu.routing_key`` and ``kombu.exchange``), but topic names of
  queues containing characters other than ``[A-Za-z0-9._-]`` differ.
* Event loop: Celery's asynloop (``implements.asynchronous``), through the fetcher's wake-up
  pipe; kombu's transport runs synloop with blocking polls.
* Idle partitions pause (``idle_after``) and paused partitions are resumed with a seek:
  librdkafka otherwise starts fetching a resumed partition only up to ~1 s later.
* INVALID_SESSION_TIMEOUT makes the consumer rejoin with a longer session (kombu's transport
  would log nothing and never consume on a broker that refuses its session).

Flower: workers (``/api/workers``) and tasks (``/api/tasks``) work; the broker/queues tab
does not (Flower accepts only AMQP and Redis URLs there). See docs/transport.md.
"""

from __future__ import annotations

import logging
import os
import weakref
from queue import Empty
from time import monotonic
from typing import Any

import confluent_kafka
from kombu.transport import TRANSPORT_ALIASES, virtual
from kombu.transport.virtual.exchange import (
    DirectExchange,
    ExchangeType,
    FanoutExchange,
    TopicExchange,
)
from kombu.utils.json import dumps

from . import TRANSPORT_PATH
from ._exchange import EXCHANGE_HEADER, ROUTING_KEY_HEADER, Binding, topic_name
from ._io import KafkaIO
from ._options import KafkaOptions
from ._url import DEFAULT_PORT, masked_uri, parse_servers
from .errors import KafkaChannelError, KafkaConnectionError

logger = logging.getLogger(__name__)

#: Connections of this process that consume work queues: the ones `worker_exiting()` tells.
_CONSUMING: weakref.WeakSet[Transport] = weakref.WeakSet()


def register_alias(*names: str) -> None:
    """Make kombu resolve `kafka://` (and `asynckafka://`) URLs to this transport."""
    from kombu.transport import _transport_cache

    for name in names or ("kafka", "asynckafka"):
        TRANSPORT_ALIASES[name] = TRANSPORT_PATH
        _transport_cache.pop(name, None)


def worker_exiting() -> None:
    """Tell this process's consuming connections that the process ends once they close.

    Their work consumers then stay in the group until the connection closes and exit without
    a LeaveGroup unless ``leave_group_on_shutdown`` (see "Guarantees"). A Celery worker calls
    it when it starts to shut down, warm or cold (``worker_shutting_down``, connected when a
    connection first consumes a work queue); other runners that consume through this
    transport and exit after closing it may call it themselves.
    """
    for transport in list(_CONSUMING):
        transport.worker_exiting()


def _on_worker_shutting_down(**_: Any) -> None:
    # Runs in the worker's signal handler (main thread): it only sets flags, takes no lock.
    worker_exiting()


def _tell_when_worker_exits(transport: Transport) -> None:
    _CONSUMING.add(transport)
    try:
        from celery.signals import worker_shutting_down
    except ImportError:  # kombu without Celery: nothing will send it
        return
    worker_shutting_down.connect(_on_worker_shutting_down, weak=False,
                                 dispatch_uid=f"{__name__}.worker_exiting")


class _RoutedExchange(ExchangeType):
    """Exchange type whose routed exchanges (`Channel._is_routed`) go through their
    exchange topic instead of kombu's in-process delivery."""

    def deliver(self, message: Any, exchange: str, routing_key: str, **kwargs: Any) -> None:
        if self.channel._is_routed(exchange):
            self.channel._put_exchange(exchange, message, routing_key)
        else:  # the exchange type after this mixin (ExchangeType itself has no deliver)
            super().deliver(message, exchange, routing_key, **kwargs)  # type: ignore[misc]


class _RoutedDirect(_RoutedExchange, DirectExchange):
    """Direct exchange; the configured reply exchanges go through their exchange topic."""


class _RoutedTopic(_RoutedExchange, TopicExchange):
    """Topic exchange; the configured event exchanges go through their exchange topic."""


class QoS(virtual.QoS):
    """Prefetch window; acks go to the consumer thread, requeue re-produces."""

    #: Never re-publish unacked messages at shutdown: their offsets were not committed, so
    #: the partition's next owner redelivers them (re-publishing would duplicate them).
    restore_at_shutdown = False

    def ack(self, delivery_tag: Any) -> None:
        """Settle a message: its offset may now be committed."""
        super().ack(delivery_tag)
        transport = self.channel.connection
        if transport is not None and transport._io is not None:
            transport._io.ack(delivery_tag)

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        """Settle a message; with requeue, produce it again first (never seek back)."""
        if requeue:
            self.channel._requeue(self._delivered[delivery_tag])
        self.ack(delivery_tag)


class Channel(virtual.Channel):
    """Kafka channel: queues are topics, exchange topics carry fanout/events/replies."""

    QoS = QoS
    supports_fanout = True
    do_restore = False
    exchange_types = {"direct": _RoutedDirect, "topic": _RoutedTopic,
                      "fanout": FanoutExchange}
    connection: Transport

    def __init__(self, connection: Transport, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self.options: KafkaOptions = connection.options

    # -- naming ------------------------------------------------------------------------------
    def _topic(self, queue: str) -> str:
        return topic_name(queue, self.options.topic_prefix)

    def _exchange_topic(self, exchange: str) -> str:
        return topic_name(exchange, self.options.topic_prefix + self.options.exchange_topic_prefix)

    def _exchange_kind(self, exchange: str) -> str:
        try:
            return str(self.state.exchanges[exchange]["type"])
        except KeyError:
            return "direct"

    def _is_routed(self, exchange: str) -> bool:
        if not exchange:
            return False
        opts = self.options
        return (exchange in opts.reply_exchanges or exchange in opts.event_exchanges
                or self._exchange_kind(exchange) == "fanout")

    @property
    def io(self) -> KafkaIO:
        return self.connection.io

    # -- publishing --------------------------------------------------------------------------
    def _send(self, topic: str, message: dict[str, Any], partitions: int, config: dict[str, str],
              headers: list[tuple[str, str | bytes | None]] | None = None) -> None:
        persistent = message.get("properties", {}).get("delivery_mode", 2) != 1
        self.io.publish(topic, dumps(message).encode(), partitions, config, headers,
                        wait=persistent and self.options.confirm_publish)

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        """Produce `message` to the queue's topic; wait for the broker if persistent."""
        self._send(self._topic(queue), message, self.options.partitions_for(queue),
                   self.options.topic_config)

    def _put_exchange(self, exchange: str, message: dict[str, Any], routing_key: str) -> None:
        headers: list[tuple[str, str | bytes | None]] = [
            (ROUTING_KEY_HEADER, (routing_key or "").encode()),
            (EXCHANGE_HEADER, exchange.encode())]
        self._send(self._exchange_topic(exchange), message, 1,
                   self.options.exchange_topic_config, headers)

    def _put_fanout(self, exchange: str, message: dict[str, Any], routing_key: str,
                    **kwargs: Any) -> None:
        """Produce once to the fanout exchange's topic."""
        self._put_exchange(exchange, message, routing_key)

    def _requeue(self, message: virtual.Message) -> None:
        delivery = self.io.delivery(message.delivery_tag)
        if delivery is None:
            return  # exchange copy (at-most-once) or partition revoked: nothing to requeue
        payload = message.serializable()
        payload["redelivered"] = True
        payload["properties"].setdefault("delivery_info", {})["redelivered"] = True
        self.io.resend(delivery.key[0], dumps(payload).encode())

    # -- bindings and queues -----------------------------------------------------------------
    def _queue_bind(self, exchange: str, routing_key: str, pattern: Any, queue: str) -> None:
        if not self._is_routed(exchange):
            return
        kind = self._exchange_kind(exchange)
        if exchange in self.options.event_exchanges:
            kind = "topic"
        self.io.bind(Binding(queue, exchange, kind, routing_key or ""),
                     self._exchange_topic(exchange))

    def _new_queue(self, queue: str, **kwargs: Any) -> None:
        # Topics are created on first publish or consume: declared queues that turn out to be
        # bound to an exchange topic (pidbox, replies, events) never get a topic of their own.
        return None

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        return self.io.is_bound(queue) or self.io.admin.partitions(self._topic(queue)) is not None

    def _size(self, queue: str) -> int:
        io = self.io
        if io.is_bound(queue):
            return io.inbox.size(queue)
        if io.admin.partitions(self._topic(queue)) is None:
            return 0
        return io.admin.backlog(self.options.group_id, self._topic(queue))

    def _purge(self, queue: str) -> int:
        io = self.io
        if io.is_bound(queue):
            return len(io.inbox.remove(lambda rec: True, queue))
        return io.admin.skip_to_end(self.options.group_id, self._topic(queue))

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        io = self.io
        if io.is_bound(queue):
            io.unbind(queue)
            return
        io.cancel_queue(queue)
        io.admin.delete(self._topic(queue))

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        io = self.io
        io.check()
        if not io.is_bound(queue) and queue not in io.work_queues:
            self._start_work_queue(queue)
        record = io.inbox.pop(queue)
        if record is None:
            raise Empty()
        return record.payload

    def _start_work_queue(self, queue: str) -> None:
        _tell_when_worker_exits(self.connection)
        self.io.consume_queue(queue, self._topic(queue))

    def basic_consume(self, queue: str, no_ack: bool, callback: Any, consumer_tag: str,
                      **kwargs: Any) -> Any:
        """Consume `queue`: exchange-bound queues are already assigned, others join the group."""
        result = super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)
        self.connection.queue_channels[queue] = self
        if not self.io.is_bound(queue) and queue not in self.io.work_queues:
            self._start_work_queue(queue)
        return result

    def basic_cancel(self, consumer_tag: str) -> Any:
        """Stop consuming; a work queue leaves the subscription (one rebalance)."""
        queue = self._tag_to_queue.get(consumer_tag)
        result = super().basic_cancel(consumer_tag)
        if queue is not None and self.connection._io is not None:
            self.connection.queue_channels.pop(queue, None)
            self.io.cancel_queue(queue)
        return result


class Transport(virtual.Transport):
    """Kafka transport: one consumer thread, one producer, one admin client per connection."""

    Channel = Channel
    default_port = DEFAULT_PORT  # type: ignore[assignment]
    driver_type = "kafka"
    driver_name = "confluent-kafka"
    can_parse_url = True  # we parse kafka://h1:p1,h2:p2 ourselves (several brokers)
    polling_interval = 0.0

    implements = virtual.Transport.implements.extend(
        asynchronous=True,
        exchange_type=frozenset(["direct", "topic", "fanout"]),
        heartbeats=False,
    )
    connection_errors = (KafkaConnectionError,)
    recoverable_connection_errors = (KafkaConnectionError,)
    channel_errors = (KafkaChannelError,)
    recoverable_channel_errors = ()

    def __init__(self, client: Any, **kwargs: Any) -> None:
        self.options = KafkaOptions.from_transport_options(client.transport_options or {})
        self.bootstrap, user, password = parse_servers(client)
        if user:
            self.options.kafka_config.setdefault("sasl.username", user)
            self.options.kafka_config.setdefault("sasl.password", password or "")
        self._io: KafkaIO | None = None
        self.queue_channels: dict[str, Channel] = {}
        self._rotation = 0
        self._loop: Any = None
        self._exiting = False
        super().__init__(client, **kwargs)

    @property
    def io(self) -> KafkaIO:
        """This connection's Kafka clients (rebuilt in a forked child)."""
        io = self._io
        if io is None or io.pid != os.getpid():
            if io is not None:
                io.close()  # only parks it: handles from the parent are never touched
            io = self._io = KafkaIO(self.options, self.bootstrap)
            if self._exiting:
                io.worker_exiting()
        return io

    def worker_exiting(self) -> None:
        """The process ends once this connection closes (module function `worker_exiting`)."""
        self._exiting = True
        io = self._io
        if io is not None and io.pid == os.getpid():
            io.worker_exiting()

    def driver_version(self) -> str:
        """confluent-kafka's version."""
        return str(confluent_kafka.version()[0])

    def as_uri(self, uri: str, include_password: bool = False, mask: str = "**") -> str:
        """The broker URL, password masked unless asked for."""
        return masked_uri(uri, include_password, mask)

    def establish_connection(self) -> Any:
        """Check the broker answers metadata requests (raises KafkaConnectionError)."""
        self.io.admin.ping()
        return super().establish_connection()

    def close_connection(self, connection: Any) -> None:
        """Close channels, commit the acked prefix, leave the group, flush the producer."""
        try:
            super().close_connection(connection)
        finally:
            io, self._io = self._io, None
            if io is not None:
                if io.pid == os.getpid():
                    self._unregister(io)
                io.close()

    def drain_events(  # type: ignore[override]
            self, connection: Any, timeout: float | None = None) -> None:
        """Deliver fetched messages; wait for the fetcher's wake-up up to `timeout`."""
        io = self.io
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            io.wakeup.clear()  # before looking: a record put after this wakes the wait below
            io.check()
            if self._deliver_buffered(io):
                return
            remaining = None if deadline is None else deadline - monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError()
            io.wakeup.wait(remaining)

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        """Celery's event loop: deliver when the fetcher signals, and after every tick (an
        ack handled in the loop may have opened the prefetch window)."""
        io = self.io
        loop.add_reader(io.wakeup.fileno(), self._on_readable, io)
        loop.on_tick.add(self._on_tick)
        self._loop = loop

    def _on_readable(self, io: KafkaIO) -> None:
        if io is not self._io:
            return  # a closed connection's pipe
        io.wakeup.clear()
        io.check()
        self._deliver_buffered(io)

    def _on_tick(self) -> None:
        io = self._io
        if io is not None and io.pid == os.getpid():
            self._deliver_buffered(io)

    def _unregister(self, io: KafkaIO) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.on_tick.discard(self._on_tick)
            if not io.wakeup.closed:
                loop.remove_reader(io.wakeup.fileno())

    def _deliver_buffered(self, io: KafkaIO) -> int:
        """Hand waiting records to kombu, round-robin over queues, within prefetch windows."""
        queues = [q for q in io.inbox.ready() if q in self._callbacks]
        if not queues:
            return 0
        self._rotation = (self._rotation + 1) % len(queues)
        queues = queues[self._rotation:] + queues[:self._rotation]
        delivered = 0
        progress = True
        while progress:  # one message per queue per round (fairness)
            progress = False
            for queue in queues:
                callback = self._callbacks.get(queue)
                channel = self.queue_channels.get(queue)
                if callback is None or channel is None or not channel.qos.can_consume():
                    continue
                record = io.inbox.pop(queue)
                if record is None:
                    continue
                callback(record.payload)
                delivered += 1
                progress = True
        return delivered


__all__ = ["TRANSPORT_PATH", "Channel", "QoS", "Transport", "register_alias", "worker_exiting"]
