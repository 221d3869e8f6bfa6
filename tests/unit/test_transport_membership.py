"""The work consumer's group membership: rebalance callbacks, and how it leaves (or not).

A fake consumer stands in for librdkafka's: the member only calls it, and these tests check
which calls a stopping or an exiting member makes (a LeaveGroup is `close()`/`unsubscribe()`).
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import TopicPartition

from async_request.transport._membership import GroupMember
from async_request.transport._offsets import PartitionKey
from async_request.transport._options import KafkaOptions


class FakeConsumer:
    """Records the calls a GroupMember makes; the group never rebalances on its own."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.callbacks: dict[str, Any] = {}

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.calls.append(f"subscribe {','.join(topics)}")
        self.callbacks = callbacks

    def unsubscribe(self) -> None:
        self.calls.append("unsubscribe")

    def poll(self, timeout: float) -> None:
        return None

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.calls.append("resume")

    def commit(self, asynchronous: bool = True) -> None:
        self.calls.append("commit")

    def close(self) -> None:
        self.calls.append("close")


class Fetcher:
    """What the fetcher hands the member: the callables, and a log of their calls."""

    def __init__(self) -> None:
        self.events: list[tuple[str, set[PartitionKey]]] = []

    def member(self, **options: Any) -> tuple[GroupMember, FakeConsumer]:
        opts = KafkaOptions.from_transport_options({
            "kafka_consumer_config": {"heartbeat.interval.ms": 10}, **options})
        member = GroupMember(opts, "h:1", lambda: None,
                             apply_acks=lambda: self.events.append(("acks", set())),
                             gained=lambda keys: self.events.append(("gained", keys)),
                             lost=lambda keys: self.events.append(("lost", keys)))
        consumer = member.consumer = FakeConsumer()
        return member, consumer


def _assigned(member: GroupMember, consumer: FakeConsumer, *partitions: int) -> None:
    consumer.callbacks["on_assign"](consumer, [TopicPartition("t", p) for p in partitions])


def test_rebalance_callbacks_hand_partitions_to_the_fetcher() -> None:
    fetcher = Fetcher()
    member, consumer = fetcher.member()
    member.subscribe(("t",))
    _assigned(member, consumer, 0, 1)
    assert member.assigned == {("t", 0), ("t", 1)}
    consumer.callbacks["on_revoke"](consumer, [TopicPartition("t", 1)])
    assert member.assigned == {("t", 0)}
    assert fetcher.events == [("gained", {("t", 0), ("t", 1)}), ("acks", set()),
                              ("lost", {("t", 1)})]
    # librdkafka keeps a pause across revoke and re-assign; the acked prefix is committed
    assert consumer.calls == ["subscribe t", "resume", "commit"]


def test_a_stopping_connection_unsubscribes_then_closes() -> None:
    member, consumer = Fetcher().member()
    member.subscribe(("t",))
    _assigned(member, consumer, 0)
    member.subscribe(())  # after a heartbeat without a rebalance: the LeaveGroup is safe
    assert member.topics == ()
    member.close()
    assert consumer.calls == ["subscribe t", "resume", "unsubscribe", "close"]
    assert member.consumer is None


def test_a_connection_closed_while_subscribed_leaves_the_group() -> None:
    member, consumer = Fetcher().member()
    member.subscribe(("t",))
    _assigned(member, consumer, 0)
    member.close()
    assert consumer.calls[-1] == "close"


def test_an_exiting_worker_stays_subscribed_and_never_sends_a_leave_group() -> None:
    member, consumer = Fetcher().member()
    member.subscribe(("t",))
    _assigned(member, consumer, 0)
    member.exiting = True
    member.subscribe(())  # Celery cancels the task queues before it closes the connection
    assert member.topics == ("t",)
    member.close()
    assert "unsubscribe" not in consumer.calls and "close" not in consumer.calls
    assert consumer.calls[-1] == "commit"  # the acked prefix, then the process just ends


def test_an_exiting_worker_leaves_when_configured_to() -> None:
    member, consumer = Fetcher().member(leave_group_on_shutdown=True)
    member.subscribe(("t",))
    _assigned(member, consumer, 0)
    member.exiting = True
    member.close()
    assert consumer.calls[-1] == "close"


def _detected(minimum: int | None, **options: Any) -> GroupMember:
    opts = KafkaOptions.from_transport_options(options)
    member = GroupMember(opts, "h:1", lambda: minimum, apply_acks=lambda: None,
                         gained=lambda keys: None, lost=lambda keys: None)
    member._detect()
    return member


def test_on_apache_kafka_the_member_joins_with_its_minimum_and_leaves_at_shutdown() -> None:
    member = _detected(6000)
    assert (member._session_ms, member.leave_on_exit) == (6000, True)
    assert member._metadata_refresh_ms == 30000  # partitions added to a live topic


def test_on_tansu_the_member_keeps_the_defaults() -> None:
    member = _detected(None)
    assert (member._session_ms, member.leave_on_exit) == (1500, False)
    assert member._metadata_refresh_ms is None  # librdkafka's; tansu adds no partitions


def test_configured_sessions_and_disabled_detection_are_kept() -> None:
    member = _detected(6000, kafka_consumer_config={"session.timeout.ms": 2000})
    assert member._session_ms == 2000 and member.leave_on_exit  # the broker then says no
    member = _detected(6000, detect_broker=False)
    assert (member._session_ms, member.leave_on_exit) == (1500, False)


def test_on_apache_kafka_the_work_consumer_waits_for_records_unless_configured() -> None:
    member = _detected(6000)
    assert member.holds_fetches
    assert member._consumer_config()["fetch.wait.max.ms"] == 100
    assert _detected(None)._consumer_config()["fetch.wait.max.ms"] == 5  # tansu: short waits
    member = _detected(6000, kafka_consumer_config={"fetch.wait.max.ms": 100})
    assert not member.holds_fetches and member._consumer_config()["fetch.wait.max.ms"] == 100
    assert not _detected(6000, detect_broker=False).holds_fetches


def test_on_apache_kafka_an_exiting_worker_leaves_without_waiting_for_a_rebalance() -> None:
    member = _detected(6000)
    consumer = member.consumer = FakeConsumer()
    member.subscribe(("t",))  # joining: a rebalance is under way
    member.exiting = True
    member.close()
    assert consumer.calls == ["subscribe t", "close"]  # no wait, no abandon
