"""Limits: ASYNC_REQUEST_ROUTE_TIMEOUTS parsing and lookup, the in-flight cap setting, the 429."""

from __future__ import annotations

import pytest

from async_request.envelope import RequestEnvelope
from async_request.exceptions import ConfigurationError, TooManyInFlightError
from async_request.problems import problem_for
from async_request.settings import Settings, load_settings


def settings(**env: str) -> Settings:
    return load_settings({"BS_ENV_FILE": "/nonexistent",
                          **{f"BS_ASYNC_REQUEST_{k}": v for k, v in env.items()}},
                         django_settings=None)


def envelope(method: str, path: str) -> RequestEnvelope:
    return RequestEnvelope(task_id="t", owner="user:1", method=method, path=path,
                           raw_path=path.encode(), query_string=b"", headers=(), body=b"")


def test_route_timeouts_parse_json_and_comma_lists_with_spaces_in_the_regex() -> None:
    parsed = settings(ROUTE_TIMEOUTS='["get ^/api/v1/slow/$ 1", "POST ^/a b/.*$ 2.5"]')
    assert [(m, p.pattern, s) for m, p, s in parsed.route_timeouts] == [
        ("GET", "^/api/v1/slow/$", 1.0), ("POST", "^/a b/.*$", 2.5)]
    listed = settings(ROUTE_TIMEOUTS="GET ^/x/$ 3, DELETE ^/y/$ 0.5")
    assert [s for _, _, s in listed.route_timeouts] == [3.0, 0.5]
    assert settings().route_timeouts == ()


@pytest.mark.parametrize(("entry", "why"), [
    ("GET ^/x/$", "is not seconds"),
    ("GET ^/x/$ soon", "is not seconds"),
    ("GET ^/x/$ 0", "above 0"),
    ("GET ^/x/$ -2", "above 0"),
    ("GET ^/x/$ nan", "above 0"),
    ("GET ^/x/$ inf", "above 0"),
    ("^/x/$ 5", "is not 'METHOD /path-regex seconds'"),
    ("GET ([unclosed 5", "is not a regular expression"),
    ("G3T ^/x/$ 5", "is not 'METHOD /path-regex seconds'"),
])
def test_a_bad_route_timeout_names_the_setting_and_the_entry(entry: str, why: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        settings(ROUTE_TIMEOUTS=f'["GET ^/ok/$ 1", "{entry}"]')
    message = str(info.value)
    assert "ASYNC_REQUEST_ROUTE_TIMEOUTS" in message and repr(entry) in message, message
    assert why in message, message


def test_the_first_matching_route_limit_wins_else_the_global_one() -> None:
    from async_request.execution import time_limit

    limits = settings(ROUTE_TIMEOUTS='["GET ^/slow/.*$ 1", "GET ^/slow/x/$ 9"]',
                      REPLAY_TIMEOUT_SEC="42")
    seconds, limit = time_limit(envelope("get", "/slow/x/"), limits)
    assert seconds == 1.0 and limit == "ASYNC_REQUEST_ROUTE_TIMEOUTS: GET ^/slow/.*$ 1"
    assert time_limit(envelope("POST", "/slow/x/"), limits) == (
        42.0, "ASYNC_REQUEST_REPLAY_TIMEOUT_SEC")
    # fullmatch, as ASYNC_REQUEST_IDEMPOTENT_ROUTES: a prefix is not a match
    assert time_limit(envelope("GET", "/slowish/"), limits)[0] == 42.0


def test_the_in_flight_cap_defaults_to_100_and_0_turns_it_off() -> None:
    assert settings().max_inflight_per_owner == 100
    assert settings(MAX_INFLIGHT_PER_OWNER="0").max_inflight_per_owner == 0
    with pytest.raises(ConfigurationError, match="ASYNC_REQUEST_MAX_INFLIGHT_PER_OWNER"):
        settings(MAX_INFLIGHT_PER_OWNER="-1")


def test_too_many_in_flight_is_429_with_retry_after() -> None:
    answer = problem_for(TooManyInFlightError("you have 3 operations not finished yet"))
    assert answer.status == 429 and dict(answer.headers)["retry-after"].isdigit()
