"""Lanes: ASYNC_REQUEST_LANES parsing, a route's lane, lane queues, `-Q` and `--lanes` checks."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from celery import Celery

from async_request import lanes
from async_request.celery_config import celery_config, configure_celery
from async_request.checks import worker_lanes
from async_request.exceptions import ConfigurationError
from async_request.settings import Settings, load_settings

LANES = '["GET ^/api/v1/reports/.*$ slow", "POST ^/api/v1/exports/$ slow", "GET ^/b/$ bulk"]'


def settings(lanes_setting: str = LANES) -> Settings:
    return load_settings({"BS_ENV_FILE": "/nonexistent", "BS_KAFKA_TOPIC_ASYNC_BG": "ar",
                          "BS_ASYNC_REQUEST_LANES": lanes_setting}, django_settings=None)


def test_lanes_parse_like_route_timeouts() -> None:
    parsed = settings("get ^/a b/$ slow, POST ^/x/.*$ bulk-2")
    assert [(m, p.pattern, lane) for m, p, lane in parsed.lanes] == [
        ("GET", "^/a b/$", "slow"), ("POST", "^/x/.*$", "bulk-2")]
    assert load_settings({"BS_ENV_FILE": "/nonexistent"}, django_settings=None).lanes == ()


@pytest.mark.parametrize(("entry", "why"), [
    ("GET ^/x/$", "'^/x/$' is not a lane name"),
    ("GET ^/x/$ sl.ow", "'sl.ow' is not a lane name"),
    ("^/x/$ slow", "is not 'METHOD /path-regex lane'"),
    ("GET ([unclosed slow", "is not a regular expression"),
])
def test_a_bad_lane_entry_names_the_setting_and_the_entry(entry: str, why: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        settings(f'["GET ^/ok/$ slow", "{entry}"]')
    message = str(info.value)
    assert "ASYNC_REQUEST_LANES" in message and repr(entry) in message, message
    assert why in message, message


def test_the_first_matching_entry_wins_and_unlisted_routes_take_the_default_lane() -> None:
    configured = settings('["GET ^/r/x/$ fast", "GET ^/r/.*$ slow"]')
    assert lanes.lane_for(configured, "get", "/r/x/") == "fast"
    assert lanes.lane_for(configured, "GET", "/r/y/") == "slow"
    assert lanes.lane_for(configured, "POST", "/r/y/") == "default"  # the method counts
    assert lanes.lane_for(configured, "GET", "/other/r/y/") == "default"  # the whole path


def test_lane_names_and_queues() -> None:
    configured = settings()
    assert lanes.lane_names(configured) == ("default", "slow", "bulk")
    assert lanes.lane_queues(configured) == ["ar", "ar.slow", "ar.bulk"]
    assert lanes.lane_queues(configured, ["bulk"]) == ["ar.bulk"]
    assert lanes.queue_name(configured, "default") == "ar"


def test_resolve_keeps_the_stored_lane_while_it_is_configured() -> None:
    configured = settings()
    assert lanes.resolve(configured, "bulk", "GET", "/api/v1/reports/1/") == "bulk"
    assert lanes.resolve(configured, "gone", "GET", "/api/v1/reports/1/") == "slow"
    assert lanes.resolve(configured, None, "GET", "/elsewhere/") == "default"


def test_minus_q_queues_map_to_lanes_and_a_lane_like_typo_is_refused() -> None:
    configured = settings()
    assert lanes.lanes_of_queues(configured, ["ar.slow", "ar", "reports"]) == ("slow", "default")
    with pytest.raises(ConfigurationError, match="-Q 'ar.slwo': no lane has this queue; "
                                                 "the lanes' queues are ar, ar.slow, ar.bulk"):
        lanes.lanes_of_queues(configured, ["ar", "ar.slwo"])


def test_celery_serves_every_lane_by_default_and_keeps_a_projects_queues() -> None:
    configured = settings()
    assert [q.name for q in celery_config(configured)["task_queues"]] == [
        "ar", "ar.slow", "ar.bulk"]
    from kombu.entity import Queue

    app = Celery("lanes_test", set_as_current=False)
    app.conf.task_queues = [Queue("own")]
    configure_celery(app, configured)
    assert [q.name for q in app.conf.task_queues] == ["own", "ar", "ar.slow", "ar.bulk"]
    app.amqp.queues.select(["ar.slow"])
    worker = SimpleNamespace(app=app, hostname="w@h")
    assert worker_lanes(worker, configured) == ("slow",)
