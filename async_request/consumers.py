"""`TaskStatusConsumer`: the WebSocket where an owner hears about their tasks.

Connect with `?token=<JWT>` (a user) or `?channel=<name>` (an anonymous client). A socket without
a valid credential is accepted only to be closed with a code that says why (4401 invalid or
expired token, 4400 bad channel name, 4403 anonymous not allowed), because browsers cannot read
the HTTP status of a refused handshake. Clients may send `{"action": "status", "task_id": ...}`
to ask for a task's current state, so a notification missed while offline is never lost.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from async_request.auth import Owner, channel_owner, user_owner
from async_request.exceptions import AsyncRequestError, AuthenticationError
from async_request.notifications import client_payload, group_for
from async_request.problems import close_code, problem_for
from async_request.results.status import task_state
from async_request.settings import Settings, get_settings

logger = logging.getLogger(__name__)


def owner_from_query(query_string: bytes, settings: Settings) -> Owner:
    """The owner a socket subscribes as: `?token=<JWT>` (a user) or `?channel=<name>`."""
    query = parse_qs(query_string.decode("latin-1"))
    token = next(iter(query.get("token", [])), None)
    channel = next(iter(query.get("channel", [])), None)
    if token:
        return user_owner(token, settings)
    if channel:
        return channel_owner(channel, settings)
    raise AuthenticationError("send ?token=<JWT> or ?channel=<name>")


class TaskStatusConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """Joins the owner's group and relays task updates as `{"type": "data", "data": ...}`."""

    owner: Owner | None = None
    group: str | None = None

    async def connect(self) -> None:
        await self.accept()
        try:
            self.owner = owner_from_query(self.scope.get("query_string", b""), get_settings())
        except AsyncRequestError as exc:
            await self._refuse(close_code(exc), str(exc))
            return
        self.group = group_for(self.owner)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.send_json({"type": "subscribed"})

    async def _refuse(self, code: int, detail: str) -> None:
        await self.send_json({"type": "error", "code": code, "detail": detail})
        await self.close(code=code)

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Answer `{"action": "status", "task_id": ...}` and `{"type": "ping"}`."""
        if not isinstance(content, dict) or self.owner is None:
            return
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})
        elif content.get("action") == "status" and isinstance(content.get("task_id"), str):
            try:
                state = await sync_to_async(task_state, thread_sensitive=False)(
                    content["task_id"], self.owner)
            except AsyncRequestError as exc:  # the store is down: say so, keep the socket
                await self.send_json({"type": "error", "code": problem_for(exc).status,
                                      "detail": str(exc)})
                return
            await self.send_json({"type": "status", "task_id": content["task_id"],
                                  "state": state})

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        try:
            return json.loads(text_data)
        except ValueError:
            return None  # malformed client frames are ignored, never a crash

    async def async_request_task(self, event: dict[str, Any]) -> None:
        """Relay a task update from the channel layer to the socket."""
        await self.send_json(client_payload(event["task_id"], event["status"]))
