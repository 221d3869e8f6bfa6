"""Group membership rules: a longer session after a refusal, and the stuck-rebalance watch."""

from __future__ import annotations

from async_request.transport._group import (
    SESSION_LADDER,
    RebalanceWatch,
    longer_session,
    stall_limit,
)


def test_longer_session_prefers_the_brokers_minimum() -> None:
    assert longer_session(2000, 6000) == 6000
    assert longer_session(2000, 7500) == 7500


def test_longer_session_climbs_the_ladder_when_the_broker_does_not_say() -> None:
    assert longer_session(2000, None) == 6000
    assert longer_session(6000, None) == 10000
    assert longer_session(6000, 6000) == 10000  # the minimum did not help: go on
    assert longer_session(SESSION_LADDER[-1], None) is None


def test_stall_limit_is_well_above_a_normal_rebalance() -> None:
    assert stall_limit(2000) == 10.0
    assert stall_limit(6000) == 18.0


def test_watch_reports_a_rebalance_that_does_not_end_then_every_interval() -> None:
    watch = RebalanceWatch(stall_after=10.0)
    assert not watch.rebalancing
    watch.joining(100.0)
    watch.joining(105.0)  # still the same rebalance
    assert watch.rebalancing
    assert watch.overdue(109.9) is None
    assert watch.overdue(110.0) == 10.0
    assert watch.overdue(115.0) is None  # reported already
    assert watch.overdue(120.0) == 20.0
    watch.settled()
    assert not watch.rebalancing and watch.overdue(500.0) is None
