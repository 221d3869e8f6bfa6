"""GapGuard: a skipped work offset holds the partition back until it is fetched or given up."""

from __future__ import annotations

from async_request.transport._gaps import GapGuard

KEY = ("tasks", 0)


def test_in_order_records_and_the_first_one_pass() -> None:
    guard = GapGuard(wait=1.0)
    assert guard.admit(KEY, None, 17, now=0.0)  # nothing delivered yet: any start
    assert guard.admit(KEY, 18, 18, now=0.0)
    assert guard.admit(KEY, 19, 18, now=0.0)  # a repeat (after a seek) is not a gap


def test_a_jump_is_held_until_the_missing_offset_arrives() -> None:
    guard = GapGuard(wait=1.0)
    assert not guard.admit(KEY, 155, 156, now=10.0)  # 155 not visible yet
    assert not guard.admit(KEY, 155, 156, now=10.3)  # fetched again: still missing
    assert guard.admit(KEY, 155, 155, now=10.31)  # there now
    assert guard.admit(KEY, 156, 156, now=10.31)
    assert not guard.admit(KEY, 160, 162, now=20.0)  # a later gap waits its own time
    assert guard.admit(KEY, 160, 160, now=20.0)


def test_a_gap_that_stays_is_accepted_after_the_wait() -> None:
    guard = GapGuard(wait=1.0)
    assert not guard.admit(KEY, 40, 45, now=5.0)
    assert not guard.admit(KEY, 40, 45, now=5.9)
    assert guard.admit(KEY, 40, 45, now=6.0)  # a real hole (compaction, txn markers)
    assert not guard.admit(KEY, 46, 48, now=6.0)  # the next gap starts its own wait


def test_partitions_are_held_separately_and_forgotten_on_revoke() -> None:
    guard = GapGuard(wait=1.0)
    other = ("tasks", 1)
    assert not guard.admit(KEY, 3, 4, now=0.0)
    assert guard.admit(other, 9, 9, now=0.5)
    guard.forget({KEY})
    assert not guard.admit(KEY, 3, 4, now=2.0)  # the clock of the forgotten gap restarts
    assert guard.admit(KEY, 3, 4, now=3.0)


def test_zero_wait_accepts_every_gap() -> None:
    assert GapGuard(wait=0.0).admit(KEY, 3, 9, now=0.0)
