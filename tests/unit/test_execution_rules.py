"""The rule for a request whose earlier run died mid-way."""

from __future__ import annotations

import pytest

from async_request.envelope import RequestEnvelope
from async_request.settings import load_settings


def envelope(method: str, path: str = "/api/v1/orders/", headers: tuple = ()) -> RequestEnvelope:
    return RequestEnvelope(task_id="t", owner="user:1", method=method, path=path,
                           raw_path=path.encode(), query_string=b"", headers=headers,
                           body=b"")


SETTINGS = load_settings({"BS_ENV_FILE": "/nonexistent",
                          "BS_ASYNC_REQUEST_IDEMPOTENT_ROUTES": '["POST ^/api/v1/orders/$"]'},
                         django_settings=None)


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"])
def test_idempotent_methods_run_again(method: str) -> None:
    from async_request.execution import may_run_again

    assert may_run_again(envelope(method, "/other/"), SETTINGS)


def test_plain_post_and_patch_do_not() -> None:
    from async_request.execution import may_run_again

    assert not may_run_again(envelope("POST", "/other/"), SETTINGS)
    assert not may_run_again(envelope("PATCH", "/api/v1/orders/"), SETTINGS)


def test_declared_routes_and_idempotency_keys_do() -> None:
    from async_request.execution import may_run_again

    assert may_run_again(envelope("POST"), SETTINGS)
    assert may_run_again(envelope("POST", "/other/", (("idempotency-key", "k1"),)), SETTINGS)


def test_bad_route_setting_names_it() -> None:
    from async_request.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="ASYNC_REQUEST_IDEMPOTENT_ROUTES"):
        load_settings({"BS_ENV_FILE": "/nonexistent",
                       "BS_ASYNC_REQUEST_IDEMPOTENT_ROUTES": '["POST ([unclosed"]'},
                      django_settings=None)
