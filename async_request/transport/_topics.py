# mypy: disable-error-code="no-untyped-call"
"""Topic administration: explicit creation with a metadata cache, sizes, purge, delete.

Topics are created explicitly (never by broker auto-creation, which picks the broker's default
partition count and races the first produce) and remembered, so a declare costs one metadata
round trip per topic and process, not one full `list_topics()` per declare as in kombu's
confluentkafka transport.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
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


class TopicAdmin:
    """Creates and inspects topics; thread-safe; caches partition counts."""

    def __init__(self, config: dict[str, Any], timeout: float, health: Health | None = None,
                 unreachable_timeout: float | None = None) -> None:
        self._admin = AdminClient(config)
        self._connect_timeout = timeout
        self._unreachable_timeout = unreachable_timeout or timeout
        self.health = health or Health()
        self._known: dict[str, int] = {}
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

    def ping(self) -> None:
        """Raise KafkaConnectionError unless the cluster answers a metadata request (at once
        when one failed less than `unreachable_timeout` ago)."""
        if self.health.failed_within(self._unreachable_timeout):
            raise KafkaConnectionError("kafka broker unreachable (a metadata request failed "
                                       f"under {self._unreachable_timeout:g}s ago)")
        try:
            self._admin.list_topics(timeout=self._timeout)
        except KafkaException as exc:
            self.health.mark_down()
            raise KafkaConnectionError(f"kafka broker unreachable: {exc}") from exc
        self.health.mark_up()

    def partitions(self, topic: str) -> int | None:
        """Partition count of `topic` (cached), or None when it does not exist."""
        known = self._known.get(topic)
        if known is not None:
            if time.monotonic() - self._read_at.get(topic, 0.0) < self._max_age:
                return known
            try:  # stale: read it again (partitions may have been added)
                return self._read_partitions(topic) or known
            except KafkaConnectionError:  # the broker is away: the count we know still holds
                return known
        return self._read_partitions(topic)

    def _read_partitions(self, topic: str) -> int | None:
        try:
            metadata = self._admin.list_topics(topic=topic, timeout=self._timeout)
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
               config: dict[str, str]) -> int:
        """Create `topic` unless it exists; return its partition count."""
        known = self._known.get(topic) and self.partitions(topic)
        if known:
            return known
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

    def session_timeout_minimum(self) -> int | None:
        """The brokers' `group.min.session.timeout.ms` (the largest), or None when they do
        not say (tansu answers DescribeConfigs with no entries; ACLs may refuse it)."""
        try:
            brokers = self._admin.list_topics(timeout=self._timeout).brokers
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
