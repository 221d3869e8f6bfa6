"""Subscription tickets on the real stack: minted with the bearer token, used by a WebSocket.

The web app, broker, Redis and worker are the session's (tests/live_fixtures.py).
"""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import pytest
from websockets.sync.client import connect

from tests.integration.stack import IntegrationStack, auth
from tests.integration.test_e2e import accepted_id, wait_notification

pytestmark = pytest.mark.integration
TICKETS = "/api/v1/async_background_response/tickets/"


@pytest.fixture(scope="module")
def erin(stack: IntegrationStack) -> str:
    return stack.create_user("erin_ticket")


def test_a_ticket_subscribes_a_socket_without_the_token_in_its_url(
        stack: IntegrationStack, http: httpx.Client, erin: str) -> None:
    minted = http.post(TICKETS, headers=auth(erin))
    assert minted.status_code == 201, minted.text
    assert minted.headers["cache-control"] == "no-store"
    body = minted.json()
    assert set(body) == {"ticket", "expires_at", "expires_in"} and body["expires_in"] > 0
    url = stack.ws_url() + "?ticket=" + quote(body["ticket"])
    with connect(url, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10)) == {"type": "subscribed"}
        task_id = accepted_id(http.get("/api/v1/orders/",
                                       headers=auth(erin, **{"x-async-request": "true"})))
        assert wait_notification(ws, task_id)["status"] == "completed"


@pytest.mark.parametrize("headers", [{}, {"x-async-request": "abcdefghij_KLMNOP-12345"},
                                     {"authorization": "Bearer not-a-jwt"}])
def test_a_ticket_needs_a_bearer_token(http: httpx.Client, headers: dict[str, str]) -> None:
    refused = http.post(TICKETS, headers=headers)
    assert refused.status_code == 401, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["detail"]


def test_a_forged_ticket_gets_an_error_frame_and_4401(stack: IntegrationStack) -> None:
    with connect(stack.ws_url() + "?ticket=art1.forged", open_timeout=10) as ws:
        frame = json.loads(ws.recv(timeout=10))
        assert frame["type"] == "error" and frame["code"] == 4401
        with pytest.raises(Exception):  # noqa: B017, PT011 - the server closes the socket
            ws.recv(timeout=10)
        assert ws.close_code == 4401
