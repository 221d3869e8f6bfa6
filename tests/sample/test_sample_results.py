"""The results routes as the sample mounts them: no Host-built redirect, fresh channel names."""

from __future__ import annotations

from typing import Any

import pytest

from async_request.auth import validate_channel

pytestmark = pytest.mark.django_db(transaction=True)
RESULTS = "/api/v1/async_background_response/"
SOME_ID = "00000000-0000-4000-8000-000000000000"


def test_results_without_the_trailing_slash_never_redirect_to_the_host_header(
        client: Any, settings: Any, local_redis_url: str) -> None:
    settings.ASYNC_REQUEST_REDIS_URL = local_redis_url
    # Starlette's slash redirect built `Location: http://<Host>/...` from a header the client
    # controls; the route answers both forms itself.
    for path in (f"{RESULTS}{SOME_ID}", f"{RESULTS}{SOME_ID}/"):
        response = client.get(path, headers={"Host": "evil.example",
                                              "X-Async-Request": "anonymous_" + "x1y2z3" * 4})
        assert response.status_code == 404, (path, response.status_code)
        assert "location" not in response.headers


def test_the_server_hands_out_fresh_channel_names(client: Any) -> None:
    names = {client.post(f"{RESULTS}channels/").json()["channel"] for _ in range(5)}
    assert len(names) == 5
    assert all(validate_channel(name) == name for name in names)


def test_the_django_view_hands_out_channel_names_on_post_only() -> None:
    import json

    from django.middleware.csrf import CsrfViewMiddleware
    from django.test import RequestFactory

    from async_request.results.django import new_channel_view

    post = RequestFactory().post(f"{RESULTS}channels/")
    # CSRF would refuse a cookie-less POST; the view is exempt: it reads and changes nothing.
    assert CsrfViewMiddleware(lambda r: None).process_view(post, new_channel_view, (), {}) is None
    response = new_channel_view(post)
    assert response.status_code == 200
    assert validate_channel(json.loads(response.content)["channel"])
    assert new_channel_view(RequestFactory().get(f"{RESULTS}channels/")).status_code == 405
