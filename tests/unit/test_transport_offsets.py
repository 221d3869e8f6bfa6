"""Offset bookkeeping of the Kafka transport: commit only the contiguous acked prefix."""

from __future__ import annotations

import random

from async_request.transport._offsets import OffsetTracker

P0 = ("q", 0)
P1 = ("q", 1)


def deliver(tracker: OffsetTracker, key: tuple[str, int], offsets: range) -> list[int]:
    return [tracker.delivered(key, off) for off in offsets]


def test_in_order_acks_advance_one_by_one() -> None:
    tracker = OffsetTracker()
    tracker.assign(P0)
    tags = deliver(tracker, P0, range(3))
    assert [tracker.ack(t) for t in tags] == [(P0, 1), (P0, 2), (P0, 3)]


def test_later_ack_does_not_pass_a_running_message() -> None:
    """late-kill9: a slow message at offset 0 pins the position while later ones are acked."""
    tracker = OffsetTracker()
    tracker.assign(P0)
    slow, *fast = deliver(tracker, P0, range(8))
    assert [tracker.ack(t) for t in fast] == [None] * 7
    assert tracker.position(P0) == 0
    assert tracker.ack(slow) == (P0, 8)


def test_prefetched_message_is_not_committed_by_neighbours() -> None:
    """early-kill9: acked 0,1 and 3 but not 2 (prefetched): position stops at 2."""
    tracker = OffsetTracker()
    tracker.assign(P0)
    tags = deliver(tracker, P0, range(4))
    assert tracker.ack(tags[0]) == (P0, 1)
    assert tracker.ack(tags[1]) == (P0, 2)
    assert tracker.ack(tags[3]) is None
    assert tracker.position(P0) == 2


def test_requeue_then_later_ack_keeps_rejected_offset_until_settled() -> None:
    tracker = OffsetTracker()
    tracker.assign(P0)
    m0, m1 = deliver(tracker, P0, range(2))
    assert tracker.ack(m1) is None  # m0 still in flight (being re-produced)
    assert tracker.ack(m0) == (P0, 2)


def test_partitions_are_independent() -> None:
    tracker = OffsetTracker()
    tracker.assign(P0)
    tracker.assign(P1)
    a = tracker.delivered(P0, 10)
    b = tracker.delivered(P1, 5)
    assert tracker.ack(b) == (P1, 6)
    assert tracker.position(P0) == 10
    assert tracker.ack(a) == (P0, 11)


def test_acks_after_revoke_are_ignored() -> None:
    tracker = OffsetTracker()
    tracker.assign(P0)
    old = tracker.delivered(P0, 0)
    tracker.revoke(P0)
    tracker.assign(P0)  # same partition comes back: a new generation
    new = tracker.delivered(P0, 0)
    assert tracker.ack(old) is None
    assert tracker.ack(new) == (P0, 1)


def test_unknown_and_double_acks_are_noops() -> None:
    tracker = OffsetTracker()
    tracker.assign(P0)
    tag = tracker.delivered(P0, 0)
    assert tracker.ack(999) is None
    assert tracker.ack(tag) == (P0, 1)
    assert tracker.ack(tag) is None
    assert len(tracker) == 0


def test_dropped_buffered_record_is_forgotten() -> None:
    tracker = OffsetTracker()
    tracker.assign(P0)
    tag = tracker.delivered(P0, 3)
    tracker.drop(tag)
    assert tracker.delivery(tag) is None
    assert tracker.ack(tag) is None


def test_position_never_moves_backwards() -> None:
    tracker = OffsetTracker()
    tracker.assign(P0)
    first = tracker.delivered(P0, 7)
    assert tracker.ack(first) == (P0, 8)
    redelivered = tracker.delivered(P0, 5)  # an older offset seen again cannot lower it
    assert tracker.ack(redelivered) is None
    assert tracker.position(P0) == 8


def test_random_ack_order_commits_exactly_the_contiguous_prefix() -> None:
    rng = random.Random(7)
    tracker = OffsetTracker()
    tracker.assign(P0)
    tags = deliver(tracker, P0, range(200))
    order = list(range(200))
    rng.shuffle(order)
    acked: set[int] = set()
    for index in order:
        tracker.ack(tags[index])
        acked.add(index)
        prefix = 0
        while prefix in acked:
            prefix += 1
        assert tracker.position(P0) == prefix
    assert tracker.position(P0) == 200
    assert tracker.inflight_count(P0) == 0


def test_next_offset_follows_the_highest_delivered() -> None:
    tracker = OffsetTracker()
    tracker.assign(P0)
    assert tracker.next_offset(P0) is None
    tags = deliver(tracker, P0, range(5, 8))
    assert tracker.next_offset(P0) == 8
    tracker.ack(tags[0])
    assert tracker.next_offset(P0) == 8  # acks do not move it; fetching does
    tracker.revoke(P0)
    assert tracker.next_offset(P0) is None
