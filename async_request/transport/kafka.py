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
* ``replication_factor`` (0) and ``topic_config`` (``{}``): for created topics; 0 = the
  number of brokers in the metadata, at most 3 (1 on a single node or tansu, 3 on a cluster of
  3 or more), -1 = the broker's ``default.replication.factor`` (often 1: a cluster loses what
  its dead broker held). ``exchange_topic_config`` (``{}``) for exchange topics
  (e.g. ``{"retention.ms": "600000"}``).
* ``min_insync_replicas`` (0): the ``min.insync.replicas`` of created topics, so a publish
  (acks all) is acknowledged only once that many replicas have it; 0 = 2 on a
  replication factor of 3 or more (one broker may die, nothing acknowledged is lost), else
  the broker's setting. ``min.insync.replicas`` in ``topic_config`` wins.
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
* ``max_message_bytes`` (1000000): the producer's ``message.max.bytes``: a larger message
  raises `MessageTooLarge` (a channel error: never retried) at once; keep it at or below the
  broker's ``message.max.bytes`` (Apache Kafka: 1048588), whose refusal raises it too.
* ``confirm_publish`` (True): wait for the acknowledgement of persistent messages (tasks).
  Transient messages (events, remote control) never wait; failures are logged.
* ``connect_timeout`` (5.0 s): metadata, topic creation and watermark requests.
* ``unreachable_timeout`` (0.5 s): once this process has seen that no broker is up
  (librdkafka reports all brokers down, or a metadata request failed), publishes and metadata
  requests wait at most this long (a publish stuck in the queue is purged, never sent late)
  until a delivery or a metadata request succeeds again: a web app answers 503 within about
  a second while the cluster is away, not after ``publish_timeout``. Reconnects back off to
  1 s at most (``reconnect.backoff.max.ms``), so a returning broker is seen within ~1 s.
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
* ``offset_gap_wait`` (1.0 s): a work record whose offset jumps past the next one expected
  is held back and the partition fetched again from the missing offset (tansu can make a
  record visible before an earlier one: `_gaps.py`); a gap that stays this long is accepted
  with a warning.
* ``leave_group_on_shutdown`` (False): a stopping Celery worker sends no LeaveGroup (unless
  ``detect_broker`` found Apache Kafka); the broker drops it after its session
  (``session.timeout.ms``), as after a SIGKILL, and its partitions move then. True: it always
  leaves once its group is not rebalancing, so its partitions move at once; safe on Apache
  Kafka, but on tansu a LeaveGroup that races a join can wedge the group for good
  (docs/transport.md, Known issues), and a 202 must reach a result.
* ``detect_broker`` (True): before the first join, ask the brokers for their group settings
  (DescribeConfigs). A broker that reports ``group.min.session.timeout.ms`` (Apache Kafka) is
  joined with that minimum as the session when it is longer than ours (instead of a refused
  join and a second one), and a stopping worker leaves its group (its partitions move at once
  instead of after the session). A broker that reports nothing (tansu; a managed Kafka whose
  ACLs refuse DescribeConfigs) keeps the defaults. False: the defaults everywhere.
* ``event_exchanges`` (``["celeryev"]``): topic exchanges routed through exchange topics.
* ``reply_exchanges`` (``["reply.celery.pidbox"]``): direct exchanges routed the same way
  (replies to remote control go to a queue only the client process has bound).
* ``polling_interval``: ignored (nothing polls on a timer; the fetcher wakes the loop).

librdkafka defaults set here (tansu and Kafka): ``session.timeout.ms`` 1500 (tansu parks each
JoinGroup for session/2, 1 s at least; with 1.5 s a killed worker's replacement joins after
the dead member is gone and leads at once), ``heartbeat.interval.ms`` 500, ``group.protocol``
classic, assignment ``range,roundrobin``, ``fetch.wait.max.ms`` 5 (tansu answers an empty
fetch only after about half of it; 0 never returns data and is rejected), ``linger.ms`` 0,
``acks`` all, ``socket.nagle.disable``. On a broker that reports its
``group.min.session.timeout.ms`` (``detect_broker``: Apache Kafka, 6000 by default) the work
consumer joins with that minimum, fetches with ``fetch.wait.max.ms`` 100 unless configured
(Kafka holds an empty fetch until a record arrives, so 5 ms only multiplies empty fetches:
15-20 % of a core of the broker per worker), and reads metadata every 30 s
(``topic.metadata.refresh.interval.ms``; librdkafka's 5 min elsewhere), so partitions
added to a live topic are consumed within 30 s; publishers read a topic's partition count
again every 30 s and put records on its partitions round-robin. A
broker that refuses the session anyway answers INVALID_SESSION_TIMEOUT; the consumer then
rejoins with the broker's minimum (DescribeConfigs) or 6000, 10000, 30000, 45000 in turn,
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
  ``publish_timeout``, or ``unreachable_timeout`` once no broker is known to be up.
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
  other reason leaves the group once it is not rebalancing. So does a cold shutdown
  (SIGQUIT, a second Ctrl-C): Celery cancels the task queues before it sends that signal,
  and the member unsubscribes. A rebalance that lasts far longer than normal is logged as
  an error.

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
from time import monotonic
from typing import Any

import confluent_kafka
from kombu.transport import TRANSPORT_ALIASES, virtual

from . import TRANSPORT_PATH
from ._channel import Channel, QoS
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


class Transport(virtual.Transport):
    """Kafka transport: one consumer thread, one producer, one admin client per connection."""

    Channel = Channel
    default_port = DEFAULT_PORT  # type: ignore[assignment]
    driver_type = "kafka"
    driver_name = "confluent-kafka"
    #: Its channels have `put_async`: async_request.dispatch publishes from the event loop.
    publishes_from_loop = True
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

    def consumes_work(self) -> None:
        """This connection consumes a work queue: `worker_exiting()` tells it when the worker
        process exits (through Celery's `worker_shutting_down`, connected here)."""
        _CONSUMING.add(self)
        try:  # imported here: Celery is optional for a kombu transport
            from celery.signals import worker_shutting_down
        except ImportError:  # kombu without Celery: nothing will send it
            return
        worker_shutting_down.connect(_on_worker_shutting_down, weak=False,
                                     dispatch_uid=f"{__name__}.worker_exiting")

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
