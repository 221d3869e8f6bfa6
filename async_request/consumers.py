"""`TaskStatusConsumer`: the WebSocket where an owner hears about their tasks.

How a socket says who it is, best first:

- the first message: `{"type": "auth", "ticket": "<ticket>"}` (see `tickets.py`), `"token":
  "<JWT>"` or `"channel": "<name>"`, within AUTH_TIMEOUT_SEC of connecting: the credential
  stays out of URLs, so out of access logs, proxies and browser history;
- `?ticket=<ticket>` in the URL: short-lived and good only for subscribing, so one left in a log
  soon opens nothing;
- `?token=<JWT>` or `?channel=<name>` in the URL, as the original system's clients do.

A socket without a valid credential is accepted only to be sent an error frame and closed with
a code that says why (4401 invalid or expired token, 4400 bad channel name, 4403 anonymous not
allowed: `problems.close_code`), because browsers cannot read the HTTP status of a refused
handshake. Clients may send `{"action": "status", "task_id": ...}` to ask for a task's current
state, so a notification missed while offline is never lost. Binary frames get an error frame,
frames over MAX_FRAME_BYTES a close with 1009; neither ever raises in the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import parse_qs

import redis
from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from async_request.auth import Owner, channel_owner, user_owner
from async_request.exceptions import AsyncRequestError, AuthenticationError
from async_request.notifications import client_payload, group_for
from async_request.problems import close_code, problem_for
from async_request.results.status import task_state
from async_request.settings import Settings, get_settings
from async_request.tickets import ticket_owner

logger = logging.getLogger(__name__)

#: How long a socket that sent no credential in its URL has to send its auth message.
AUTH_TIMEOUT_SEC = 10.0
#: Client frames above this size close the socket with 1009 (RFC 6455 "message too big").
MAX_FRAME_BYTES = 64 * 1024
CLOSE_TOO_BIG = 1009
#: The channel layer could not take the subscription: try again later (RFC 6455 1013).
CLOSE_TRY_AGAIN = 1013
#: The server cannot serve sockets at all (no channel layer configured): RFC 6455 1011.
CLOSE_SERVER_ERROR = 1011
_NO_CREDENTIAL = "send {\"type\": \"auth\", \"ticket\": <ticket>} (or \"token\", \"channel\") " \
                 "first, or connect with ?ticket=, ?token= or ?channel="


def owner_from(credentials: dict[str, Any], settings: Settings) -> Owner:
    """The owner a socket subscribes as: a `ticket` or `token` (a user), or a `channel`."""
    ticket = credentials.get("ticket")
    token, channel = credentials.get("token"), credentials.get("channel")
    if isinstance(ticket, str) and ticket:
        return ticket_owner(ticket, settings)
    if isinstance(token, str) and token:
        return user_owner(token, settings)
    if isinstance(channel, str) and channel:
        return channel_owner(channel, settings)
    raise AuthenticationError(_NO_CREDENTIAL)


def query_credentials(query_string: bytes) -> dict[str, Any]:
    """`ticket`, `token` and `channel` of a socket URL's query (the first of each)."""
    query = parse_qs(query_string.decode("latin-1"))
    return {name: query[name][0] for name in ("ticket", "token", "channel") if query.get(name)}


class TaskStatusConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """Joins the owner's group and relays task updates as `{"type": "data", "data": ...}`."""

    owner: Owner | None = None
    group: str | None = None
    _auth_timer: asyncio.TimerHandle | None = None

    async def connect(self) -> None:
        await self.accept()
        credentials = query_credentials(self.scope.get("query_string", b""))
        if credentials:
            await self._authenticate(credentials)
            return
        loop = asyncio.get_running_loop()
        self._auth_timer = loop.call_later(
            AUTH_TIMEOUT_SEC, lambda: loop.create_task(self._auth_timed_out()))

    async def _auth_timed_out(self) -> None:
        if self.owner is None:
            await self._refuse(close_code(AuthenticationError(_NO_CREDENTIAL)), _NO_CREDENTIAL)

    async def _authenticate(self, credentials: dict[str, Any]) -> None:
        if self._auth_timer is not None:
            self._auth_timer.cancel()
        try:
            owner = owner_from(credentials, get_settings())
        except AsyncRequestError as exc:
            await self._refuse(close_code(exc), str(exc))
            return
        group = group_for(owner)
        if self.channel_layer is None:
            logger.error("async_request.E001: CHANNEL_LAYERS is not set: a WebSocket cannot "
                         "subscribe (see README's settings snippet)")
            await self._refuse(CLOSE_SERVER_ERROR, "notifications are not configured on this "
                                                   "server (CHANNEL_LAYERS)")
            return
        try:
            await self.channel_layer.group_add(group, self.channel_name)
        except (redis.RedisError, OSError) as exc:
            logger.warning("could not subscribe a socket to its group: %r", exc)
            await self._refuse(CLOSE_TRY_AGAIN, "the notification service is busy; reconnect")
            return
        self.owner, self.group = owner, group
        await self.send_json({"type": "subscribed"})

    async def _refuse(self, code: int, detail: str) -> None:
        await self.send_json({"type": "error", "code": code, "detail": detail})
        await self.close(code=code)

    async def disconnect(self, code: int) -> None:
        if self._auth_timer is not None:
            self._auth_timer.cancel()
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None,
                      **kwargs: Any) -> None:
        """Text frames are JSON commands; binary ones are refused with an error frame."""
        if text_data is None:
            await self.send_json({"type": "error", "code": 4415,
                                  "detail": "binary frames are not supported: send JSON text"})
            return
        if len(text_data) > MAX_FRAME_BYTES:
            await self.close(code=CLOSE_TOO_BIG)
            return
        await self.receive_json(await self.decode_json(text_data), **kwargs)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Answer auth, `{"action": "status", "task_id": ...}` and `{"type": "ping"}`."""
        if not isinstance(content, dict):
            return
        if self.owner is None:
            if content.get("type") == "auth":
                await self._authenticate(content)
            else:
                await self._refuse(close_code(AuthenticationError(_NO_CREDENTIAL)),
                                   _NO_CREDENTIAL)
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
        await self.send_json(client_payload(event["task_id"], event["status"],
                                            event.get("progress")))
