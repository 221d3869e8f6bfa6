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

from async_request.auth import Owner, user_owner, validate_channel
from async_request.exceptions import AuthenticationError, InvalidChannelError
from async_request.notifications import client_payload, group_for
from async_request.settings import get_settings

logger = logging.getLogger(__name__)

CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403


class TaskStatusConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """Joins the owner's group and relays task updates as `{"type": "data", "data": ...}`."""

    owner: Owner | None = None
    group: str | None = None

    async def connect(self) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        token = (query.get("token") or [None])[0]
        channel = (query.get("channel") or [None])[0]
        settings = get_settings()
        await self.accept()
        try:
            if token:
                self.owner = user_owner(token, settings)
            elif channel and settings.allow_anonymous:
                self.owner = Owner("anon", validate_channel(channel))
            elif channel:
                await self._refuse(CLOSE_FORBIDDEN, "anonymous subscriptions are disabled")
                return
            else:
                await self._refuse(CLOSE_UNAUTHORIZED, "send ?token=<JWT> or ?channel=<name>")
                return
        except InvalidChannelError as exc:
            await self._refuse(CLOSE_BAD_REQUEST, str(exc))
            return
        except AuthenticationError as exc:
            await self._refuse(CLOSE_UNAUTHORIZED, str(exc))
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
            from async_request.results.status import task_state

            state = await sync_to_async(task_state, thread_sensitive=False)(
                content["task_id"], self.owner)
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
