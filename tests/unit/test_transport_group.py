"""Group membership rules: a longer session after a refusal, and the stuck-rebalance watch."""

from __future__ import annotations

from async_request.transport._group import (
    SESSION_LADDER,
    BrokerGroups,
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


def test_a_broker_that_reports_its_group_settings_is_joined_as_apache_kafka() -> None:
    kafka = BrokerGroups(session_minimum_ms=6000)
    assert kafka.reports_group_config
    assert kafka.first_session(1500) == 6000  # not a refused join first
    assert kafka.first_session(10000) == 10000
    assert kafka.leaves_on_shutdown(forced=False)  # partitions move at once


def test_a_broker_that_reports_nothing_keeps_the_tansu_safe_defaults() -> None:
    tansu = BrokerGroups(session_minimum_ms=None)  # tansu, or DescribeConfigs refused
    assert not tansu.reports_group_config
    assert tansu.first_session(1500) == 1500
    assert not tansu.leaves_on_shutdown(forced=False)
    assert tansu.leaves_on_shutdown(forced=True)
