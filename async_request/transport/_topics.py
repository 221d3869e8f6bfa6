# mypy: disable-error-code="no-untyped-call"
"""Topic administration: explicit creation with a metadata cache, sizes, purge, delete.

Topics are created explicitly (never by broker auto-creation, which picks the broker's default
partition count and replication and races the first produce), replicated to suit the cluster
(`replication_for`), and remembered, so a declare costs one metadata
round trip per topic and process, not one full `list_topics()` per declare as in kombu's
confluentkafka transport.

What is remembered is dropped when the cluster was away since (`Health.outages`): a broker
may come back without its topics (tansu keeps them in memory; a cluster rebuilt from
scratch), and a produce to a topic it no longer knows was acknowledged by tansu without
making the topic visible, so no consumer ever got the message. The first declare after an
outage asks again and creates what is missing.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ClusterMetadata,
    ConfigResource,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from ._health import Health
from ._options import METADATA_REFRESH_MS
from .errors import KafkaChannelError, KafkaConnectionError

logger = logging.getLogger(__name__)


def _error_code(exc: BaseException) -> int | None:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return int(exc.args[0].code())
    return None


#: The most replicas `replication_for` chooses by itself; with 3, min.insync.replicas 2
#: lets one broker die while publishes go on and nothing acknowledged is lost.
AUTO_REPLICATION_MAX = 3


def replication_for(brokers: int, replication: int, min_insync: int,
                    config: dict[str, str]) -> tuple[int, dict[str, str]]:
    """The replication factor and topic config of a new topic on `brokers` live brokers.

    `replication` 0: as many replicas as brokers, at most `AUTO_REPLICATION_MAX` (so 1 on a
    single node or tansu); -1: the broker's default; else as given. `min_insync` 0: 2 when
    there are 3 replicas or more (acks=all then waits for two copies and one broker may be
    lost), else left to the broker; `min.insync.replicas` in `config` always wins.
    """
    if replication == 0:
        replication = max(1, min(brokers, AUTO_REPLICATION_MAX))
    if "min.insync.replicas" in config:
        return replication, config
    if min_insync == 0 and replication >= 3:
        min_insync = 2
    if min_insync:
        if replication > 0 and min_insync > replication:
            raise KafkaChannelError(
                f"transport option 'min_insync_replicas' is {min_insync}, more than the "
                f"replication factor {replication}: no publish could ever be acknowledged")
        return replication, {**config, "min.insync.replicas": str(min_insync)}
    return replication, config


class TopicAdmin:
    """Creates and inspects topics; thread-safe; caches partition counts."""

    def __init__(self, config: dict[str, Any], timeout: float, health: Health | None = None,
                 unreachable_timeout: float | None = None) -> None:
        self._admin = AdminClient(config)
        self._connect_timeout = timeout
        self._unreachable_timeout = unreachable_timeout or timeout
        self.health = health or Health()
        self._known: dict[str, int] = {}
        self._known_since_outage = self.health.outages  # `_known` holds what was seen after it
        #: When each cached count was read: counts older than `METADATA_REFRESH_MS` (or the
        #: configured `topic.metadata.refresh.interval.ms`) are read again, so publishing
        #: spreads over partitions added to a live topic.
        self._read_at: dict[str, float] = {}
        self._max_age = int(config.get("topic.metadata.refresh.interval.ms",
                                       METADATA_REFRESH_MS)) / 1000
        self._lock = threading.Lock()

    @property
    def _timeout(self) -> float:
        # While the cluster is known to be away, a request waits only for a quick answer.
        return self._unreachable_timeout if self.health.down else self._connect_timeout

    def _metadata(self, topic: str | None = None) -> ClusterMetadata:
        # librdkafka sends a metadata request to one broker and fails it with _TRANSPORT when
        # that broker's connection breaks: a node of a cluster that died or is restarting
        # (seen: a 503 while two of three brokers served). Ask again, another broker answers;
        # for `unreachable_timeout` at most, so a cluster that is away still fails fast.
        deadline = time.monotonic() + min(self._timeout, self._unreachable_timeout)
        while True:
            try:
                return self._admin.list_topics(topic=topic, timeout=self._timeout)
            except KafkaException as exc:
                if _error_code(exc) != KafkaError._TRANSPORT or time.monotonic() >= deadline:
                    raise
                logger.debug("kafka metadata: %s; asking again", exc)
                time.sleep(0.05)

    def ping(self) -> None:
        """Raise KafkaConnectionError unless the cluster answers a metadata request (at once
        when one failed less than `unreachable_timeout` ago)."""
        if self.health.failed_within(self._unreachable_timeout):
            raise KafkaConnectionError("kafka broker unreachable (a metadata request failed "
                                       f"under {self._unreachable_timeout:g}s ago)")
        try:
            self._metadata()
        except KafkaException as exc:
            self.health.mark_down()
            raise KafkaConnectionError(f"kafka broker unreachable: {exc}") from exc
        self.health.mark_up()

    def _drop_if_stale(self) -> None:
        """Forget every topic when an outage began since they were seen (module docstring)."""
        outages = self.health.outages
        if outages != self._known_since_outage:
            with self._lock:
                self._known.clear()
                self._read_at.clear()
                self._known_since_outage = outages

    def cached(self, topic: str) -> int | None:
        """Partition count of `topic` if the cache knows it and it is fresh (no request is
        sent), else None."""
        if self.health.outages != self._known_since_outage:
            return None
        known = self._known.get(topic)
        if known is not None and time.monotonic() - self._read_at.get(topic, 0.0) < \
                self._max_age:
            return known
        return None

    def partitions(self, topic: str) -> int | None:
        """Partition count of `topic` (cached), or None when it does not exist."""
        self._drop_if_stale()
        fresh = self.cached(topic)
        if fresh is not None:
            return fresh
        known = self._known.get(topic)
        if known is not None:
            try:  # stale: read it again (partitions may have been added)
                return self._read_partitions(topic) or known
            except KafkaConnectionError:  # the broker is away: the count we know still holds
                return known
        return self._read_partitions(topic)

    def _read_partitions(self, topic: str) -> int | None:
        try:
            metadata = self._metadata(topic)
        except KafkaException as exc:
            self.health.mark_down()
            raise KafkaConnectionError(f"kafka metadata for {topic} failed: {exc}") from exc
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            return None
        count = len(found.partitions)
        with self._lock:
            self._known[topic] = count
            self._read_at[topic] = time.monotonic()
        return count

    def ensure(self, topic: str, partitions: int, replication: int,
               config: dict[str, str], min_insync: int = 0) -> int:
        """Create `topic` unless it exists; return its partition count.

        `replication` 0 and `min_insync` 0 are chosen from the cluster (`replication_for`).
        """
        # Metadata first (the cached count, read again when stale): after `forget` (a failed
        # publish) the topic is there, and a CreateTopics needs the active KRaft controller,
        # which may be the broker that just died ("Timed out waiting for controller": a 503
        # while the topic served).
        known = self.partitions(topic)
        if known is not None:
            return known
        brokers = self._brokers() if replication == 0 else 0
        replication, config = replication_for(brokers, replication, min_insync, config)
        new = NewTopic(topic, num_partitions=partitions, replication_factor=replication,
                       config=config)
        futures = self._admin.create_topics(
            [new], operation_timeout=self._timeout, request_timeout=self._timeout)
        try:
            futures[topic].result(timeout=self._timeout + 1)
        except KafkaException as exc:
            code = _error_code(exc)
            if code != KafkaError.TOPIC_ALREADY_EXISTS:
                if code in (KafkaError._TRANSPORT, KafkaError._TIMED_OUT,
                            KafkaError._ALL_BROKERS_DOWN, KafkaError.REQUEST_TIMED_OUT):
                    self.health.mark_down()
                    raise KafkaConnectionError(f"creating topic {topic}: {exc}") from exc
                raise KafkaChannelError(f"creating topic {topic}: {exc}") from exc
        except TimeoutError as exc:
            self.health.mark_down()
            raise KafkaConnectionError(f"creating topic {topic} timed out") from exc
        deadline = time.monotonic() + self._timeout
        while True:  # wait until metadata shows the topic before the first produce
            count = self.partitions(topic)
            if count is not None:
                return count
            if time.monotonic() > deadline:
                raise KafkaConnectionError(f"topic {topic} not visible after creation")
            time.sleep(0.02)

    def _brokers(self) -> int:
        try:
            return len(self._metadata().brokers)
        except KafkaException as exc:
            self.health.mark_down()
            raise KafkaConnectionError(f"kafka metadata (brokers) failed: {exc}") from exc

    def session_timeout_minimum(self) -> int | None:
        """The brokers' `group.min.session.timeout.ms` (the largest), or None when they do
        not say (tansu answers DescribeConfigs with no entries; ACLs may refuse it)."""
        try:
            brokers = self._metadata().brokers
            futures = self._admin.describe_configs(
                [ConfigResource(ResourceType.BROKER, str(b)) for b in brokers],
                request_timeout=self._timeout)
        except KafkaException as exc:
            logger.debug("kafka: describe broker configs: %s", exc)
            return None
        found: int | None = None
        for future in futures.values():
            try:
                entries = future.result(timeout=self._timeout + 1)
            except (KafkaException, TimeoutError) as exc:
                logger.debug("kafka: describe broker configs: %s", exc)
                continue
            entry = entries.get("group.min.session.timeout.ms")
            if entry is not None and str(entry.value).isdigit():
                found = max(found or 0, int(entry.value))
        return found

    def forget(self, topic: str) -> None:
        """Drop `topic` from the cache (it may have vanished, e.g. a broker restart)."""
        with self._lock:
            self._known.pop(topic, None)
            self._read_at.pop(topic, None)

    def delete(self, topic: str) -> None:
        """Delete `topic` (missing topics are fine)."""
        self.forget(topic)
        futures = self._admin.delete_topics([topic], operation_timeout=self._timeout)
        try:
            futures[topic].result(timeout=self._timeout + 1)
        except KafkaException as exc:
            if _error_code(exc) != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise KafkaChannelError(f"deleting topic {topic}: {exc}") from exc

    def ends(self, topic: str, count: int) -> dict[int, int]:
        """High watermark of each of the `count` partitions of `topic`."""
        request = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(count)}
        try:
            result = self._admin.list_offsets(request, request_timeout=self._timeout)
            return {tp.partition: f.result(timeout=self._timeout).offset
                    for tp, f in result.items()}
        except (KafkaException, TimeoutError) as exc:
            raise KafkaConnectionError(f"kafka end offsets of {topic}: {exc}") from exc

    def _committed(self, group: str, topic: str, count: int) -> dict[int, int]:
        request = [ConsumerGroupTopicPartitions(
            group, [TopicPartition(topic, p) for p in range(count)])]
        futures = self._admin.list_consumer_group_offsets(
            request, request_timeout=self._timeout)
        answer = futures[group].result(timeout=self._timeout)
        return {tp.partition: tp.offset for tp in answer.topic_partitions
                if tp.error is None and tp.offset >= 0}

    def backlog(self, group: str, topic: str) -> int:
        """Messages not yet committed by `group` (an estimate: in-flight ones count)."""
        count = self.partitions(topic)
        if not count:
            return 0
        try:
            ends = self.ends(topic, count)
            committed = self._committed(group, topic, count)
        except KafkaException as exc:
            raise KafkaConnectionError(f"kafka offsets of {topic} failed: {exc}") from exc
        except TimeoutError as exc:  # a future's result(timeout=...), e.g. no coordinator yet
            raise KafkaConnectionError(f"kafka offsets of {topic} timed out") from exc
        return sum(max(0, end - committed.get(p, 0)) for p, end in ends.items())

    def skip_to_end(self, group: str, topic: str) -> int:
        """Commit `group` to the end of `topic` (purge); return how many were skipped.

        Kafka refuses this while the group has active members.
        """
        count = self.partitions(topic)
        if not count:
            return 0
        skipped = self.backlog(group, topic)
        ends = self.ends(topic, count)
        request = [ConsumerGroupTopicPartitions(
            group, [TopicPartition(topic, p, off) for p, off in ends.items()])]
        try:
            futures = self._admin.alter_consumer_group_offsets(request)
            futures[group].result(timeout=self._timeout)
        except KafkaException as exc:
            raise KafkaChannelError(f"purging {topic} for group {group}: {exc}") from exc
        return skipped
