"""When the work consumer pauses: flow control with hysteresis, idle mode and waking up."""

from __future__ import annotations

from async_request.transport._pacing import Pacer


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
