"""Completion webhooks on the real stack: a receiver that fails its first tries gets the
status body, signed as Standard Webhooks says, with the same webhook-id on every try.

Its own web app and worker, configured with the receiver's host and a webhook secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.integration.stack import IntegrationStack, auth, module_stack
from tools.services import Service, free_port

pytestmark = pytest.mark.integration
SECRET = "whsec_" + base64.b64encode(b"webhook-test-key-0123456789abcd").decode()
RESULTS = "/api/v1/async_background_response/"


class Receiver:
    """A real HTTP server: answers each path's scripted statuses in turn, then 200."""

    def __init__(self) -> None:
        self.port = free_port()
        self.calls: list[dict[str, Any]] = []
        self.script: dict[str, list[int]] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.calls.append({"path": self.path, "headers": headers,
                                       "body": body, "at": time.monotonic()})
                statuses = receiver.script.get(self.path, [])
                status = statuses.pop(0) if statuses else 200
                self.send_response(status)
                if status in (301, 302, 307, 308):
                    self.send_header("location", f"http://127.0.0.1:{receiver.port}/elsewhere")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of(self, path: str) -> list[dict[str, Any]]:
        return [call for call in self.calls if call["path"] == path]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.server.shutdown()


@pytest.fixture(scope="module")
def hook_stack(kafka: Service, redis_url: str, receiver: Receiver,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[IntegrationStack]:
    with module_stack(kafka.url, redis_url, tmp_path_factory.mktemp("hooks"), 13,
                      {"BS_ASYNC_REQUEST_CALLBACK_HOSTS": f"127.0.0.1:{receiver.port}",
                       "BS_ASYNC_REQUEST_WEBHOOK_SECRET": SECRET}) as stack:
        yield stack


def signature_ok(call: dict[str, Any], secret: str = SECRET) -> bool:
    headers = call["headers"]
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + call["body"]
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    return headers["webhook-signature"] == f"v1,{expected}"


def wait_calls(receiver: Receiver, path: str, count: int, timeout: float = 60) -> list[Any]:
    deadline = time.monotonic() + timeout
    while len(receiver.of(path)) < count:
        assert time.monotonic() < deadline, f"{len(receiver.of(path))} calls to {path}"
        time.sleep(0.1)
    return receiver.of(path)


def test_a_failing_receiver_is_retried_with_the_same_id_until_it_takes_it(
        hook_stack: IntegrationStack, receiver: Receiver) -> None:
    token = hook_stack.create_user("hook_user")
    receiver.script["/done"] = [500, 503]
    with httpx.Client(base_url=hook_stack.base_url, timeout=30) as http:
        accepted = http.get("/api/v1/orders/", headers=auth(token, **{
            "x-async-request": "true",
            "x-async-request-callback": f"http://127.0.0.1:{receiver.port}/done"}))
        assert accepted.status_code == 202, accepted.text
        task_id = accepted.json()["meta"]["async_request_id"]
        calls = wait_calls(receiver, "/done", 3)
        time.sleep(1.5)  # nothing more after the receiver took it
        assert len(receiver.of("/done")) == 3
        record = http.get(f"{RESULTS}{task_id}/", headers=auth(token)).json()
    ids = {call["headers"]["webhook-id"] for call in calls}
    assert ids == {f"msg_{task_id}"}
    assert all(signature_ok(call) for call in calls)
    assert calls[1]["at"] - calls[0]["at"] >= 0.9  # backed off
    body = json.loads(calls[-1]["body"])
    assert body["task_id"] == task_id and body["state"] == "completed"
    assert body["response"] == record["response"]


def test_a_redirect_is_a_failed_try_and_never_followed(
        hook_stack: IntegrationStack, receiver: Receiver) -> None:
    token = hook_stack.create_user("hook_redirect")
    receiver.script["/moved"] = [302]
    with httpx.Client(base_url=hook_stack.base_url, timeout=30) as http:
        accepted = http.get("/api/v1/orders/", headers=auth(token, **{
            "x-async-request": "true",
            "x-async-request-callback": f"http://127.0.0.1:{receiver.port}/moved"}))
        assert accepted.status_code == 202
    assert len(wait_calls(receiver, "/moved", 2)) == 2  # the retry, not the Location
    assert receiver.of("/elsewhere") == []


@pytest.mark.parametrize("callback", ["http://127.0.0.1:1/x", "https://example.com/hook",
                                      "not a url", "file:///etc/passwd"])
def test_a_callback_not_allowed_is_a_400_and_nothing_is_queued(
        hook_stack: IntegrationStack, callback: str) -> None:
    token = hook_stack.create_user("hook_refused")
    with httpx.Client(base_url=hook_stack.base_url, timeout=30) as http:
        before = http.get(RESULTS, headers=auth(token)).json()["data"]
        refused = http.get("/api/v1/orders/", headers=auth(token, **{
            "x-async-request": "true", "x-async-request-callback": callback}))
        assert refused.status_code == 400, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert "Callback" in refused.json()["detail"]
        assert http.get(RESULTS, headers=auth(token)).json()["data"] == before  # none added
