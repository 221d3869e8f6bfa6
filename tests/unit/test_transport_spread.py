"""Spread: records without a key go round-robin over the topic's partitions."""

from __future__ import annotations

from collections import Counter

from async_request.transport._spread import Spread


def test_round_robin_gives_every_partition_the_same_share() -> None:
    spread = Spread()
    shares = Counter(spread.next("t", 4) for _ in range(400))
    assert shares == {0: 100, 1: 100, 2: 100, 3: 100}


def test_the_spread_follows_a_growing_partition_count() -> None:
    spread = Spread()
    for _ in range(3):
        spread.next("t", 4)
    assert set(spread.next("t", 8) for _ in range(8)) == set(range(8))


def test_one_partition_is_left_to_librdkafka() -> None:
    assert Spread().next("t", 1) is None
