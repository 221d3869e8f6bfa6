"""Server-Sent Events: the owner's events as `text/event-stream`, for where WebSockets fail.

`GET /api/v1/async_background_response/events/` streams the same events the WebSocket gets:

    retry: 3000                      (how long a browser waits before it reconnects)

    id: 17                           (the event's seq: EventSource resends it as Last-Event-ID)
    data: {"task_id": ..., "status": "running", "action": "async_request", "seq": 17, ...}

    : keep-alive                     (a comment every HEARTBEAT_SEC, so proxies keep it open)

A reconnecting `EventSource` sends `Last-Event-ID` by itself; `?after=<seq>` does the same for
other clients. What followed is sent first, from the event log (`events.py`), then the live
events, none twice (`events.Relay`). When part of it is gone from the log, `event: gap` (data
`{"after", "last", "dropped"}`) says so, followed by the current state of each operation still
live or ended since, `"snapshot": true`, `id:` the gap's `last` (`resume.CatchUp`, shared with
the WebSocket).

Who: a ticket (`?ticket=`, what a browser's `EventSource` can send; see `tickets.py`), an
`Authorization: Bearer` header (server clients), or an anonymous `?channel=`. A refused
credential is a 401 problem+json before the stream starts. Under the results prefix, it is
never itself deferred.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import redis

from async_request.auth import Owner, channel_owner, resolve_owner
from async_request.events import Relay, parse_after
from async_request.exceptions import AuthenticationError, StoreUnavailableError
from async_request.notifications import EXTRAS, MESSAGE_TYPE, event_data, group_for
from async_request.resume import CatchUp, Gap
from async_request.settings import get_settings
from async_request.tickets import ticket_owner

logger = logging.getLogger(__name__)

HEARTBEAT_SEC = 15.0
RECONNECT_MS = 3000
STREAM_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def stream_owner(headers: Mapping[str, str], query: Mapping[str, str]) -> Owner:
    """Who subscribes: `?ticket=`, else the request's own credential (Bearer or channel)."""
    settings = get_settings()
    if query.get("ticket"):
        return ticket_owner(query["ticket"], settings)
    if query.get("channel") and "authorization" not in headers:
        return channel_owner(query["channel"], settings)
    try:
        return resolve_owner(headers, settings)
    except AuthenticationError as exc:
        raise AuthenticationError(
            f"{exc}; an EventSource sends ?ticket=<ticket> (POST .../tickets/)") from exc


def stream_after(headers: Mapping[str, str], query: Mapping[str, str]) -> int | None:
    """Where the client stopped: `Last-Event-ID` (a reconnecting EventSource), or `?after=`."""
    return parse_after(headers.get("last-event-id") or query.get("after"))


def _event(seq: int | None, data: dict[str, Any]) -> str:
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}data: {json.dumps(data)}\n\n"


async def subscribe(owner: Owner) -> tuple[Any, str | None]:
    """The channel layer and a channel in the owner's group (None without a layer), joined
    before the answer starts, so a layer that is down is a 503 problem, not a broken stream;
    and before the catch-up, so nothing slips between the two."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return None, None
    try:
        channel = await layer.new_channel()
        await layer.group_add(group_for(owner), channel)
    except (redis.RedisError, OSError) as exc:
        logger.warning("could not subscribe an event stream: %r", exc)
        raise StoreUnavailableError("the notification service is unavailable; "
                                    "retry later") from exc
    return layer, channel


async def events(owner: Owner, after: int | None, subscription: tuple[Any, str | None], *,
                 heartbeat: float = HEARTBEAT_SEC) -> AsyncIterator[str]:
    """The stream's text: catch-up after `after` (if given), then live events, heartbeats."""
    layer, channel = subscription
    relay = Relay(after or 0)
    try:
        yield f"retry: {RECONNECT_MS}\n\n"
        if after is not None:
            async for chunk in _catch_up(owner, after, relay):
                yield chunk
        if channel is None:
            yield "event: error\ndata: {\"detail\": \"notifications are not configured\"}\n\n"
            return
        while True:
            try:
                message = await asyncio.wait_for(layer.receive(channel), heartbeat)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if message.get("type") != MESSAGE_TYPE or not relay.fresh(message.get("seq")):
                continue
            extra = {name: message.get(name) for name in EXTRAS if name != "progress"}
            yield _event(message.get("seq"), event_data(
                message["task_id"], message["status"], message.get("progress"), **extra))
    finally:
        if channel is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                await layer.group_discard(group_for(owner), channel)


async def _catch_up(owner: Owner, after: int, relay: Relay) -> AsyncIterator[str]:
    try:
        async for item in CatchUp(owner, after, relay).frames():
            if isinstance(item, Gap):
                yield f"event: gap\ndata: {json.dumps(item.as_dict())}\n\n"
            else:
                yield _event(item.seq, {**item.data, "seq": item.seq})
    except (redis.RedisError, OSError) as exc:
        logger.warning("could not read an event log for a stream: %r", exc)
        yield "event: error\ndata: {\"detail\": \"the event log is unavailable\"}\n\n"
