"""The process-wide reachability flags behind the transport's fail-fast publishes."""

from __future__ import annotations

from async_request.transport._health import Health, health_for


def test_down_until_something_succeeds_and_one_probe_per_window() -> None:
    health = Health()
    assert not health.down and not health.failed_within(10)
    health.mark_down()
    first = health.down_since
    health.mark_down()
    assert health.down and health.down_since == first  # the outage started at the first report
    assert health.failed_within(10) and not health.failed_within(0)
    health.mark_up()
    assert not health.down and health.down_since is None and not health.failed_within(10)


def test_one_health_per_bootstrap_list() -> None:
    assert health_for("h1:9092,h2:9092") is health_for("h1:9092,h2:9092")
    assert health_for("h1:9092") is not health_for("h3:9092")


def test_outages_count_each_outage_once() -> None:
    """What a cache of the cluster compares (TopicAdmin forgets its topics on a change)."""
    health = Health()
    assert health.outages == 0
    health.mark_down()
    health.mark_down()  # the same outage, reported again
    assert health.outages == 1
    health.mark_up()
    health.mark_up()
    assert health.outages == 1
    health.mark_down()
    assert health.outages == 2
