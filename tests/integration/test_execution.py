"""claim → replay → store → notify in one process: a real Redis, an InMemoryChannelLayer.

The worker's step without Celery: `execution.execute` and the revoke receiver of `signals.py`,
with the owner's group listened to on channels' in-memory layer.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from channels.layers import channel_layers
from django.test import override_settings

from async_request.auth import Owner
from async_request.envelope import RequestEnvelope
from async_request.exceptions import ConfigurationError, EnvelopeError
from async_request.execution import execute
from async_request.execution_async import execute as execute_async
from async_request.notifications import group_for
from async_request.settings import get_settings, reset_settings
from async_request.signals import REVOKED_ERROR, on_task_revoked
from async_request.store import OperationStore, get_store
from tests.asgi_apps import drain

pytestmark = pytest.mark.integration
MEMORY_LAYER = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
OWNER = Owner("user", "exec-7")


@pytest.fixture
def worker_settings(local_redis_url: str) -> Iterator[OperationStore]:
    with override_settings(CHANNEL_LAYERS=MEMORY_LAYER, ASYNC_REQUEST_REDIS_URL=local_redis_url,
                           ASYNC_REQUEST_ASGI_APP="tests.asgi_apps:echo_app"):
        channel_layers.backends.clear()
        reset_settings()
        yield get_store()
    channel_layers.backends.clear()
    reset_settings()


def heard(owner: Owner, action: Any) -> list[dict[str, Any]]:
    """Run `action()` while listening to the owner's group; the messages the group got."""
    layer = channel_layers["default"]

    async def listen() -> str:
        channel = await layer.new_channel()
        await layer.group_add(group_for(owner), channel)
        return channel

    channel = asyncio.run(listen())
    action()

    return asyncio.run(drain(layer, channel))


