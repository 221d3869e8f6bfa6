"""When the work consumer pauses (flow control with hysteresis, idle mode, waking up), and how."""

from __future__ import annotations

from typing import Any

from confluent_kafka import TopicPartition

from async_request.transport._offsets import PartitionKey
from async_request.transport._pacing import Pacer, Pauser


def test_flow_pauses_at_max_buffered_and_resumes_at_half() -> None:
    pacer = Pacer(max_buffered=100, idle_after=0)
    pacer.decide(99, 0.0, True, False)
    assert not pacer.paused
    pacer.decide(100, 0.0, True, False)
    assert pacer.flow and pacer.paused
    pacer.decide(51, 0.0, True, False)
    assert pacer.flow  # not yet: restarting a fetch costs, so wait until half is delivered
    pacer.decide(50, 0.0, True, False)
    assert not pacer.paused


def test_idle_after_quiet_period_and_woken_by_the_probe() -> None:
    pacer = Pacer(max_buffered=100, idle_after=1.0)
    pacer.worked(10.0)
    pacer.decide(0, 10.9, True, False)
    assert not pacer.idle
    pacer.decide(0, 11.0, True, False)
    assert pacer.idle and pacer.paused
    pacer.decide(0, 50.0, True, False)
    assert pacer.idle  # stays idle however long nothing happens
    pacer.decide(0, 50.1, True, True)
    assert not pacer.idle and not pacer.paused
    pacer.decide(0, 50.5, True, False)
    assert not pacer.idle  # active for idle_after after waking
    pacer.decide(0, 51.1, True, False)
    assert pacer.idle


def test_records_keep_it_active() -> None:
    pacer = Pacer(max_buffered=100, idle_after=1.0)
    for now in (0.5, 1.0, 1.5, 2.0):
        pacer.worked(now)
        pacer.decide(0, now + 0.4, True, False)
        assert not pacer.idle


def test_no_partitions_no_idle_and_zero_disables_it() -> None:
    pacer = Pacer(max_buffered=100, idle_after=1.0)
    pacer.decide(0, 5.0, False, False)
    assert not pacer.idle
    never = Pacer(max_buffered=100, idle_after=0)
    never.decide(0, 1e6, True, False)
    assert not never.idle


def test_idle_ends_when_partitions_are_gone_and_is_not_entered_while_flow_paused() -> None:
    pacer = Pacer(max_buffered=10, idle_after=1.0)
    pacer.decide(0, 5.0, True, False)
    assert pacer.idle
    pacer.decide(0, 5.1, False, False)
    assert not pacer.idle
    full = Pacer(max_buffered=10, idle_after=1.0)
    full.decide(10, 5.0, True, False)
    assert full.flow and not full.idle


class FakeConsumer:
    """The calls a Pauser makes on the work consumer; positions come from the tracker."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, int, int]]]] = []

    def _log(self, name: str, partitions: list[TopicPartition]) -> None:
        self.calls.append((name, sorted((p.topic, p.partition, p.offset) for p in partitions)))

    def pause(self, partitions: list[TopicPartition]) -> None:
        self._log("pause", partitions)

    def resume(self, partitions: list[TopicPartition]) -> None:
        self._log("resume", partitions)

    def seek(self, partition: TopicPartition) -> None:
        self._log("seek", [partition])

    def get_watermark_offsets(self, partition: TopicPartition, **_: Any) -> tuple[int, int]:
        self._log("watermarks", [partition])
        return 0, 0


def _pauser(watched: list[dict[PartitionKey, int]]) -> Pauser:
    delivered = {("t", 0): 7, ("t", 1): 0}  # next offsets, as the tracker knows them
    return Pauser(Pacer(max_buffered=4, idle_after=0), connect_timeout=1.0,
                  auto_offset_reset="earliest", next_offset=delivered.get,
                  watch=watched.append, unwatch=lambda: None)


def test_a_full_inbox_pauses_and_a_drained_one_resumes_with_a_seek() -> None:
    pauser, work = _pauser([]), FakeConsumer()
    assigned = {("t", 0), ("t", 1)}
    pauser.pace(work, 4, assigned)
    assert work.calls == [("pause", [("t", 0, -1001), ("t", 1, -1001)])]
    pauser.pace(work, 2, assigned)
    # resumed, then each partition seeked to where it stopped (offset 0: a watermark query)
    assert work.calls[1:] == [("resume", [("t", 0, -1001), ("t", 1, -1001)]),
                              ("seek", [("t", 0, 7)]), ("seek", [("t", 1, 0)]),
                              ("watermarks", [("t", 1, -1001)])]


def test_forgotten_partitions_are_not_resumed() -> None:
    pauser, work = _pauser([]), FakeConsumer()
    pauser.pace(work, 4, {("t", 0), ("t", 1)})
    pauser.forget({("t", 1)})
    pauser.pace(work, 0, {("t", 0)})
    assert work.calls[1:] == [("resume", [("t", 0, -1001)]), ("seek", [("t", 0, 7)])]
