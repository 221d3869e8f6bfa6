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
state, so a notification missed while offline is never lost. An unknown action (or type), a
binary frame, a resume without `after` get an error frame and the socket stays open; frames over
MAX_FRAME_BYTES a close with 1009; none of them ever raises in the server.

Resume: every data frame carries the owner's `seq` (events.py). A client that reconnects says
the last one it has, `?after=<seq>`, `"after"` in its auth message, or `{"action": "resume",
"after": <seq>}` once subscribed, and gets what followed from the event log, in order, then
`{"type": "resumed", "last": <seq>, "count": n}`, then the live frames, none of them twice
(`events.Relay`). When part of what followed is gone from the log (trimmed, expired) it gets
`{"type": "gap", "after": <seq>, "last": <seq>, "dropped": n}` instead, then one data frame
with `"snapshot": true` and `"seq": last` per operation still live or ended since (its current
state), then `resumed`: `resume.CatchUp`, shared with the event stream.
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
from async_request.events import Relay, parse_after
from async_request.exceptions import AsyncRequestError, AuthenticationError
from async_request.notifications import EXTRAS, MESSAGE_TYPE, client_payload, group_for
from async_request.problems import close_code, problem_for
from async_request.results.status import task_state
from async_request.resume import CatchUp, Gap
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
#: What a subscribed socket may ask for with `{"action": ...}`.
ACTIONS = ("resume", "status")
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
    """`ticket`, `token`, `channel` and `after` of a socket URL's query (the first of each)."""
    query = parse_qs(query_string.decode("latin-1"))
    return {name: query[name][0] for name in ("ticket", "token", "channel", "after")
            if query.get(name)}


class TaskStatusConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """Joins the owner's group and relays task updates as `{"type": "data", "data": ...}`."""

    owner: Owner | None = None
    group: str | None = None
    _auth_timer: asyncio.TimerHandle | None = None
    relay: Relay

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        self.relay = Relay()
        await super().websocket_connect(message)

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Relay task updates straight away; everything else as channels dispatches it.

        Channels runs `close_old_connections` in its database thread before every message, for
        handlers that use the ORM. The relay does not, and it is every frame a socket gets: the
        thread hop was a fifth of a millisecond on each frame's way and 5.6 % of the web
        server's CPU in a burst (docs/benchmarks.md).
        """
        if message.get("type") == MESSAGE_TYPE:
            await self.async_request_task(message)
        else:
            await super().dispatch(message)

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
        after = parse_after(credentials.get("after"))
        if after is not None:
            await self._resume(after)

    async def _resume(self, after: int) -> None:
        """Send what the owner missed after `after` (`resume.CatchUp`), then `resumed`."""
        assert self.owner is not None
        catch_up = CatchUp(self.owner, after, self.relay)
        try:
            async for item in catch_up.frames():
                if isinstance(item, Gap):
                    await self.send_json({"type": "gap", **item.as_dict()})
                else:
                    await self.send_json({"type": "data", "data": item.as_json()})
        except (redis.RedisError, OSError) as exc:
            logger.warning("could not read an event log for a resume: %r", exc)
            await self.send_json({"type": "error", "code": 503,
                                  "detail": "the event log is unavailable; resume again later"})
            return
        await self.send_json({"type": "resumed", "last": catch_up.last,
                              "count": catch_up.count})

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
        """Answer auth, `{"type": "ping"}`, and the actions `resume` and `status`; an unknown
        action or type gets an error frame naming it (the socket stays open)."""
        if not isinstance(content, dict):
            return
        if self.owner is None:
            if content.get("type") == "auth":
                await self._authenticate(content)
            else:
                await self._refuse(close_code(AuthenticationError(_NO_CREDENTIAL)),
                                   _NO_CREDENTIAL)
            return
        action, kind = content.get("action"), content.get("type")
        if action is None and kind == "ping":
            await self.send_json({"type": "pong"})
        elif action == "resume":
            after = parse_after(content.get("after"))
            if after is None:
                await self._bad_frame("resume needs \"after\": the last seq you have (0: all)",
                                      action=action)
                return
            await self._resume(after)
        elif action == "status":
            if not isinstance(content.get("task_id"), str):
                await self._bad_frame("status needs \"task_id\": an operation id",
                                      action=action)
                return
            await self._status(content["task_id"])
        elif action is not None:
            await self._bad_frame(f"unknown action {str(action)[:40]!r}: send one of "
                                  f"{', '.join(ACTIONS)}", action=str(action)[:40])
        elif kind is not None:
            detail = ("this socket is already subscribed" if kind == "auth" else
                      f"unknown type {str(kind)[:40]!r}: send \"ping\" or an action")
            await self._bad_frame(detail)

    async def _bad_frame(self, detail: str, *, action: str | None = None) -> None:
        """A 400 error frame (naming the client's `action`, if any); the socket stays open."""
        named = {} if action is None else {"action": action}
        await self.send_json({"type": "error", "code": 400, "detail": detail, **named})

    async def _status(self, task_id: str) -> None:
        assert self.owner is not None
        try:
            state = await sync_to_async(task_state, thread_sensitive=False)(task_id, self.owner)
        except AsyncRequestError as exc:  # the store is down: say so, keep the socket
            await self.send_json({"type": "error", "code": problem_for(exc).status,
                                  "detail": str(exc)})
            return
        await self.send_json({"type": "status", "task_id": task_id, "state": state})

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        try:
            return json.loads(text_data)
        except ValueError:
            return None  # malformed client frames are ignored, never a crash

    async def async_request_task(self, event: dict[str, Any]) -> None:
        """Relay a task update from the channel layer to the socket (once per seq)."""
        if not self.relay.fresh(event.get("seq")):
            return
        await self.send_json(client_payload(
            event["task_id"], event["status"], event.get("progress"),
            **{name: event.get(name) for name in EXTRAS if name != "progress"}))
