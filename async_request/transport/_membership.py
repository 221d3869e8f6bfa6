# mypy: disable-error-code="no-untyped-call"
"""The work consumer's membership of its consumer group: join, rebalance, rejoin, leave.

`GroupMember` owns the work consumer (one member of group `group_id`) and every call that
changes its membership: `subscribe()`, the rebalance callbacks librdkafka runs inside
`poll()`, the rejoin with a longer session after INVALID_SESSION_TIMEOUT, and the way out at
shutdown. The decisions behind them (which session, when a rebalance is stuck, why leaving
mid-rebalance is dangerous on tansu) are in `_group.py`. The fetcher thread is its only
caller; it polls the consumer and hands the member callables for what belongs to the fetcher
(applying queued acks, taking over new partitions, forgetting lost ones).
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from time import monotonic
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from ._group import BrokerGroups, RebalanceWatch, longer_session, stall_limit
from ._health import health_for
from ._offsets import PartitionKey
from ._options import HELD_FETCH_WAIT_MS, METADATA_REFRESH_MS, KafkaOptions

logger = logging.getLogger(__name__)

#: How often a member without partitions looks for its topics after an outage.
_TOPIC_LOOK_SECONDS = 2.0


class GroupMember:
    """The work consumer as a member of consumer group `options.group_id`."""

    def __init__(self, options: KafkaOptions, bootstrap: str,
                 session_minimum: Callable[[], int | None], *,
                 apply_acks: Callable[[], None],
                 gained: Callable[[set[PartitionKey]], None],
                 lost: Callable[[set[PartitionKey]], None]) -> None:
        self.options = options
        self.bootstrap = bootstrap
        #: The work consumer (None before the first subscribe and after `close()`).
        self.consumer: Consumer | None = None
        self.topics: tuple[str, ...] = ()  # subscribed
        self.assigned: set[PartitionKey] = set()
        #: The process ends once this connection closes (a Celery worker shutting down; set
        #: from any thread): stay in the group until `close()`, which leaves only with
        #: `leave_on_exit`.
        self.exiting = False
        self.session_rejected = False  # INVALID_SESSION_TIMEOUT seen by the fetcher
        self._session_minimum = session_minimum
        self._apply_acks = apply_acks
        self._gained = gained
        self._lost = lost
        self._session_ms = int(options.consumer_config("")["session.timeout.ms"])
        self._watch = RebalanceWatch(stall_limit(self._session_ms))
        #: Whether an exiting worker sends a LeaveGroup: `leave_group_on_shutdown`, or what
        #: `detect_broker` found before the first join (`_detect`).
        self.leave_on_exit = options.leave_group_on_shutdown
        self._detected = not options.detect_broker
        self._metadata_refresh_ms: int | None = None  # set for a broker that adds partitions
        #: The broker holds an empty fetch until a record arrives (Apache Kafka, `_detect`): the
        #: work consumer waits HELD_FETCH_WAIT_MS per fetch instead of the tansu default.
        self.holds_fetches = False
        #: The broker's groups survive a LeaveGroup mid-rebalance (Apache Kafka, `_detect`):
        #: leave without first waiting for the rebalance to end.
        self._leave_is_safe = False
        #: The cluster's outages (`Health.outages`) when this member last held partitions or
        #: rejoined for lost topics; the next look for them (`_rejoin_for_lost_topics`).
        self._outages_seen = health_for(bootstrap).outages
        self._away = False  # the work consumer itself reported that no broker is up
        self._next_topic_look = 0.0

    def subscribe(self, topics: tuple[str, ...]) -> None:
        """Be subscribed to exactly `topics` (sorted); an empty tuple unsubscribes."""
        if topics == self.topics:
            return
        consumer = self._consumer()
        if topics:
            self._join(consumer, topics)
        elif self.exiting:
            # a stopping worker stays in the group (and keeps serving rebalances) until
            # `close()`, which leaves it or, while it rebalances, abandons it; what it still
            # fetches is dropped, not acked, and redelivered to the next owner
            return
        else:
            if not self._leave_is_safe and not self._settle_before_leaving(consumer):
                self._warn_leaving_mid_rebalance()
            consumer.unsubscribe()
            self._watch.settled()
        self.topics = topics

    def _join(self, consumer: Consumer, topics: tuple[str, ...]) -> None:
        """Subscribe `consumer` to `topics` with this member's rebalance callbacks."""
        consumer.subscribe(list(topics), on_assign=self._on_assign,
                           on_revoke=self._on_revoke, on_lost=self._on_lost)
        self._watch.joining(monotonic())

    def check(self) -> None:
        """After each poll: rejoin after a refused session or for topics back after an
        outage; report a rebalance that hangs."""
        if self.session_rejected:
            self.session_rejected = False
            self._rejoin_with_longer_session()
        self._rejoin_for_lost_topics()
        stuck = self._watch.overdue(monotonic())
        if stuck is not None:
            logger.error(
                "kafka: consumer group %r has been rebalancing for %.0f s without assigning "
                "partitions to this worker (normal: a few seconds); nothing is lost, but "
                "nothing is consumed. On tansu this is a known broker bug (a group leader "
                "that left during a rebalance stays leader; docs/transport.md, 'Known "
                "issues'): restart the broker or delete the group.",
                self.options.group_id, stuck)

    def _rejoin_for_lost_topics(self) -> None:
        """A member that rejoined while the cluster was back without its topics (tansu started
        again, memory storage) holds no partition, and librdkafka does not rebalance when the
        topics are created again (measured: none of 4 partitions within 45 s, list_topics or
        not; assigned 1.1 s after a new subscribe). So after an outage, a member without
        partitions looks every `_TOPIC_LOOK_SECONDS` whether its topics exist and, once they
        do, subscribes anew, once per outage (a standby of a group with more members than
        partitions rejoins once, then waits as before)."""
        work = self.consumer
        if work is None or not self.topics or self.assigned or self._watch.rebalancing:
            return
        outages = health_for(self.bootstrap).outages
        now = monotonic()
        if (outages == self._outages_seen and not self._away) or now < self._next_topic_look:
            return
        self._next_topic_look = now + _TOPIC_LOOK_SECONDS
        try:
            metadata = work.list_topics(timeout=1.0)
        except KafkaException as exc:
            logger.debug("kafka: looking for lost topics: %s", exc)
            return
        found = metadata.topics
        if not all(t in found and found[t].error is None and found[t].partitions
                   for t in self.topics):
            return
        self._outages_seen, self._away = outages, False
        logger.info("kafka: topics %s exist again after the cluster was away; group %r "
                    "member rejoins", ", ".join(self.topics), self.options.group_id)
        work.unsubscribe()
        self._join(work, self.topics)

    def close(self) -> None:
        """Leave the group and close the consumer, or, when the process exits and may not
        leave, abandon the member (`_abandon`). Acks queued until then are applied first."""
        work = self.consumer
        if work is None:
            return
        self._apply_acks()
        stay = bool(self.topics) and not self._may_leave(work)
        self._apply_acks()
        self.consumer = None
        if stay and self.exiting:
            self._abandon(work)
        else:
            if stay:
                self._warn_leaving_mid_rebalance()
            work.close()  # librdkafka commits the stored (acked) positions, leaves the group

    # -- the consumer and its callbacks --------------------------------------------------------
    def _consumer(self) -> Consumer:
        if self.consumer is None:
            self._detect()
            self.consumer = Consumer({**self._consumer_config(), "error_cb": self._on_error})
        return self.consumer

    def _consumer_config(self) -> dict[str, Any]:
        """The work consumer's config with what `_detect` chose for the broker."""
        config = self.options.consumer_config(self.bootstrap)
        config["session.timeout.ms"] = self._session_ms  # may have grown after a refusal
        if self._metadata_refresh_ms is not None:
            config["topic.metadata.refresh.interval.ms"] = self._metadata_refresh_ms
        if self.holds_fetches:
            config["fetch.wait.max.ms"] = HELD_FETCH_WAIT_MS
        return config

    def _detect(self) -> None:
        """Once, before the first join: ask the brokers for their group settings and pick the
        session, the shutdown behaviour and the metadata refresh for them (`BrokerGroups`).
        A broker that cannot be asked now (down, ACLs) counts as one that reports nothing."""
        if self._detected:
            return
        self._detected = True
        groups = BrokerGroups(self._session_minimum())
        if not self.options.session_configured:
            self._session_ms = groups.first_session(self._session_ms)
            self._watch.stall_after = stall_limit(self._session_ms)
        self.leave_on_exit = groups.leaves_on_shutdown(self.options.leave_group_on_shutdown)
        self._leave_is_safe = groups.reports_group_config
        if groups.reports_group_config and not self.options.metadata_refresh_configured:
            # Apache Kafka can add partitions to a live topic: rebalance onto them within 30 s
            self._metadata_refresh_ms = METADATA_REFRESH_MS
        self.holds_fetches = groups.holds_fetches and not self.options.fetch_wait_configured
        logger.info("kafka: group %r joins with session.timeout.ms=%d and fetch.wait.max.ms=%s; "
                    "a stopping worker %s (the broker %s its group settings)",
                    self.options.group_id, self._session_ms,
                    HELD_FETCH_WAIT_MS if self.holds_fetches
                    else self.options.consumer_config("")["fetch.wait.max.ms"],
                    "leaves the group" if self.leave_on_exit else "does not leave the group",
                    "reports" if groups.reports_group_config else "does not report")

    def _on_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self._away = True  # an outage, even in a process that never publishes
        logger.warning("kafka consumer: %s", error)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        self.assigned |= keys
        if keys:
            self._outages_seen, self._away = health_for(self.bootstrap).outages, False
        self._gained(keys)
        try:  # librdkafka keeps a partition's pause across revoke and re-assign
            consumer.resume(partitions)
        except KafkaException as exc:
            logger.debug("kafka: resume on assign: %s", exc)
        self._watch.settled()
        self._log_partitions()

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

    def _forget(self, partitions: list[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        self.assigned -= keys
        self._lost(keys)
        self._log_partitions()

    def _log_partitions(self) -> None:
        # at INFO: which worker holds which partition is what an operator (and
        # bench/scaleout.py on tansu, whose DescribeGroups lists no members) needs to see
        logger.info("kafka: partitions of this member of group %r: %s", self.options.group_id,
                    " ".join(f"{t}[{p}]" for t, p in sorted(self.assigned)) or "none")

    # -- session -------------------------------------------------------------------------------
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
        work, self.consumer = self.consumer, None
        if work is not None:
            work.close()  # never joined: no LeaveGroup, returns at once
        topics, self.topics = self.topics, ()
        self.subscribe(topics)

    # -- leaving -------------------------------------------------------------------------------
    def _may_leave(self, work: Consumer) -> bool:
        """Whether this member may send its LeaveGroup now: never from an exiting worker
        unless `leave_on_exit`; on a broker not known to be safe (tansu), only once its group
        is not rebalancing."""
        if self.exiting and not self.leave_on_exit:
            return False
        return self._leave_is_safe or self._settle_before_leaving(work)

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
        logger.log(logging.INFO if not self.leave_on_exit else logging.WARNING,
                   "kafka: not leaving group %r (it rebalances, or leave_group_on_shutdown is "
                   "off): the broker drops this member after its session (%d ms)",
                   self.options.group_id, self._session_ms)