def told(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(task id, status) of each message, in order; every one carries its event's seq."""
    assert all(isinstance(m.get("seq"), int) for m in messages), messages
    return [(m["task_id"], m["status"]) for m in messages]


def accepted(store: OperationStore, body: bytes = b"hello") -> dict[str, Any]:
    task_id = str(uuid.uuid4())
    scope = {"type": "http", "method": "POST", "path": "/api/x/", "headers": [],
             "query_string": b""}
    asyncio.run(store.accept(task_id, str(OWNER), "/api/x/", "POST"))
    return RequestEnvelope.from_scope(scope, body, task_id=task_id,
                                      owner=str(OWNER)).to_dict(get_settings().secret_key)


def test_completed_outcome_is_stored_once_and_told_to_the_recorded_owner(
        worker_settings: OperationStore) -> None:
    envelope = accepted(worker_settings)
    task_id = envelope["task_id"]
    summary: dict[str, Any] = {}
    messages = heard(OWNER, lambda: summary.update(execute(envelope, task_id=task_id,
                                                           worker="w1")))
    assert summary == {"task_id": task_id, "state": "completed", "status": 200}
    assert told(messages) == [(task_id, "running"), (task_id, "completed")]
    operation = worker_settings.get(task_id)
    assert operation is not None and operation.state == "completed"
    assert operation.result is not None and operation.result["status"] == 200
    # A redelivery hands back the stored outcome (and tells the owner again), no second run.
    again = heard(OWNER, lambda: execute(envelope, task_id=task_id, worker="w2"))
    # The outcome is told again with the seq it was logged under the first time.
    assert again == [messages[-1]]
    assert worker_settings.get(task_id).attempts == 1  # type: ignore[union-attr]


def test_the_message_never_names_the_owner(worker_settings: OperationStore) -> None:
    envelope = accepted(worker_settings)
    forged = {**envelope, "owner": "user:someone-else"}
    messages = heard(Owner("user", "someone-else"),
                     lambda: execute(forged, task_id=envelope["task_id"], worker="w1"))
    assert messages == []


def test_an_unknown_task_is_refused_and_nobody_is_told(worker_settings: OperationStore) -> None:
    envelope = accepted(worker_settings)
    forged = {**envelope, "task_id": str(uuid.uuid4())}

    def run() -> None:
        with pytest.raises(EnvelopeError, match="unknown"):
            execute(forged, task_id=forged["task_id"], worker="w1")

    assert heard(OWNER, run) == []


def test_an_envelope_that_cannot_be_opened_ends_failed_and_told(
        worker_settings: OperationStore) -> None:
    envelope = accepted(worker_settings)
    task_id = envelope["task_id"]
    tampered = {**envelope, "sealed": envelope["sealed"][:-8] + "AAAAAAAA"}

    def run() -> None:
        with pytest.raises(EnvelopeError, match="cannot be opened"):
            execute(tampered, task_id=task_id, worker="w1")

    messages = heard(OWNER, run)
    assert told(messages) == [(task_id, "running"), (task_id, "failed")]
    assert "cannot be opened" in messages[-1]["error"]
    operation = worker_settings.get(task_id)
    assert operation is not None and operation.state == "failed"


def test_the_asyncio_pool_s_execute_fails_an_envelope_it_cannot_open_once_claimed(
        worker_settings: OperationStore) -> None:
    """execution_async opens the envelope while the claim is on its way: what opening raised
    counts only once the claim says run, as in the sync path."""
    envelope = accepted(worker_settings)
    task_id = envelope["task_id"]
    tampered = {**envelope, "sealed": envelope["sealed"][:-8] + "AAAAAAAA"}

    def run() -> None:
        with pytest.raises(EnvelopeError, match="cannot be opened"):
            asyncio.run(execute_async(tampered, task_id=task_id, worker="w1"))

    messages = heard(OWNER, run)
    assert told(messages) == [(task_id, "running"), (task_id, "failed")]
    operation = worker_settings.get(task_id)
    assert operation is not None and operation.state == "failed"
    # Delivered again: the claim says it failed; opening it again changes nothing.
    with pytest.raises(Exception, match="cannot be opened"):
        asyncio.run(execute_async(tampered, task_id=task_id, worker="w2"))
    forged = {**tampered, "task_id": str(uuid.uuid4())}
    with pytest.raises(EnvelopeError, match="unknown"):
        asyncio.run(execute_async(forged, task_id=forged["task_id"], worker="w1"))


def test_a_failure_is_stored_and_told(worker_settings: OperationStore) -> None:
    envelope = accepted(worker_settings)
    task_id = envelope["task_id"]

    def run() -> None:
        with override_settings(ASYNC_REQUEST_ASGI_APP="tests.asgi_apps:no_such_app"):
            reset_settings()
            with pytest.raises(ConfigurationError):
                execute(envelope, task_id=task_id, worker="w1")

    messages = heard(OWNER, run)
    assert told(messages) == [(task_id, "running"), (task_id, "failed")]
    operation = worker_settings.get(task_id)
    assert operation is not None and operation.state == "failed"
    assert "ASYNC_REQUEST_ASGI_APP" in str(operation.error)
    assert messages[-1]["error"] == operation.error


class _Request:
    task = "async_request.replay_request"

    def __init__(self, task_id: str) -> None:
        self.id = task_id


def test_a_revoked_task_ends_cancelled_and_only_a_known_one_is_told(
        worker_settings: OperationStore) -> None:
    task_id = accepted(worker_settings)["task_id"]
    messages = heard(OWNER, lambda: on_task_revoked(request=_Request(task_id)))
    assert told(messages) == [(task_id, "cancelled")]
    assert messages[0]["error"] == REVOKED_ERROR
    operation = worker_settings.get(task_id)
    assert operation is not None and (operation.state, operation.error) == (
        "cancelled", REVOKED_ERROR)
    assert heard(OWNER, lambda: on_task_revoked(request=_Request(str(uuid.uuid4())))) == []
